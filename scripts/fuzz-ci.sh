#!/usr/bin/env bash
# The time-boxed fuzz run of CI: every input path of convirt (config language, archive
# import, settings file, --set/--vm-set values, image edit, image_store.conf) gets mutated
# inputs for a fixed time, after its regression corpus (tests/fixtures/fuzz/) was replayed.
# See docs/fuzzing.md.
#
#   scripts/fuzz-ci.sh               30 s per input path (six paths, two at a time: ~2-3 min)
#   scripts/fuzz-ci.sh 600           10 min per input path
#   CONVIRT_FUZZ_SEED=7 scripts/fuzz-ci.sh   another seed (default: derived from the commit)
#
# A failure prints the input and the file it was saved to; copy that file into
# tests/fixtures/fuzz/<target>/ and it is replayed by every `cargo test` from then on.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-${CONVIRT_FUZZ_SECONDS:-30}}"
if [[ ! "$seconds" =~ ^[0-9]+$ ]]; then
    echo "usage: scripts/fuzz-ci.sh [SECONDS-PER-TARGET]" >&2
    exit 2
fi
if [[ -z "${CONVIRT_FUZZ_SEED:-}" ]]; then
    # The same commit fuzzes the same inputs (a failure reproduces on a re-run); each new
    # commit explores new ones.
    commit="$(git rev-parse --short=12 HEAD 2>/dev/null || echo 1)"
    CONVIRT_FUZZ_SEED="$((16#${commit} % 4294967296))"
fi
export CONVIRT_FUZZ_SECONDS="$seconds" CONVIRT_FUZZ_SEED

echo "fuzzing each input path for ${seconds}s (CONVIRT_FUZZ_SEED=${CONVIRT_FUZZ_SEED})"
# A hang is a bug too: past a generous bound (every target's budget, twice over, plus the
# build) the run is stopped and fails instead of holding CI until its own limit.
limit=$((seconds * 6 * 2 + 600))
if ! timeout --signal=KILL "$limit" cargo test --locked --test fuzz_inputs -- --test-threads=2 --nocapture; then
    echo "fuzz-ci: a target failed or ran past ${limit}s (a hang); see the output above" >&2
    exit 1
fi
