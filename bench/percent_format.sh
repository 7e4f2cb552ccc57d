#!/bin/bash
# Benchmark: `%` formatting and padding at the string bound (issue #13, class 1). Runs
# `convirt conf eval` (release build) on one-line configs whose widths and precisions are at
# or past the 1 MiB bound, checks each ends as it must (a value, or exit 1 with a located
# error), and writes the timings into docs/performance.md, section "`%` formatting at the
# string bound".
#
# Usage: bench/percent_format.sh [--runs N] [--no-write]
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
root="$BENCH_ROOT"
runs=5
write=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --runs) runs="$2"; shift 2 ;;
        --no-write) write=0; shift ;;
        *) echo "usage: $0 [--runs N] [--no-write]" >&2; exit 2 ;;
    esac
done

bin="$(bench_binary)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# expression|expected exit status
cases=(
    "'%.65536f' % 1|0"
    "'%.65536e' % 1|0"
    "'%.65536g' % 1|0"
    "'%.1048576d' % 1|0"
    "'%1048576s' % 'a'|0"
    "'x'.zfill(1048576)|0"
    "'%.1048577d' % 1|1"
    "'%.99999999999999999999f' % 1|1"
    "'%99999999999999999999d' % 1|1"
    "'x'.ljust(10**12)|1"
)

median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { printf "%.1f", a[int((NR + 1) / 2)] }'; }

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
rows=''
i=0
for case in "${cases[@]}"; do
    expr="${case%|*}"
    want="${case##*|}"
    i=$((i + 1))
    file="$work/case$i.conf"
    printf 'x = %s\n' "$expr" > "$file"
    times=()
    for _ in $(seq "$runs"); do
        start=$(date +%s%N)
        status=0
        "$bin" --arch x86_64 conf eval "$file" > "$work/out" 2> "$work/err" || status=$?
        end=$(date +%s%N)
        if [[ "$status" != "$want" ]]; then
            echo "error: \`$expr\` exited $status, expected $want" >&2
            cat "$work/err" >&2
            exit 1
        fi
        times+=("$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", (b - a) / 1e6 }')")
    done
    outcome='value'
    if [[ "$want" == 1 ]]; then
        outcome="error: $(head -n1 "$work/err" | sed 's/^error: //')"
    else
        outcome="value of $(wc -c < "$work/out") bytes printed"
    fi
    rows+="| \`$expr\` | $(median "${times[@]}") ms | $outcome |"$'\n'
done

section="$(cat <<EOT
## \`%\` formatting at the string bound

Measured with \`bench/percent_format.sh\` on $(date -u +%Y-%m-%d), commit \`$(git -C "$root" rev-parse --short HEAD)\`.

Each row is \`convirt conf eval\` (release build) of a one-line config \`x = EXPR\`, the
median wall time of $runs runs, process start and printing included. Before issue #13 the
first three panicked and \`'%.1048576d' % 1\` took over 11 s; widths and precisions are now
bounded before anything is built and the output is written in one pass.
Machine: $(nproc) cores, shared with other work (load average $load_before before the runs).
Goal (each ends in a value or a located error in well under a second): **$(if awk -v rows="$rows" 'BEGIN { n = split(rows, r, "\n"); for (i = 1; i <= n; i++) if (split(r[i], c, "|") > 3) { t = c[3] + 0; if (t >= 500) bad = 1 } exit bad }'; then echo met; else echo 'not met'; fi)**.

| expression | median wall | outcome |
| --- | ---: | --- |
${rows%$'\n'}
EOT
)"

echo "$section"
if [[ "$write" == 1 ]]; then
    printf '%s\n' "$section" | bench_write_section "$root/docs/performance.md" \
        "\`%\` formatting at the string bound"
fi
