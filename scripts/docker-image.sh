#!/usr/bin/env bash
# Builds the `faultline:latest` image from a static binary, with no registry access:
# the image is FROM scratch plus the binary (static glibc, static-pie).
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTFLAGS='-C target-feature=+crt-static' \
  cargo build --release --bin faultline --target x86_64-unknown-linux-gnu
docker build -q -f docker/Dockerfile -t faultline:latest .
