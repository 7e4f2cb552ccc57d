#!/bin/bash
# How long one Tab takes: bash's completion of `convirt image show <Tab>` (the shell runs
# `convirt` to list the store) against stores of 10 and 1,000 images. Run by hand (not in CI):
#
#   bash bench/complete.sh           # builds the release binary, prints a table for
#                                    # docs/performance.md
#
# Each case runs RUNS completions (default 50) in one bash and reports the mean wall time.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
RUNS="${RUNS:-50}"

bin_dir="$(dirname -- "$(bench_binary)")"
work=$(mktemp -d)
trap 'rm -rf -- "$work"' EXIT

printf '| images in the store | mean time per Tab |\n| ---: | ---: |\n'
for n in 10 1000; do
    store="$work/store$n"
    for ((i = 0; i < n; i++)); do
        mkdir -p "$store/Image_$i"
        : > "$store/Image_$i/image.conf"
    done
    ms=$(PATH="$bin_dir:$PATH" RUNS="$RUNS" STORE="$store" bash --norc -c '
        source <(convirt completions bash)
        start=$(date +%s%N)
        for ((r = 0; r < RUNS; r++)); do
            COMP_WORDS=(convirt --store "$STORE" image show Image_1)
            COMP_CWORD=5; COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}; COMP_TYPE=9
            _clap_complete_convirt convirt Image_1 show
            [[ ${#COMPREPLY[@]} -ge 1 ]] || { echo "no candidates" >&2; exit 1; }
        done
        end=$(date +%s%N)
        awk -v d="$((end - start))" -v r="$RUNS" '"'"'BEGIN { printf "%.1f", d / 1e6 / r }'"'"'')
    printf '| %d | %s ms |\n' "$n" "$ms"
done
