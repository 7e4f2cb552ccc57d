#!/usr/bin/env bash
# xl-check.sh FILE...
#
# Judge Xen domain config files (xl.cfg format) with the real Xen 4.17
# parsers, on a machine without a hypervisor:
#   1. xlucheck (libxlutil): syntax, with line numbers, and every `disk`
#      entry through xlu_disk_parse;
#   2. `xl -N create FILE` (dry run) with the LD_PRELOAD stub xlstub.so,
#      which prints the parsed libxl domain config as JSON.
#
# stdout: the JSON domain config of each accepted FILE (nothing else).
# stderr: xl/libxlutil chatter and error messages.
# Exit:   0 all accepted, 1 some FILE rejected, 2 usage/build/tool error,
#         77 Xen tools or headers not installed (skip).
#
# Env:    XEN_CHECK_BUILD_DIR  build dir (default <repo>/target/xen-check)
#         XEN_CHECK_XL         xl binary (default /usr/lib/xen-4.17/bin/xl)
#         XEN_CHECK_STRICT=1   also reject a FILE when xl prints a warning
#                              (xl accepts e.g. `memory = "256M"` or
#                              `device_model = ...` with only a warning)
#
# Needs:  apt-get install -y --no-install-recommends xen-utils-4.17 libxen-dev
#         (plus gcc).  See tests/xen/README.md.
set -euo pipefail

prog=xl-check
script_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd -- "${script_dir}/../.." && pwd)
build_dir=${XEN_CHECK_BUILD_DIR:-"${repo_root}/target/xen-check"}
xl_bin=${XEN_CHECK_XL:-/usr/lib/xen-4.17/bin/xl}
strict=${XEN_CHECK_STRICT:-0}
apt_hint="apt-get install -y --no-install-recommends xen-utils-4.17 libxen-dev"

skip() {
    echo "${prog}: SKIP: $*" >&2
    exit 77
}

die() {
    echo "${prog}: error: $*" >&2
    exit 2
}

if [[ $# -eq 0 ]]; then
    echo "usage: $0 FILE..." >&2
    exit 2
fi

# --- prerequisites (exit 77 when missing) -----------------------------------
[[ -x "${xl_bin}" ]] ||
    skip "Xen tools not installed (${xl_bin} missing); install with: ${apt_hint}"
for header in libxl.h libxlutil.h xenctrl.h xenstore.h xenevtchn.h; do
    [[ -f "/usr/include/${header}" ]] ||
        skip "Xen headers not installed (/usr/include/${header} missing); install with: ${apt_hint}"
done
command -v gcc >/dev/null 2>&1 || skip "gcc not installed (needed to build the stub)"

xen_libs=(-lxlutil -lxenlight)
if command -v pkg-config >/dev/null 2>&1 && pkg-config --exists xenlight xlutil; then
    pc_flags=$(pkg-config --cflags --libs xenlight xlutil) ||
        die "pkg-config xenlight xlutil failed"
    read -r -a xen_libs <<<"${pc_flags}"
fi

# --- build (concurrency-safe: flock + temp file + atomic mv) ----------------
# build OUT SRC GCC-ARGS...: (re)build OUT when missing or older than SRC.
build() {
    local out=$1 src=$2
    shift 2
    if [[ -x "${out}" && ! "${src}" -nt "${out}" ]]; then
        return 0
    fi
    (
        flock 9 || exit 2
        # Another caller may have built it while we waited for the lock.
        if [[ -x "${out}" && ! "${src}" -nt "${out}" ]]; then
            exit 0
        fi
        tmp=$(mktemp "${out}.tmp.XXXXXX") || exit 2
        trap 'rm -f -- "${tmp}"' EXIT
        if ! gcc -O2 -Wall -Wextra -o "${tmp}" "${src}" "$@" >&2; then
            echo "${prog}: error: failed to build ${out} from ${src}" >&2
            exit 2
        fi
        chmod 0755 "${tmp}" || exit 2
        mv -f -- "${tmp}" "${out}" || exit 2
    ) 9>>"${build_dir}/.build.lock"
}

mkdir -p -- "${build_dir}" || die "cannot create build dir ${build_dir}"
stub="${build_dir}/xlstub.so"
xlucheck="${build_dir}/xlucheck"
# build's subshell exits 2 on any failure; set -e then exits with it.
build "${stub}" "${script_dir}/xlstub.c" -shared -fPIC "${xen_libs[@]}"
build "${xlucheck}" "${script_dir}/xlucheck.c" "${xen_libs[@]}"

# --- check each file --------------------------------------------------------
tmp_dir=$(mktemp -d "${TMPDIR:-/tmp}/xl-check.XXXXXX") ||
    die "cannot create a temporary directory"
trap 'rm -rf -- "${tmp_dir}"' EXIT
json="${tmp_dir}/stdout.json"
errs="${tmp_dir}/stderr"

# LD_PRELOAD splits its value at spaces and colons and cannot quote them:
# reach a stub in such a path through a symlink in the temp dir.
preload=${stub}
if [[ "${preload}" == *[[:space:]:]* ]]; then
    preload="${tmp_dir}/xlstub.so"
    ln -s -- "${stub}" "${preload}"
    [[ "${preload}" != *[[:space:]:]* ]] ||
        die "no usable LD_PRELOAD path (spaces or colons in ${preload})"
fi

# reject FILE MSG: report a rejected file; status becomes at least 1.
reject() {
    echo "${prog}: $1: REJECTED: $2" >&2
    if [[ ${status} -lt 1 ]]; then
        status=1
    fi
}

status=0
for file in "$@"; do
    # Keep xl from taking a file name like "-x" as an option.
    if [[ "${file}" == -* ]]; then
        file="./${file}"
    fi
    if [[ ! -f "${file}" || ! -r "${file}" ]]; then
        reject "${file}" "not a readable file"
        continue
    fi

    if ! "${xlucheck}" "${file}"; then
        reject "${file}" "by libxlutil (xlucheck)"
        continue
    fi

    xl_rc=0
    LD_PRELOAD="${preload}" "${xl_bin}" -N create "${file}" \
        >"${json}" 2>"${errs}" || xl_rc=$?
    cat -- "${errs}" >&2
    first_char=$(head -c 1 -- "${json}") || true
    if [[ ${xl_rc} -gt 128 ]]; then
        echo "${prog}: ${file}: ERROR: xl died with signal $((xl_rc - 128))," \
            "probably a hypervisor call not covered by xlstub.c" >&2
        status=2
    elif grep -q 'cannot init xl context' -- "${errs}"; then
        echo "${prog}: ${file}: ERROR: xl could not start (stub not preloaded?)" >&2
        status=2
    elif [[ ${xl_rc} -ne 0 ]]; then
        reject "${file}" "by xl -N create (exit ${xl_rc})"
    elif [[ "${strict}" == 1 ]] && grep -qi 'warning' -- "${errs}"; then
        reject "${file}" "xl printed warnings (XEN_CHECK_STRICT=1)"
    elif [[ "${first_char}" != "{" ]]; then
        echo "${prog}: ${file}: ERROR: xl printed no JSON domain config" >&2
        cat -- "${json}" >&2
        status=2
    else
        cat -- "${json}"
    fi
done

exit "${status}"
