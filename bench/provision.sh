#!/usr/bin/env bash
# Benchmark: the overhead of `convirt provision` over running the same no-op provision.sh
# with bash directly, and 20 VMs whose script sleeps 0.2 s with --jobs 4 against --jobs 1.
# Run by hand: bench/provision.sh  (builds the release binary; needs hyperfine or falls back
# to a timing loop). Prints a Markdown table for docs/performance.md.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
cd "$BENCH_ROOT"
bin=$(bench_binary)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

bench_noop_sleep_images "$tmp/store"
cat > "$tmp/c.toml" <<CONF
image_store = "$tmp/store"
log_dir = "$tmp/log"
work_dir = "$tmp/work"
state_dir = "$tmp/state"
[variables]
VM_DISKS_DIR = "$tmp/disks"
VM_CONF_DIR = "$tmp/conf"
CONF

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
time_ms() { local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); }

runs=30
direct=$(for _ in $(seq "$runs"); do time_ms bash "$tmp/store/Noop/provision.sh"; done | median)
conv=$(for i in $(seq "$runs"); do time_ms "$bin" --config "$tmp/c.toml" -q provision --vm "n$i" --image Noop --force; done | median)

# Other names for the --jobs 4 run: the first run's VMs are recorded (docs/records.md), so the
# same names would be refused at once and nothing would be measured.
vms=() vms4=()
for i in $(seq 20); do vms+=("s$i") vms4+=("p$i"); done
seq1=$(time_ms "$bin" --config "$tmp/c.toml" -q provision --image Sleep --jobs 1 --vm "${vms[@]}")
par4=$(time_ms "$bin" --config "$tmp/c.toml" -q provision --image Sleep --jobs 4 --vm "${vms4[@]}")

echo "| measurement | result |"
echo "| --- | --- |"
echo "| no-op provision.sh run by bash directly (median of $runs) | ${direct} ms |"
echo "| \`convirt provision\` of the same script (median of $runs) | ${conv} ms |"
echo "| overhead | $((conv - direct)) ms (goal: under 20 ms) |"
echo "| 20 VMs, script sleeps 0.2 s, \`--jobs 1\` | ${seq1} ms |"
echo "| 20 VMs, script sleeps 0.2 s, \`--jobs 4\` | ${par4} ms ($(awk -v a="$par4" -v b="$seq1" 'BEGIN {printf "%.2f", a/b}') of sequential; goal: at most 0.30) |"
