#!/bin/bash
# Benchmark of `convirt image pack` / `image import` against GNU tar + gzip on the same image:
# a 1 GiB sparse disk holding 64 MiB of data plus 2,000 small files. Run by hand (not in CI):
#
#   bash bench/archive.sh            # builds the release binary, runs, updates docs/performance.md
#
# The four commands take turns, RUNS rounds (default 5), warm page cache, `sync` before each;
# the table shows the median wall time and the largest peak RSS (`/usr/bin/time -v`,
# "Maximum resident set size").
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
REPO="$BENCH_ROOT"
RUNS="${RUNS:-5}"
DOC="$REPO/docs/performance.md"

log() { printf '[bench] %s\n' "$*" >&2; }

need_time() {
    if [[ ! -x /usr/bin/time ]]; then
        log "installing GNU time (apt-get install time)"
        apt-get install -y time >/dev/null 2>&1 || {
            apt-get update -qq && apt-get install -y time >/dev/null
        }
    fi
}

build() {
    log "building the release binary"
    CONVIRT="$(bench_binary)"
}

# 4 MiB of disk content for run $1 (head closing the pipe early is expected).
disk_run() {
    if (($1 % 2)); then
        head -c 4M /dev/urandom
    else
        find /usr/bin /usr/lib -maxdepth 2 -type f -size +100k 2>/dev/null | sort |
            tail -n +$(($1 * 3 + 1)) | head -n 40 | xargs cat 2>/dev/null | head -c 4M || true
    fi
}

make_image() {
    local img="$1/BenchImage"
    log "making the image in $img"
    mkdir -p "$img"
    printf "disk_size = 1024\n" >"$img/image.conf"
    printf "name = ''\nmemory = 512\ndisk = ['file:/var/lib/xen/disk.img,xvda,w']\n" \
        >"$img/vm_conf.template"
    printf '#!/bin/bash\nexit 0\n' >"$img/provision.sh"
    chmod 755 "$img/provision.sh"
    printf '<b>Benchmark image</b>\n' >"$img/description.htm"
    # The disk: 1 GiB apparent, 64 MiB of data in 16 runs of 4 MiB spread over it; half of
    # the runs are executable code from /usr (compressible like a real root file system),
    # half random bytes (like compressed or encrypted data).
    truncate -s 1G "$img/disk.img"
    local i
    for i in $(seq 0 15); do
        disk_run "$i" | dd of="$img/disk.img" bs=1M seek=$((i * 64)) conv=notrunc status=none
    done
    # 2,000 small files in 20 directories.
    local d f
    for d in $(seq -w 1 20); do
        mkdir -p "$img/custom_scripts/dir$d"
        for f in $(seq -w 1 100); do
            printf '#!/bin/bash\n# script %s/%s\necho "step %s of %s"\n%s\n' "$d" "$f" "$f" "$d" \
                "$(head -c $((200 + 10#$f * 30)) /usr/share/common-licenses/GPL-3 2>/dev/null || true)" \
                >"$img/custom_scripts/dir$d/S$f"
        done
    done
}

# Runs a command under /usr/bin/time -v; prints "seconds kib user_seconds sys_seconds". Dirty pages are written out
# first (untimed), so each command pays for its own writes only, not for the previous one's.
measure() {
    local out
    sync
    out="$(mktemp)"
    /usr/bin/time -v -o "$out" "$@" >/dev/null 2>&1
    awk -F': ' '
        /Elapsed \(wall clock\)/ { n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i] }
        /Maximum resident set size/ { m = $2 }
        /User time/ { u = $2 }
        /System time/ { y = $2 }
        END { printf "%.3f %d %.2f %.2f\n", s, m, u, y }' "$out"
    rm -f "$out"
}

# Median of a list of seconds, and the largest of a list of KiB.
median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { printf "%.3f", a[int((NR + 1) / 2)] }'; }
largest() { printf '%s\n' "$@" | sort -n | tail -n1; }
# "a1/b1, a2/b2, ..." from two arrays named by $1 and $2.
rounds() {
    local -n a="$1" b="$2"
    local i out=()
    for i in "${!a[@]}"; do out+=("${a[$i]}/${b[$i]}"); done
    local IFS=','
    printf '%s' "${out[*]}" | sed 's/,/, /g'
}

main() {
    need_time
    build
    # Global, so the EXIT trap still sees it.
    WORK="$(mktemp -d "${TMPDIR:-/var/tmp}/convirt-bench.XXXXXX")"
    trap 'rm -rf "$WORK"' EXIT
    local work="$WORK"
    local store="$work/store"
    make_image "$store"
    local du_data du_apparent
    du_data="$(du -s --block-size=1M "$store/BenchImage" | cut -f1)"
    du_apparent="$(du -s --apparent-size --block-size=1M "$store/BenchImage" | cut -f1)"
    log "image: ${du_data} MiB on disk, ${du_apparent} MiB apparent"

    # The four commands take turns, so a change in the machine's load hits them alike.
    local load r s k
    load="$(cut -d' ' -f1-3 /proc/loadavg)"
    local cps=() cpk=() cpu=() cpy=() tps=() tpk=() tpu=() tpy=()
    local cis=() cik=() ciu=() ciy=() tis=() tik=() tiu=() tiy=() fls=() fly=() u y
    for r in $(seq 1 "$RUNS"); do
        rm -f "$work/c.tar.gz" "$work/t.tar.gz"
        rm -rf "$work/s2" "$work/x"
        mkdir "$work/s2" "$work/x"
        read -r s k u y < <(measure "$CONVIRT" -q --store "$store" image pack BenchImage -o "$work/c.tar.gz")
        cps+=("$s") cpk+=("$k") cpu+=("$u") cpy+=("$y")
        read -r s k u y < <(measure tar -czSf "$work/t.tar.gz" -C "$store" BenchImage)
        tps+=("$s") tpk+=("$k") tpu+=("$u") tpy+=("$y")
        # The imports alternate which goes first: the file system gets slower over a run.
        if ((r % 2)); then
            read -r s k u y < <(measure "$CONVIRT" -q --store "$work/s2" image import "$work/c.tar.gz")
            cis+=("$s") cik+=("$k") ciu+=("$u") ciy+=("$y")
            read -r s k u y < <(measure tar -xzSf "$work/t.tar.gz" -C "$work/x")
            tis+=("$s") tik+=("$k") tiu+=("$u") tiy+=("$y")
        else
            read -r s k u y < <(measure tar -xzSf "$work/t.tar.gz" -C "$work/x")
            tis+=("$s") tik+=("$k") tiu+=("$u") tiy+=("$y")
            read -r s k u y < <(measure "$CONVIRT" -q --store "$work/s2" image import "$work/c.tar.gz")
            cis+=("$s") cik+=("$k") ciu+=("$u") ciy+=("$y")
        fi
        # What creating the same 2,000 (empty) files costs a shell loop: the floor of any import.
        rm -rf "$work/floor"
        # shellcheck disable=SC2016 # the loop expands inside the inner bash
        read -r s k u y < <(measure bash -c \
            'for d in $(seq 20); do mkdir -p "$1/d$d"; for i in $(seq 100); do : >"$1/d$d/f$i"; done; done' \
            _ "$work/floor")
        fls+=("$s") fly+=("$y")
        log "run $r: pack ${cps[-1]}s / tar ${tps[-1]}s, import ${cis[-1]}s / tar ${tis[-1]}s"
    done
    load="$load, after: $(cut -d' ' -f1-3 /proc/loadavg)"
    local cp_s cp_k tp_s tp_k ci_s ci_k ti_s ti_k
    cp_s="$(median "${cps[@]}")" cp_k="$(largest "${cpk[@]}")"
    tp_s="$(median "${tps[@]}")" tp_k="$(largest "${tpk[@]}")"
    ci_s="$(median "${cis[@]}")" ci_k="$(largest "${cik[@]}")"
    ti_s="$(median "${tis[@]}")" ti_k="$(largest "${tik[@]}")"
    local cp_cpu tp_cpu ci_cpu ti_cpu
    cp_cpu="$(median "${cpu[@]}") / $(median "${cpy[@]}")"
    tp_cpu="$(median "${tpu[@]}") / $(median "${tpy[@]}")"
    ci_cpu="$(median "${ciu[@]}") / $(median "${ciy[@]}")"
    ti_cpu="$(median "${tiu[@]}") / $(median "${tiy[@]}")"

    diff -r "$store/BenchImage" "$work/s2/BenchImage" >/dev/null
    local c_size t_size imported_du
    c_size="$(stat -c %s "$work/c.tar.gz")"
    t_size="$(stat -c %s "$work/t.tar.gz")"
    imported_du="$(du -s --block-size=1M "$work/s2/BenchImage" | cut -f1)"

    local pack_ratio import_ratio
    pack_ratio="$(awk -v a="$cp_s" -v b="$tp_s" 'BEGIN { printf "%.2f", a / b }')"
    import_ratio="$(awk -v a="$ci_s" -v b="$ti_s" 'BEGIN { printf "%.2f", a / b }')"
    local verdict_pack verdict_import verdict_mem
    verdict_pack="$(awk -v r="$pack_ratio" 'BEGIN { print (r <= 0.6 ? "met" : "NOT met") }')"
    verdict_import="$(awk -v r="$import_ratio" 'BEGIN { print (r <= 1.0 ? "met" : "NOT met") }')"
    verdict_mem="$(awk -v a="$cp_k" -v b="$ci_k" 'BEGIN { print ((a < 65536 && b < 65536) ? "met" : "NOT met") }')"

    local section
    section="$(mktemp)"
    cat >"$section" <<EOF
## Image pack and import

Measured by \`bench/archive.sh\` on $(date -u +%Y-%m-%d): $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')),
$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, $(uname -sr), file system $(stat -f -c %T "$work"),
$(tar --version | head -n1), gzip $(gzip --version | head -n1 | awk '{ print $2 }'). Warm page cache, \`sync\` before each command
(not timed); the four commands take turns (the two imports swap places every round), $RUNS rounds; time is the median, peak memory the largest of the rounds. The machine is
shared: load average before and after the runs $load.

The image: a 1 GiB sparse disk holding 64 MiB of data (half code from \`/usr\`, half random)
plus 2,000 small files in 20 directories: ${du_data} MiB on disk, ${du_apparent} MiB apparent.

| operation | command | time (s) | CPU user / sys (s) | peak RSS (MiB) | archive (MiB) |
| --- | --- | ---: | ---: | ---: | ---: |
| pack | \`convirt image pack\` (tar.gz) | $cp_s | $cp_cpu | $(awk -v k="$cp_k" 'BEGIN { printf "%.1f", k / 1024 }') | $(awk -v b="$c_size" 'BEGIN { printf "%.1f", b / 1048576 }') |
| pack | \`tar -czSf\` | $tp_s | $tp_cpu | $(awk -v k="$tp_k" 'BEGIN { printf "%.1f", k / 1024 }') | $(awk -v b="$t_size" 'BEGIN { printf "%.1f", b / 1048576 }') |
| import | \`convirt image import\` | $ci_s | $ci_cpu | $(awk -v k="$ci_k" 'BEGIN { printf "%.1f", k / 1024 }') | |
| import | \`tar -xzSf\` | $ti_s | $ti_cpu | $(awk -v k="$ti_k" 'BEGIN { printf "%.1f", k / 1024 }') | |

CPU times are medians too; those of \`tar -z\` include its \`gzip\` process. Each round, in
seconds (convirt / tar): pack $(rounds cps tps); import $(rounds cis tis).

Import is bound by the kernel creating files on this machine: a shell loop that only creates
the same 2,000 empty files in 20 directories takes $(median "${fls[@]}") s (median; $(median "${fly[@]}") s of it system
time), for any tool, and creating them from two threads was slower still (the directory and
journal locks serialise it). So both imports move together with the machine's I/O, and their
ratio swings around 1.0 from run to run; convirt's own CPU time is what it controls.

Goals: pack at most 0.6 of GNU tar + gzip's time: **$pack_ratio, $verdict_pack**; import at most
1.0 of it: **$import_ratio, $verdict_import**; peak memory under 64 MiB: **$verdict_mem**.
The imported disk uses ${imported_du} MiB of the file system (holes kept).

What the two sides do differently: \`convirt image pack\` also hashes every byte (SHA-256, for the
manifest), compresses on all cores (independent 1 MiB gzip members, level 6 like gzip's default; chunks
that look incompressible are stored)
and flushes the archive to disk before renaming it into place; \`convirt image import\` also
checks every entry, verifies the manifest and loads the image's config files before renaming
the image into the store. \`tar\` pipes through one \`gzip\` process.
EOF
    mkdir -p "$(dirname "$DOC")"
    if [[ ! -f "$DOC" ]]; then
        printf '# Performance\n\nFigures measured on the project machine; each section names its script.\n\n' >"$DOC"
    fi
    # Replace the section if it is there, else append it.
    awk -v sec="$section" '
        BEGIN { while ((getline l < sec) > 0) body = body l "\n" }
        /^## Image pack and import/ { skip = 1; printf "%s", body; done = 1; next }
        skip && /^## / { skip = 0; print ""; }
        !skip { print }
        END { if (!done) printf "\n%s", body }' "$DOC" >"$DOC.new"
    mv "$DOC.new" "$DOC"
    rm -f "$section"
    log "wrote $DOC"
    sed -n '/^## Image pack and import/,/^## [^I]/p' "$DOC"
}

main "$@"
