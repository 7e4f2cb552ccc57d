#!/bin/bash
# Issue #13's examples against the release binary: each must end with a clean error or the
# right value, in well under a second. Run by hand (not in CI):
#
#   bash bench/hostile.sh        # builds the release binary, runs, prints a Markdown table
#
# Each example runs RUNS times (default 5); the table shows the exit status, the median wall
# time, the first line of stderr and the place it names. The inputs are the regression corpus of the fuzz tests
# (tests/fixtures/fuzz/) and the issue's config lines.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
REPO="$BENCH_ROOT"
RUNS="${RUNS:-5}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

log() { printf '[bench] %s\n' "$*" >&2; }

log "building the release binary"
CONVIRT="$(bench_binary)"
FUZZ="$REPO/tests/fixtures/fuzz"

# One example: a label, then the command's arguments. Prints a table row.
example() {
    local label="$1"
    shift
    local times=() code=0 first=""
    for _ in $(seq "$RUNS"); do
        rm -rf "$WORK/store"
        mkdir -p "$WORK/store" "$WORK/home"
        local start end
        start="$(date +%s%N)"
        code=0
        env -i HOME="$WORK/home" PATH="$PATH" NO_COLOR=1 \
            "$CONVIRT" --store "$WORK/store" "$@" >"$WORK/out" 2>"$WORK/err" || code=$?
        end="$(date +%s%N)"
        times+=("$(( (end - start) / 1000000 ))")
    done
    # The first line, and where it points (`--> file:line:col`), repository paths shortened.
    first="$(grep -m 2 -E '^(error|warning)|-->' "$WORK/err" | sed -e "s|$REPO/||g" -e 's/|/\\|/g' |
        cut -c1-110 | paste -sd ' ' -)" || first=""
    local median
    median="$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (RUNS + 1) / 2 ))p")"
    printf '| %s | %s | %s | %s |\n' "$label" "$code" "$median" "${first:-(none)}"
}

conf() {
    printf '%s\n' "$1" >"$WORK/$2.conf"
    printf '%s' "$WORK/$2.conf"
}

echo "| example | exit | median (ms) | stderr (first line, place) |"
echo "| --- | ---: | ---: | --- |"
example "archive, mtime all 0xff" image import "$FUZZ/archive_import/issue13_mtime_all_ff.tar.gz"
example "archive, pax mtime overflow" image import "$FUZZ/archive_import/pax_mtime_overflow"
example "settings, dotted key of 200 parts" \
    --config "$FUZZ/settings_file/dotted_key_past_limit.toml" image list
example "settings, table header of 200 parts" \
    --config "$FUZZ/settings_file/table_header_past_limit.toml" image list
example "settings, 300 nested arrays" --config "$FUZZ/settings_file/deep_array.toml" image list
example "\`'%.65536f' % 1\`" conf eval "$(conf "x = '%.65536f' % 1" f)"
example "\`'%.65536e' % 1\`" conf eval "$(conf "x = '%.65536e' % 1" e)"
example "\`'%.1048576d' % 1\`" conf eval "$(conf "x = '%.1048576d' % 1" d)"
example "\`'%.5x' % 1\`" conf eval "$(conf "x = '%.5x' % 1" x)"
