#!/usr/bin/env bash
# The long campaigns behind the harness's claims (too long for CI):
#
#   validity  both modes x each nemesis x $SEEDS seeds x $TIME s with correct nodes:
#             every run should be valid (exit 0); any invalid run is a false alarm.
#   bugs      each named node bug x $SEEDS seeded $BUG_TIME-s runs with a nemesis that
#             exposes it: a run detects the bug when it exits 1 (invalid).
#   snapshots the bank workload x $SEEDS seeds x $SNAP_TIME s: Chandy–Lamport on FIFO
#             channels under each nemesis (every run should be valid), and the three
#             broken setups — unordered channels with packet reordering, the
#             marker-after-send bug, wall-clock snapshots under clock skew — each of which
#             should be detected (exit 1).
#
# Usage: scripts/campaign.sh [validity|bugs|snapshots|all]     (default: all)
# Env:   SEEDS (10), TIME (30), BUG_TIME (60), SNAP_TIME (20), STORE (store/campaign),
#        FAULTLINE (binary)
# Prints Markdown tables (also saved under $STORE) and lists every unexpected run.
set -uo pipefail
cd "$(dirname "$0")/.."

what=${1:-all}
SEEDS=${SEEDS:-10}
TIME=${TIME:-30}
BUG_TIME=${BUG_TIME:-60}
SNAP_TIME=${SNAP_TIME:-20}
STORE=${STORE:-store/campaign}
FAULTLINE=${FAULTLINE:-target/release/faultline}

if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build --release --bin faultline >&2 || exit 3
fi
mkdir -p "$STORE"
report="$STORE/campaign-$(date -u +%Y%m%dT%H%M%SZ).md"
unexpected=()

# run NAME ARGS... -> echoes the exit code; the results folder is $STORE/NAME/<timestamp>.
run() {
  local name=$1
  shift
  "$FAULTLINE" run --store "$STORE" --name "$name" "$@" >/dev/null 2>"$STORE/.last-stderr"
  echo $?
}

validity() {
  echo "## Validity: correct nodes, ${SEEDS} seeds x ${TIME} s per cell"
  echo
  echo "| mode | nemesis | valid | invalid | unknown | error |"
  echo "|------|---------|------:|--------:|--------:|------:|"
  for mode in passive active; do
    for nemesis in partition kill pause packet; do
      local valid=0 invalid=0 unknown=0 error=0
      for seed in $(seq 1 "$SEEDS"); do
        rc=$(run "validity-$mode-$nemesis" --mode "$mode" --nemesis "$nemesis" --seed "$seed" --time-limit "$TIME")
        case $rc in
          0) valid=$((valid + 1)) ;;
          1) invalid=$((invalid + 1)); unexpected+=("FALSE ALARM: $mode $nemesis seed $seed -> invalid ($STORE/validity-$mode-$nemesis)") ;;
          2) unknown=$((unknown + 1)); unexpected+=("unknown: $mode $nemesis seed $seed") ;;
          *) error=$((error + 1)); unexpected+=("error $rc: $mode $nemesis seed $seed: $(head -c 300 "$STORE/.last-stderr")") ;;
        esac
      done
      echo "| $mode | $nemesis | $valid | $invalid | $unknown | $error |"
    done
  done
  echo
}

# mode bug nemesis workload: the fault that exposes each bug, as nodes/README.md gives it:
# isolate the leader (or primary) while clients keep using it, then heal — a deposed
# leader that still answers reads (stale-read), acknowledges writes it never commits
# (ack-before-commit), keeps leading (no-fencing), or executes unagreed requests
# (deliver-unagreed); and a killed majority restarted cut off from the survivors, mixed
# with leader isolations that move the term on (forget-vote). Bug runs put 500
# ops/s on two keys with a 2-s fault cycle, so many ops land on the same key around each
# fault while each key's history stays small enough for the checker's budget (a single
# register at this rate gave `unknown` after 60 s on some invalid histories).
BUGS=(
  "passive stale-read isolate-leader kv"
  "passive ack-before-commit isolate-leader kv"
  "passive no-fencing isolate-leader kv"
  "passive forget-vote isolate-leader,kill-majority-apart kv"
  "active deliver-unagreed isolate-leader kv"
)
BUG_ARGS=(--keys 2 --rate 500 --nemesis-interval 2)

bugs() {
  echo "## Detection: each bug, ${SEEDS} seeds x ${BUG_TIME} s"
  echo
  echo "| bug | mode | nemesis | workload | detected (exit 1) | valid | unknown | error |"
  echo "|-----|------|---------|----------|------------------:|------:|--------:|------:|"
  for spec in "${BUGS[@]}"; do
    read -r mode bug nemesis workload <<<"$spec"
    local detected=0 valid=0 unknown=0 error=0
    for seed in $(seq 1 "$SEEDS"); do
      rc=$(run "bug-$bug" --mode "$mode" --bug "$bug" --nemesis "$nemesis" --workload "$workload" \
        --seed "$seed" --time-limit "$BUG_TIME" "${BUG_ARGS[@]}")
      case $rc in
        1) detected=$((detected + 1)) ;;
        0) valid=$((valid + 1)); unexpected+=("missed: $bug seed $seed") ;;
        2) unknown=$((unknown + 1)); unexpected+=("unknown: $bug seed $seed") ;;
        *) error=$((error + 1)); unexpected+=("error $rc: $bug seed $seed: $(head -c 300 "$STORE/.last-stderr")") ;;
      esac
    done
    echo "| $bug | $mode | $nemesis | $workload | $detected/$SEEDS | $valid | $unknown | $error |"
  done
  echo
}

# name expect args...: the snapshot cells. Nine clients (three per node) keep money
# flowing evenly; a snapshot every half second from a random initiator.
SNAP_CELLS=(
  "fifo-partition valid --nemesis partition"
  "fifo-kill valid --nemesis kill"
  "fifo-pause valid --nemesis pause"
  "fifo-packet valid --nemesis packet"
  "unordered-packet invalid --channels unordered --nemesis packet"
  "marker-after-send invalid --bug marker-after-send --nemesis none"
  "clock-skew invalid --snapshot-algo clock --nemesis clock"
)
SNAP_ARGS=(--workload bank --concurrency 9 --rate 200 --snapshot-interval 0.5 --snapshot-timeout 2 --nemesis-interval 2)

# Snapshot counts of the last run: "started consistent inconsistent incomplete".
snapshot_counts() {
  python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["snapshots"]; print(s["started"], s["consistent"], s["inconsistent"], s["incomplete"])' \
    "$STORE/latest/results.json" 2>/dev/null || echo "0 0 0 0"
}

snapshots() {
  echo "## Snapshots: bank workload, ${SEEDS} seeds x ${SNAP_TIME} s per cell"
  echo
  echo "| cell | expected | valid | invalid | unknown | error | snapshots | consistent | inconsistent | incomplete |"
  echo "|------|----------|------:|--------:|--------:|------:|----------:|-----------:|-------------:|-----------:|"
  for spec in "${SNAP_CELLS[@]}"; do
    read -r cell expect args <<<"$spec"
    local valid=0 invalid=0 unknown=0 error=0 started=0 consistent=0 inconsistent=0 incomplete=0
    for seed in $(seq 1 "$SEEDS"); do
      # shellcheck disable=SC2086  # $args is a list of flags
      rc=$(run "snap-$cell" "${SNAP_ARGS[@]}" $args --seed "$seed" --time-limit "$SNAP_TIME")
      case $rc in
        0) valid=$((valid + 1)) ;;
        1) invalid=$((invalid + 1)) ;;
        2) unknown=$((unknown + 1)) ;;
        *) error=$((error + 1)); unexpected+=("error $rc: $cell seed $seed: $(head -c 300 "$STORE/.last-stderr")") ;;
      esac
      if [ "$rc" -le 2 ]; then
        read -r a b c d <<<"$(snapshot_counts)"
        started=$((started + a)); consistent=$((consistent + b))
        inconsistent=$((inconsistent + c)); incomplete=$((incomplete + d))
      fi
      if [ "$expect" = valid ] && [ "$rc" = 1 ]; then
        unexpected+=("FALSE ALARM: $cell seed $seed -> invalid ($STORE/snap-$cell)")
      elif [ "$expect" = invalid ] && [ "$rc" != 1 ]; then
        unexpected+=("missed: $cell seed $seed -> exit $rc")
      fi
    done
    echo "| $cell | $expect | $valid | $invalid | $unknown | $error | $started | $consistent | $inconsistent | $incomplete |"
  done
  echo
}

{
  echo "# faultline campaign, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores"
  echo
  case $what in
    validity) validity ;;
    bugs) bugs ;;
    snapshots) snapshots ;;
    all) validity; bugs; snapshots ;;
    *) echo "usage: $0 [validity|bugs|snapshots|all]" >&2; exit 3 ;;
  esac
  if [ ${#unexpected[@]} -gt 0 ]; then
    echo "## Unexpected runs"
    echo
    printf -- '- %s\n' "${unexpected[@]}"
  fi
} | tee "$report"
echo "(saved to $report)" >&2
