#!/usr/bin/env bash
# Builds the `faultline:latest` Docker image offline (there is no registry to pull a base
# image from): a root filesystem holding only the release binary and the shared
# libraries `ldd` says it needs, imported with `docker import`. This reuses the ordinary
# release build instead of a second, static one.
#
#   scripts/docker-image.sh            # cargo build --release, then the image
#   scripts/docker-image.sh BINARY     # image from an already built faultline binary
#
# The image is labelled with the binary's sha256 (`faultline.binary.sha256`); when the
# label already matches, nothing is rebuilt.
set -euo pipefail
cd "$(dirname "$0")/.."

image=${FAULTLINE_IMAGE:-faultline:latest}
if [ $# -ge 1 ]; then
  bin=$1
else
  cargo build --release --bin faultline
  bin=target/release/faultline
fi
[ -x "$bin" ] || { echo "docker-image.sh: $bin is not an executable" >&2; exit 3; }
command -v docker >/dev/null || { echo "docker-image.sh: docker is not installed (apt-get install docker.io)" >&2; exit 3; }
docker info >/dev/null 2>&1 || { echo "docker-image.sh: the Docker daemon is not reachable (start it: dockerd &)" >&2; exit 3; }

# The tools' versions count too: a host upgrade rebuilds the image.
sum=$( (sha256sum "$bin"; echo v2-tools) | sha256sum | cut -d' ' -f1)
have=$(docker image inspect -f '{{index .Config.Labels "faultline.binary.sha256"}}' "$image" 2>/dev/null || true)
if [ "$have" = "$sum" ]; then
  echo "docker-image.sh: $image is up to date (binary $sum)"
  exit 0
fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/data" "$root/store" "$root/tmp" "$root/etc"
chmod 1777 "$root/tmp"
# Without these, glibc's name lookups (peer and service names) have nothing to read.
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
printf 'root:x:0:0:root:/:/faultline\n' >"$root/etc/passwd"
# Debug info is for the host's profilers; the image only needs the code.
strip -o "$root/faultline" "$bin" 2>/dev/null || cp "$bin" "$root/faultline"
# The compose file's `test` service applies partitions and packet faults inside its
# sibling nodes' network namespaces itself (nsenter, nft, iptables-nft with the NFQUEUE
# target), so the image carries those tools from the host too. Missing on the host: the
# image is still built, and the compose backend falls back (announced) to /admin/isolate.
tools=()
for t in nft nsenter xtables-nft-multi; do
  p=$(PATH=$PATH:/usr/sbin:/sbin command -v "$t" || true)
  if [ -n "$p" ]; then tools+=("$p"); else echo "docker-image.sh: warning: $t not found on the host (apt-get install nftables iptables util-linux); compose runs will partition via /admin/isolate and refuse packet faults" >&2; fi
done
mkdir -p "$root/usr/sbin" "$root/run"
for p in "${tools[@]}"; do cp -L "$p" "$root/usr/sbin/$(basename "$p")"; done
if [ -x "$root/usr/sbin/xtables-nft-multi" ]; then
  ln -s xtables-nft-multi "$root/usr/sbin/iptables"
  xt=$(dirname "$(ldd "$root/usr/sbin/xtables-nft-multi" | awk '/libxtables/{print $3}')")/xtables
  [ -d "$xt" ] && { mkdir -p "$root$xt"; cp -L "$xt"/libxt_*.so "$xt"/libipt_*.so "$root$xt/" 2>/dev/null || true; }
fi
# Every shared library the loader will ask for, at the path it will ask for it — for
# faultline, the tools above and etcd (when installed): the docker backend bind-mounts a
# system's binary into the container (`--system etcd`), so the image needs its libraries too.
sut_bins=("$bin")
etcd_bin=${FAULTLINE_ETCD_BIN:-/usr/bin/etcd}
[ -x "$etcd_bin" ] && sut_bins+=("$etcd_bin")
{
  for b in "${sut_bins[@]}" "${tools[@]}"; do ldd "$b"; done
  [ -n "${xt:-}" ] && for so in "$root$xt"/*.so; do ldd "$so"; done
} | awk '/=> \//{print $3} /^\t\//{print $1}' | sort -u | while read -r lib; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
# Debian's loader path is a symlink into /lib/x86_64-linux-gnu; the copy above made it a
# real file, which serves just as well.

tar -C "$root" -c . | docker import \
  --change 'ENTRYPOINT ["/faultline"]' \
  --change 'CMD ["--help"]' \
  --change 'WORKDIR /' \
  --change "LABEL faultline.binary.sha256=$sum" \
  - "$image" >/dev/null
echo "docker-image.sh: built $image ($(du -sh "$root" | cut -f1) root filesystem, binary $sum)"
