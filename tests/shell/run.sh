#!/bin/bash
# shellcheck source-path=SCRIPTDIR
#
# tests/shell/run.sh: tests of the shipped image store's shell side.
#
# Exercises image_store/common/functions for real in a temporary directory
# (config parsing with hostile values, disk creation, file systems, content
# copies, fetching, the CONVIRT_CREATED record, customization scripts) and
# runs every shipped provision.sh end to end with hand-written -c/-x/-p
# files. Needs bash, coreutils, e2fsprogs, qemu-img, tar and gzip; runs as
# root or as a normal user. The last line is "N passed, M failed"; the exit
# status is non-zero when a test failed.
#
# Usage: tests/shell/run.sh [-v]      (-v: show the functions' log output)
#
# Tests change CONVIRT_CREATED, GUEST_ROOT and the config variables inside
# subshells on purpose, so that each test starts from a clean state.
# shellcheck disable=SC2030,SC2031

set -uo pipefail


# e2fsprogs' debugfs, e2fsck and dumpe2fs live in sbin, which a normal
# user's PATH often lacks.
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
STORE=$(cd -- "$HERE/../../image_store" && pwd -P)
VERBOSE=0
if [[ "${1:-}" == -v ]]; then
    VERBOSE=1
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/convirt-shell-tests.XXXXXX") || exit 1
trap 'rm -rf -- "$TMP"' EXIT

passed=0
failed=0

###########################################################################
# Helpers
###########################################################################

pass() {
    passed=$((passed + 1))
    printf 'ok   %s\n' "$1"
}

fail() {
    failed=$((failed + 1))
    printf 'FAIL %s\n' "$1"
    if [[ -n "${2:-}" ]]; then
        printf '       %s\n' "$2"
    fi
}

# check DESC CMD...: pass when CMD succeeds.
check() {
    local desc="$1"
    shift
    if "$@"; then
        pass "$desc"
    else
        fail "$desc"
    fi
}

# check_eq DESC EXPECTED ACTUAL
check_eq() {
    if [[ "$2" == "$3" ]]; then
        pass "$1"
    else
        fail "$1" "expected $(printf '%q' "$2"), got $(printf '%q' "$3")"
    fi
}

# check_contains DESC FILE TEXT: FILE contains the fixed string TEXT.
check_contains() {
    if grep -qF -- "$3" "$2" 2> /dev/null; then
        pass "$1"
    else
        fail "$1" "$(printf '%q' "$3") not found in $2"
    fi
}

# quiet CMD...: run CMD with its output in $TMP/last.out (shown with -v).
quiet() {
    local rc=0
    "$@" > "$TMP/last.out" 2>&1 || rc=$?
    if ((VERBOSE)); then
        sed 's/^/       | /' "$TMP/last.out"
    fi
    return "$rc"
}

# created_entries FILE: print the NUL-separated entries of FILE, one a line.
created_entries() {
    local -a entries=()
    if [[ -f "$1" ]]; then
        mapfile -d '' entries < "$1"
    fi
    if ((${#entries[@]} > 0)); then
        printf '%s\n' "${entries[@]}"
    fi
}

apparent_size() {
    stat -c %s -- "$1"
}

# used_kb FILE: disk space FILE really uses.
used_kb() {
    du -k -- "$1" | cut -f1
}

# debugfs_cat DISK PATH: a file of an ext file system, without mounting.
debugfs_cat() {
    debugfs -R "cat $2" "$1" 2> /dev/null
}

# shellcheck source=../../image_store/common/functions
source "$STORE/common/functions"
unset CONVIRT_CREATED GUEST_ROOT
log_file=""

###########################################################################
# source_python_config
###########################################################################

# The t_* variables are set by source_python_config, not visibly here.
# shellcheck disable=SC2154
test_source_python_config() {
    local dir="$TMP/spc" conf
    mkdir -p "$dir"
    conf="$dir/hostile.conf"
    # One assignment per line, in convirt's format. The expected values
    # follow; nothing may run and nothing may be expanded.
    {
        printf '%s\n' "# a comment" ""
        printf "t_cmd = '\$(touch %s/pwned1)'\n" "$dir"
        printf "t_tick = '\`touch %s/pwned2\`'\n" "$dir"
        printf "t_semi = 'a; touch %s/pwned3; b'\n" "$dir"
        printf '%s\n' "t_quotes = 'it\\x27s \"quoted\" \\\\x27'"
        printf '%s\n' "t_newline = 'line1\\nline2\\tend\\r'"
        printf '%s\n' "t_ctrl = 'bell\\x07'"
        printf '%s\n' "t_backslash = 'C:\\\\dir\\\\'"
        printf '%s\n' "t_hash = '\$1\$9qAFryp3\$XmvqcFN/CJG4AC7jgyVE8'"
        printf '%s\n' "t_unicode = 'héllo ☃ 日本'"
        printf '%s\n' "t_spaces = '  padded  '"
        printf '%s\n' "t_empty = ''"
        printf '%s\n' "t_int = 10000" "t_neg = -42" "t_float = 2.5" "t_exp = 1e3"
        printf '%s\n' "t_true = True" "t_false = False" "t_none = None"
        printf '%s\n' "t_list = ['file:/x/a b.disk,hda,w', 'phy:/dev/cdrom,hdc:cdrom,r']"
        printf '%s\n' "t_tuple = ('a', 'b')"
        printf '%s\n' "t_dict = {'k': [1, '\$(touch $dir/pwned4)']}"
        printf '%s\n' "t_comment = 'value'   # trailing comment"
        printf '%s\n' "t_dq = \"double 'quoted'\""
        printf '%s\n' "PATH = '/evil'" "IFS = 'x'" "BASH_ENV = '/evil'" "_cv_key = 'x'"
        printf '%s\n' "CONVIRT_CREATED = '/evil'" "GUEST_ROOT = '/'"
        printf '%s\n' "1bad = 'x'" "import os" "t_broken = 'unterminated"
        printf '%s\n' "t_after = 'still read'"
        printf '%s\n' "QEMU_IMG = '/evil'" "MKSWAP = '/evil'"
        printf "t_crlf = 'crlf'\r\n"
        printf '%s' "t_last = 'no newline'"
    } > "$conf"

    local before_path="$PATH"
    (
        cd "$dir" || exit 1
        quiet source_python_config "$conf" || exit 1
        declare -p t_cmd t_tick t_semi t_quotes t_newline t_ctrl t_backslash \
            t_hash t_unicode t_spaces t_empty t_int t_neg t_float t_exp t_true \
            t_false t_none t_list t_tuple t_dict t_comment t_dq t_after t_crlf \
            t_last > "$dir/values"
        printf '%s\n%s\n' "$PATH" "$IFS" > "$dir/special"
        printf '%s %s' "$QEMU_IMG" "$MKSWAP" > "$dir/tools"
        cp "$TMP/last.out" "$dir/log"
    )
    check "source_python_config reads a hostile file" test -s "$dir/values"
    # shellcheck source=/dev/null
    source "$dir/values"
    check_eq "value with \$(...) arrives verbatim" "\$(touch $dir/pwned1)" "$t_cmd"
    check_eq "value with backticks arrives verbatim" "\`touch $dir/pwned2\`" "$t_tick"
    check_eq "value with ';' arrives verbatim" "a; touch $dir/pwned3; b" "$t_semi"
    check_eq "quotes and an escaped backslash decode" "it's \"quoted\" \\x27" "$t_quotes"
    check_eq "\\n \\t \\r decode to control characters" $'line1\nline2\tend\r' "$t_newline"
    check_eq "\\xHH decodes to the byte" $'bell\a' "$t_ctrl"
    check_eq "backslashes decode" "C:\\dir\\" "$t_backslash"
    # shellcheck disable=SC2016 # a literal crypt hash
    check_eq "crypt hash arrives verbatim" '$1$9qAFryp3$XmvqcFN/CJG4AC7jgyVE8' "$t_hash"
    check_eq "UTF-8 arrives verbatim" 'héllo ☃ 日本' "$t_unicode"
    check_eq "spaces are kept" '  padded  ' "$t_spaces"
    check_eq "empty string" '' "$t_empty"
    check_eq "int as text" '10000' "$t_int"
    check_eq "negative int" '-42' "$t_neg"
    check_eq "float as text" '2.5' "$t_float"
    check_eq "float with exponent" '1e3' "$t_exp"
    check_eq "True as str()" 'True' "$t_true"
    check_eq "False as str()" 'False' "$t_false"
    check_eq "None as empty" '' "$t_none"
    check_eq "list as its repr text" "['file:/x/a b.disk,hda,w', 'phy:/dev/cdrom,hdc:cdrom,r']" "$t_list"
    check_eq "tuple as its repr text" "('a', 'b')" "$t_tuple"
    check_eq "dict as its repr text" "{'k': [1, '\$(touch $dir/pwned4)']}" "$t_dict"
    check_eq "trailing comment ignored" 'value' "$t_comment"
    check_eq "double-quoted string" "double 'quoted'" "$t_dq"
    check_eq "lines after a bad line are still read" 'still read' "$t_after"
    check_eq "CRLF line" 'crlf' "$t_crlf"
    check_eq "last line without newline" 'no newline' "$t_last"
    check "nothing ran (no pwned files)" test -z "$(find "$dir" -name 'pwned*')"
    check_eq "PATH and IFS untouched" "$before_path"$'\n'$' \t' "$(cat "$dir/special")"
    check_contains "reserved name PATH is logged" "$dir/log" "'PATH' is a reserved"
    check_eq "tool variables of common/defs untouched" "$QEMU_IMG $MKSWAP" "$(cat "$dir/tools")"
    check_contains "a tool variable is logged" "$dir/log" "'QEMU_IMG' names a tool of common/defs"
    check_contains "CONVIRT_CREATED cannot be set" "$dir/log" "'CONVIRT_CREATED' is a reserved"
    check_contains "GUEST_ROOT cannot be set" "$dir/log" "'GUEST_ROOT' is a reserved"
    check_contains "invalid name is logged" "$dir/log" "'1bad' is not a valid shell variable name"
    check_contains "unparsable line logged with file and line" "$dir/log" "$conf:33: not a 'key = value' line"
    check_contains "bad literal logged with file and line" "$dir/log" "$conf:34: value of 't_broken'"

    # Special variables of the caller are never assigned.
    printf '%s\n' "t_int_var = 'a[\$(touch $dir/pwned5)]'" "t_ro = 'x'" "t_arr = 'y'" > "$dir/special.conf"
    local out
    out=$(
        declare -i t_int_var=1
        t_ro=keep
        readonly t_ro
        t_arr=(1 2)
        quiet source_python_config "$dir/special.conf"
        printf '%s %s %s' "$t_int_var" "$t_ro" "${t_arr[*]}"
    )
    check_eq "integer, readonly and array variables are left alone" '1 keep 1 2' "$out"
    check "no command ran through an integer variable" test ! -e "$dir/pwned5"
    check "a missing file is an error" bash -c "! { source '$STORE/common/functions'; source_python_config '$dir/missing' >/dev/null; }"
}

###########################################################################
# py_list_items
###########################################################################

test_py_list_items() {
    local -a items=()
    py_list_items items "['file:/x/a b.disk,hda,w', 'phy:/dev/cdrom,hdc:cdrom,r']"
    check_eq "py_list_items: two items" 2 "${#items[@]}"
    check_eq "py_list_items: item with space" 'file:/x/a b.disk,hda,w' "${items[0]:-}"
    py_list_items items "('it\\x27s', \"dq\", 'tab\\there', 'nl\\n',)"
    check_eq "py_list_items: tuple, escapes, trailing comma" "it's|dq|tab"$'\t'"here|nl"$'\n|' \
        "$(printf '%s|' "${items[@]}")"
    py_list_items items "[]"
    check_eq "py_list_items: empty list" 0 "${#items[@]}"
    py_list_items items "  [ 'a' ]  "
    check_eq "py_list_items: surrounding spaces" 'a' "${items[*]}"
    check "py_list_items: a string is an error" bash -c "! { source '$STORE/common/functions'; py_list_items a \"'x'\"; }"
    local bad
    for bad in "[1, 2]" "['a' 'b']" "['a', None]" "['unterminated]" "['a'] extra" "{'a': 'b'}" "['bad\\q']" "['nul\\x00']"; do
        if py_list_items items "$bad"; then
            fail "py_list_items rejects $bad"
        else
            pass "py_list_items rejects $bad"
        fi
    done
    check_eq "py_list_items: array emptied on error" 0 "${#items[@]}"
    check "py_list_items: bad array name is an error" bash -c "! { source '$STORE/common/functions'; py_list_items 'a[1]' \"['x']\" >/dev/null; }"
}

###########################################################################
# create_disk, make_fs
###########################################################################

test_create_disk() {
    local dir="$TMP/disks" info
    mkdir -p "$dir"
    check "create_disk VBD" quiet create_disk VBD "$dir/a.img" 64
    check_eq "VBD apparent size is 64 MB" 67108864 "$(apparent_size "$dir/a.img")"
    check "VBD is sparse (uses < 1 MB)" test "$(used_kb "$dir/a.img")" -lt 1024
    check "create_disk tap:aio" quiet create_disk tap:aio "$dir/aio.img" 8
    check "create_disk file into new nested directories" quiet create_disk file "$dir/new/sub/f.img" 8
    check "create_disk qcow2" quiet create_disk qcow2 "$dir/q.qcow2" 64
    info=$(qemu-img info --output=json "$dir/q.qcow2" 2> /dev/null)
    check "qcow2 image has format qcow2" grep -q '"format": "qcow2"' <<< "$info"
    check "qcow2 image has virtual size 64 MB" grep -q '"virtual-size": 67108864' <<< "$info"
    check "create_disk tap:qcow2" quiet create_disk tap:qcow2 "$dir/tq.qcow2" 8
    check "create_disk vmdk" quiet create_disk vmdk "$dir/v.vmdk" 16
    check "vmdk image has format vmdk" grep -q '"format": "vmdk"' <<< "$(qemu-img info --output=json "$dir/v.vmdk" 2> /dev/null)"

    # Owner-only whatever the umask (issue #18): a disk holds the guest's secrets.
    (
        umask 000
        for t in VBD qcow2 vmdk; do
            quiet create_disk "$t" "$dir/umask000.$t" 8 || exit 1
        done
    )
    for t in VBD qcow2 vmdk; do
        check_eq "create_disk $t under umask 000 is 0600" 600 "$(stat -c %a "$dir/umask000.$t" 2> /dev/null)"
    done

    # Never overwrite.
    printf 'precious data\n' > "$dir/existing.img"
    cp "$dir/existing.img" "$dir/existing.copy"
    check "create_disk refuses an existing file" bash -c "! { source '$STORE/common/functions'; create_disk VBD '$dir/existing.img' 8 > '$dir/refuse.log'; }"
    check "refusal message points at --force" grep -q -- '--force' "$dir/refuse.log"
    check "existing file unchanged (VBD)" cmp -s "$dir/existing.img" "$dir/existing.copy"
    if quiet create_disk qcow2 "$dir/existing.img" 8; then
        fail "create_disk qcow2 refuses an existing file"
    else
        pass "create_disk qcow2 refuses an existing file"
    fi
    check "existing file unchanged (qcow2)" cmp -s "$dir/existing.img" "$dir/existing.copy"
    ln -s "$dir/existing.img" "$dir/link.img"
    if quiet create_disk VBD "$dir/link.img" 8; then
        fail "create_disk refuses an existing symlink"
    else
        pass "create_disk refuses an existing symlink"
    fi
    check "symlink target unchanged" cmp -s "$dir/existing.img" "$dir/existing.copy"

    check "create_disk phy: nothing to do" quiet create_disk phy /dev/xvd-none 8
    check "create_disk skips /dev/disk/ paths" quiet create_disk VBD /dev/disk/by-id/none 8
    check "create_disk skips /dev/etherd/ paths" quiet create_disk LVM /dev/etherd/e0.1 8
    local size
    for size in 0 -1 abc 1.5 ""; do
        if quiet create_disk VBD "$dir/size-$size.img" "$size"; then
            fail "create_disk rejects size '$size'"
        else
            pass "create_disk rejects size '$size'"
        fi
    done
    check "no file for a rejected size" test ! -e "$dir/size-0.img"
    if quiet create_disk floppy "$dir/u.img" 8; then
        fail "create_disk rejects an unknown type"
    else
        pass "create_disk rejects an unknown type"
    fi
}

test_create_disk_lvm() {
    local dir="$TMP/lvm" out
    mkdir -p "$dir/bin"
    # Stub LVM tools: lvs says whether the volume exists, lvcreate records
    # its arguments.
    # shellcheck disable=SC2016 # the stub expands it when it runs
    printf '#!/bin/bash\nexit "${LVS_STATUS:-5}"\n' > "$dir/bin/lvs"
    printf '#!/bin/bash\nprintf "%%s\\n" "$*" >> "%s/lvcreate.args"\n' "$dir" > "$dir/bin/lvcreate"
    chmod +x "$dir/bin/lvs" "$dir/bin/lvcreate"
    out=$(
        LVS="$dir/bin/lvs" LVCREATE="$dir/bin/lvcreate" CONVIRT_CREATED="$dir/created"
        export LVS_STATUS=5
        quiet create_disk LVM /dev/vg0/vm1-disk 100 && created_entries "$dir/created"
    )
    check_eq "create_disk LVM records lvm:VG/LV" 'lvm:vg0/vm1-disk' "$out"
    check_eq "lvcreate gets the size and the LV name" '--yes -L 100M -n vm1-disk -- vg0' "$(cat "$dir/lvcreate.args" 2> /dev/null)"
    rm -f "$dir/lvcreate.args"
    if (
        LVS="$dir/bin/lvs" LVCREATE="$dir/bin/lvcreate"
        export LVS_STATUS=0
        quiet create_disk LVM /dev/vg0/vm1-disk 100
    ); then
        fail "create_disk LVM refuses an existing volume"
    else
        pass "create_disk LVM refuses an existing volume"
    fi
    check "lvcreate not run for an existing volume" test ! -e "$dir/lvcreate.args"
    if (LVS="$dir/bin/lvs" LVCREATE="$dir/bin/lvcreate" && quiet create_disk LVM /dev/vg0 100); then
        fail "create_disk LVM rejects a path without VG/LV"
    else
        pass "create_disk LVM rejects a path without VG/LV"
    fi
}

test_make_fs() {
    local dir="$TMP/fs"
    mkdir -p "$dir"
    truncate -s 32M "$dir/ext4.img" "$dir/ext3.img" "$dir/swap.img"
    check "make_fs ext4" quiet make_fs "$dir/ext4.img" ext4
    check "ext4 passes e2fsck -n" quiet e2fsck -fn "$dir/ext4.img"
    check "ext4 has the extents feature" grep -q extent <<< "$(dumpe2fs -h "$dir/ext4.img" 2> /dev/null)"
    check "make_fs ext3" quiet make_fs "$dir/ext3.img" ext3
    check "ext3 has a journal" grep -q has_journal <<< "$(dumpe2fs -h "$dir/ext3.img" 2> /dev/null)"
    check "make_fs swap" quiet make_fs "$dir/swap.img" swap
    check_eq "swap signature" SWAPSPACE2 "$(dd if="$dir/swap.img" bs=1 skip=4086 count=10 2> /dev/null)"
    if quiet make_fs "$dir/ext4.img" xfs; then
        fail "make_fs rejects an unsupported type"
    else
        pass "make_fs rejects an unsupported type"
    fi
    if quiet make_fs "$dir/missing.img" ext4; then
        fail "make_fs rejects a missing disk"
    else
        pass "make_fs rejects a missing disk"
    fi
}

###########################################################################
# copy_disk_content, copy_disk_image
###########################################################################

# make_tree DIR: a small guest tree.
make_tree() {
    mkdir -p "$1/etc" "$1/srv/data dir"
    printf 'guest1\n' > "$1/etc/hostname"
    printf 'with spaces\n' > "$1/srv/data dir/a file.txt"
    ln -s ../etc/hostname "$1/srv/link"
}

test_copy_disk_content() {
    local dir="$TMP/content"
    mkdir -p "$dir"
    make_tree "$dir/tree"
    tar -czf "$dir/root.tar.gz" -C "$dir/tree" .
    tar -cjf "$dir/root.tar.bz2" -C "$dir/tree" . 2> /dev/null || true
    truncate -s 32M "$dir/tgz.img" "$dir/dir.img" "$dir/bz2.img" "$dir/ext3.img"

    check "copy_disk_content from tar_gzip" quiet copy_disk_content "$dir/root.tar.gz" tar_gzip VBD "$dir/tgz.img"
    check_eq "tar_gzip: /etc/hostname" guest1 "$(debugfs_cat "$dir/tgz.img" /etc/hostname)"
    check_eq "tar_gzip: file with spaces" 'with spaces' "$(debugfs_cat "$dir/tgz.img" '"/srv/data dir/a file.txt"')"
    check "tar_gzip: file system is clean" quiet e2fsck -fn "$dir/tgz.img"
    check "tar_gzip: symlink kept" grep -q '\.\./etc/hostname' <<< "$(debugfs -R 'stat /srv/link' "$dir/tgz.img" 2> /dev/null)"

    check "copy_disk_content from a dir" quiet copy_disk_content "$dir/tree" dir file "$dir/dir.img"
    check_eq "dir: /etc/hostname" guest1 "$(debugfs_cat "$dir/dir.img" /etc/hostname)"

    if [[ -s "$dir/root.tar.bz2" ]]; then
        check "copy_disk_content from tar_bz2 (file:// URL)" quiet copy_disk_content "file://$dir/root.tar.bz2" tar_bz2 tap:aio "$dir/bz2.img"
        check_eq "tar_bz2: /etc/hostname" guest1 "$(debugfs_cat "$dir/bz2.img" /etc/hostname)"
    fi
    check "copy_disk_content with ext3" quiet copy_disk_content "$dir/root.tar.gz" tar_gzip VBD "$dir/ext3.img" ext3
    check "ext3 content has a journal" grep -q has_journal <<< "$(dumpe2fs -h "$dir/ext3.img" 2> /dev/null)"

    if command -v zip > /dev/null && command -v unzip > /dev/null; then
        truncate -s 32M "$dir/zip.img"
        (cd "$dir/tree" && zip -qr "$dir/root.zip" .)
        check "copy_disk_content from zip" quiet copy_disk_content "$dir/root.zip" zip VBD "$dir/zip.img"
        check_eq "zip: /etc/hostname" guest1 "$(debugfs_cat "$dir/zip.img" /etc/hostname)"
    fi

    qemu-img create -q -f qcow2 "$dir/q.qcow2" 32M
    if quiet copy_disk_content "$dir/root.tar.gz" tar_gzip qcow2 "$dir/q.qcow2"; then
        fail "copy_disk_content refuses a qcow2 disk"
    else
        pass "copy_disk_content refuses a qcow2 disk"
    fi
    if quiet copy_disk_content "$dir/root.tar.gz" tar_gzip VBD "$dir/missing.img"; then
        fail "copy_disk_content needs an existing disk"
    else
        pass "copy_disk_content needs an existing disk"
    fi
    if quiet copy_disk_content "$dir/nothing.tar" tar VBD "$dir/dir.img"; then
        fail "copy_disk_content fails on a missing source"
    else
        pass "copy_disk_content fails on a missing source"
    fi
    check_eq "a failed copy leaves the disk alone" guest1 "$(debugfs_cat "$dir/dir.img" /etc/hostname)"
    check "no staging directories left" test -z "$(find "${TMPDIR:-/tmp}" -maxdepth 1 -name 'convirt-content.*' -newer "$dir/root.tar.gz" 2> /dev/null)"
}

test_copy_disk_image() {
    local dir="$TMP/image"
    mkdir -p "$dir"
    # 8 MB reference disk: data at both ends, zeros between.
    truncate -s 8M "$dir/ref.img"
    printf 'start' | dd of="$dir/ref.img" conv=notrunc status=none
    printf 'end' | dd of="$dir/ref.img" bs=1 seek=$((8 * 1024 * 1024 - 3)) conv=notrunc status=none
    gzip -c "$dir/ref.img" > "$dir/ref.img.gz"
    tar -czf "$dir/ref.tgz" -C "$dir" ref.img

    check "copy_disk_image raw" quiet copy_disk_image "$dir/ref.img" '' VBD "$dir/raw.img"
    check "raw copy is identical" cmp -s "$dir/ref.img" "$dir/raw.img"
    check "copy_disk_image gzip" quiet copy_disk_image "$dir/ref.img.gz" gzip VBD "$dir/gz.img"
    check "gzip copy is identical" cmp -s "$dir/ref.img" "$dir/gz.img"
    check "gzip copy is sparse (zero blocks skipped)" test "$(used_kb "$dir/gz.img")" -lt 4096
    check "copy_disk_image tar_gzip" quiet copy_disk_image "$dir/ref.tgz" tar_gzip VBD "$dir/tgz.img"
    check "tar_gzip copy is identical" cmp -s "$dir/ref.img" "$dir/tgz.img"
    mkdir -p "$dir/chunks"
    head -c 4M "$dir/ref.img" | gzip -c > "$dir/chunks/chunk00.gz"
    tail -c 4M "$dir/ref.img" | gzip -c > "$dir/chunks/chunk01.gz"
    check "copy_disk_image dir-gzipped-chunks" quiet copy_disk_image "$dir/chunks" dir-gzipped-chunks VBD "$dir/chunks.img"
    check "chunked copy is identical" cmp -s "$dir/ref.img" "$dir/chunks.img"
    if quiet copy_disk_image "$dir/ref.img" '' VBD "$dir/raw.img"; then
        fail "copy_disk_image refuses an existing file"
    else
        pass "copy_disk_image refuses an existing file"
    fi
    if quiet copy_disk_image "$dir/missing.gz" gzip VBD "$dir/fail.img"; then
        fail "copy_disk_image fails on a missing source"
    else
        pass "copy_disk_image fails on a missing source"
    fi
    check "a failed copy leaves no file" test -z "$(find "$dir" -name '*fail.img*')"
}

###########################################################################
# fetch_file and CONVIRT_CREATED
###########################################################################

test_fetch_file() {
    local dir="$TMP/fetch"
    mkdir -p "$dir/src dir"
    printf 'kernel bytes\n' > "$dir/src dir/vmlinuz"
    check "fetch_file from a local path" quiet fetch_file "$dir/src dir/vmlinuz" "$dir/cache/a/vmlinuz"
    check "local copy is identical" cmp -s "$dir/src dir/vmlinuz" "$dir/cache/a/vmlinuz"
    check "fetch_file from file:// (percent-encoded)" quiet fetch_file "file://$dir/src%20dir/vmlinuz" "$dir/cache/b/vmlinuz"
    check "file:// copy is identical" cmp -s "$dir/src dir/vmlinuz" "$dir/cache/b/vmlinuz"
    printf 'cached\n' > "$dir/cache/c"
    check "fetch_file with an existing destination succeeds" quiet fetch_file "$dir/src dir/vmlinuz" "$dir/cache/c"
    check_eq "existing destination is not replaced" cached "$(cat "$dir/cache/c")"
    if quiet fetch_file "$dir/missing" "$dir/cache/d"; then
        fail "fetch_file fails on a missing source"
    else
        pass "fetch_file fails on a missing source"
    fi
    check "a failed fetch leaves nothing" test ! -e "$dir/cache/d"
    if quiet fetch_file "gopher://example.org/x" "$dir/cache/e"; then
        fail "fetch_file rejects an unsupported URL"
    else
        pass "fetch_file rejects an unsupported URL"
    fi
    check "no .part files left" test -z "$(find "$dir/cache" -name '*.part.*')"
}

test_convirt_created() {
    local dir="$TMP/created" list
    mkdir -p "$dir"
    list=$(
        export CONVIRT_CREATED="$dir/record"
        quiet create_disk VBD "$dir/x/y/disk.img" 8
        created_entries "$dir/record"
    )
    check_eq "create_disk records each new directory, parent first, then the file" \
        "$dir/x"$'\n'"$dir/x/y"$'\n'"$dir/x/y/disk.img" "$list"
    list=$(
        export CONVIRT_CREATED="$dir/record2"
        quiet create_disk qcow2 "$dir/x/y/disk2.qcow2" 8
        quiet create_disk VBD "$dir/x/y/disk.img" 8
        created_entries "$dir/record2"
    )
    check_eq "existing directories and refused disks are not recorded" "$dir/x/y/disk2.qcow2" "$list"
    printf 'k\n' > "$dir/kernel"
    list=$(
        export CONVIRT_CREATED="$dir/record3"
        quiet fetch_file "$dir/kernel" "$dir/cache/vmlinuz"
        quiet fetch_file "$dir/kernel" "$dir/cache/vmlinuz"
        created_entries "$dir/record3"
    )
    check_eq "fetch_file records its directory, temporary file and destination" \
        "$dir/cache"$'\n'"$dir/cache/.vmlinuz.part.X"$'\n'"$dir/cache/vmlinuz" \
        "$(printf '%s\n' "$list" | sed -E 's/\.part\.[A-Za-z0-9]{6}$/.part.X/')"
    list=$(cd "$dir" && export CONVIRT_CREATED="$dir/record4" && quiet create_disk VBD rel.img 8 && created_entries "$dir/record4")
    check_eq "relative paths are recorded absolute" "$dir/rel.img" "$list"
    (
        unset CONVIRT_CREATED
        quiet create_disk VBD "$dir/unrecorded.img" 8
    )
    check "nothing is recorded without CONVIRT_CREATED" test ! -e "$dir/record5"
    check_eq "entries are NUL-terminated" 3 "$(tr -cd '\0' < "$dir/record" | wc -c)"
}

###########################################################################
# provision_disks (per-disk keys)
###########################################################################

# The <dev>_* keys are read by provision_disks through ${!name}.
# shellcheck disable=SC2034
test_provision_disks() {
    local dir="$TMP/pdisks" out
    mkdir -p "$dir/tree/etc"
    printf 'from-content\n' > "$dir/tree/etc/hostname"
    tar -czf "$dir/root.tgz" -C "$dir/tree" .
    out=$(
        cd "$dir" || exit 1
        export CONVIRT_CREATED="$dir/created"
        disk="['tap:aio:$dir/d/root.img,xvda,w', 'file:$dir/d/swap.img,ioemu:xvdb,w', 'format=raw, vdev=xvdc, access=rw, target=$dir/d/data disk.img', 'phy:/dev/cdrom,hdc:cdrom,r', 'file:$dir/d/ro.img,xvdd,r', 'file:$dir/d/nocreate.img,xvde,w', 'format=qcow2,vdev=xvdf,target=$dir/d/q.qcow2']"
        xvda_disk_create='yes' xvda_disk_size=32 xvda_disk_fs_type='ext4'
        xvda_image_src="$dir/root.tgz" xvda_image_src_type='disk_content' xvda_image_src_format='tar_gzip'
        xvdb_disk_create='yes' xvdb_disk_size=16 xvdb_disk_type='VBD' xvdb_disk_fs_type='swap'
        xvdc_disk_create='yes' xvdc_disk_size=8
        xvdd_disk_create='yes' xvdd_disk_size=8
        xvdf_disk_create='YES' xvdf_disk_size=8
        quiet provision_disks || exit 1
        created_entries "$dir/created"
    )
    check "provision_disks succeeds" test -n "$out"
    check_eq "disk_content: content in the new file system" from-content "$(debugfs_cat "$dir/d/root.img" /etc/hostname)"
    check_eq "swap disk made (ioemu: stripped)" SWAPSPACE2 "$(dd if="$dir/d/swap.img" bs=1 skip=4086 count=10 2> /dev/null)"
    check_eq "xl target= form with spaces created" 8388608 "$(apparent_size "$dir/d/data disk.img" 2> /dev/null)"
    check "xl format=qcow2 makes a qcow2 image" grep -q '"format": "qcow2"' <<< "$(qemu-img info --output=json "$dir/d/q.qcow2" 2> /dev/null)"
    check "read-only disk never created" test ! -e "$dir/d/ro.img"
    check "disk without _disk_create left alone" test ! -e "$dir/d/nocreate.img"
    check_eq "every created path recorded" \
        "$dir/d"$'\n'"$dir/d/root.img"$'\n'"$dir/d/swap.img"$'\n'"$dir/d/data disk.img"$'\n'"$dir/d/q.qcow2" "$out"

    if (
        disk="['file:$dir/d2/x.img,xvda,w']"
        xvda_disk_create='yes'
        quiet provision_disks
    ); then
        fail "a disk to create without a size is an error"
    else
        pass "a disk to create without a size is an error"
    fi
    if (
        disk="['file:$dir/d2/y.img,xvda,w']"
        xvda_image_src="$dir/root.tgz" xvda_image_src_type='bogus'
        quiet provision_disks
    ); then
        fail "an unknown image_src_type is an error"
    else
        pass "an unknown image_src_type is an error"
    fi
    printf 'old\n' > "$dir/old.img"
    if (
        disk="['file:$dir/old.img,xvda,w']"
        xvda_disk_size=8 xvda_image_src="$dir/root.tgz" xvda_image_src_type='disk_content' xvda_image_src_format='tar_gzip'
        quiet provision_disks
    ); then
        fail "disk_content refuses an existing disk file"
    else
        pass "disk_content refuses an existing disk file"
    fi
    check_eq "existing disk file unchanged" old "$(cat "$dir/old.img")"
    if (disk="'not a list'" && quiet provision_disks); then
        fail "a disk value that is not a list is an error"
    else
        pass "a disk value that is not a list is an error"
    fi
    check "no disk key: nothing to do" bash -c "source '$STORE/common/functions'; unset disk; provision_disks >/dev/null"
}

###########################################################################
# run_custom_scripts
###########################################################################

# add_script DIR NAME BODY: an executable script that appends NAME to
# $ORDER_FILE, then runs BODY.
add_script() {
    mkdir -p "$1"
    # shellcheck disable=SC2016 # expanded by the script when it runs
    printf '#!/bin/bash\nprintf "%%s\\n" "%s" >> "$ORDER_FILE"\n%s\n' "$2" "${3:-}" > "$1/$2"
    chmod +x "$1/$2"
}

test_run_custom_scripts() {
    local dir="$TMP/custom"
    local st="$dir/store" img="$dir/store/Img"
    add_script "$img/custom_scripts/d1" S20b
    add_script "$img/custom_scripts/d1" S10a 'echo "hello-from-S10a"'
    add_script "$img/custom_scripts/d1" S10Z
    local skip
    for skip in 'S10a~' .S05hidden S15x.bak '#S16#' S17.swp S18.orig; do
        add_script "$img/custom_scripts/d1" "$skip"
    done
    printf 'not executable\n' > "$img/custom_scripts/d1/README"
    mkdir -p "$img/custom_scripts/d1/subdir"
    add_script "$st/custom_scripts/d1" S01store
    # shellcheck disable=SC2016 # expanded by the script when it runs
    add_script "$st/custom_scripts/d2" S10c \
        'printf "%s|%s|%s|%s|%s\n" "$VM_NAME" "$IMAGE_CONF" "$VM_CONF" "${GUEST_ROOT:-unset}" "$log_file" > "$ORDER_FILE.env"'
    add_script "$st/custom_scripts/d3" S10ok
    add_script "$st/custom_scripts/d3" S20fail 'exit 7'
    add_script "$st/custom_scripts/d3" S30never

    export ORDER_FILE="$dir/order"
    (
        store="$st" image_root="$img" image_conf="$dir/i.conf" vm_config="$dir/v.conf"
        log_file="$dir/log" VM_NAME=vm1 GUEST_ROOT="$dir/guest"
        custom_list="['d1', 'd2']"
        quiet run_custom_scripts
    )
    check_eq "run_custom_scripts: order, image dir first, skips" $'S10Z\nS10a\nS20b\nS10c' "$(cat "$ORDER_FILE" 2> /dev/null)"
    check_eq "scripts get VM_NAME, IMAGE_CONF, VM_CONF, GUEST_ROOT, log_file" \
        "vm1|$dir/i.conf|$dir/v.conf|$dir/guest|$dir/log" "$(cat "$ORDER_FILE.env" 2> /dev/null)"
    check_contains "script output goes to the log" "$dir/log" hello-from-S10a
    check_eq "script output is logged once" 1 "$(grep -c hello-from-S10a "$dir/log")"
    check_contains "non-executable file is logged as skipped" "$dir/log" "README: not executable"

    rm -f "$ORDER_FILE"
    if (
        store="$st" image_root="$img" log_file="$dir/log2"
        custom_list="['d1', 'missing']"
        quiet run_custom_scripts
    ); then
        fail "a missing customization directory is an error"
    else
        pass "a missing customization directory is an error"
    fi
    check "nothing runs when a directory is missing" test ! -e "$ORDER_FILE"
    check_contains "the missing name is reported" "$dir/log2" "'missing' not found"

    if (
        store="$st" image_root="$img" log_file="$dir/log3"
        custom_list="['d3', 'd2']"
        quiet run_custom_scripts
    ); then
        fail "a failing script stops run_custom_scripts"
    else
        pass "a failing script stops run_custom_scripts"
    fi
    check_eq "scripts after the failure do not run" $'S10ok\nS20fail' "$(cat "$ORDER_FILE" 2> /dev/null)"
    check_contains "failure names the script and its status" "$dir/log3" "d3/S20fail failed with exit status 7"

    check "empty custom_list: nothing to do" bash -c "source '$STORE/common/functions'; custom_list='[]'; run_custom_scripts >/dev/null"
    check "unset custom_list: nothing to do" bash -c "source '$STORE/common/functions'; unset custom_list; run_custom_scripts >/dev/null"
    if (custom_list="['../etc']" store="$st" && quiet run_custom_scripts); then
        fail "a custom_list entry with / is an error"
    else
        pass "a custom_list entry with / is an error"
    fi

    # `# convirt: in-shell`: the script runs in a subshell of this shell (its
    # `$$` is this shell's), with the same environment, no positional
    # parameters, and its status counts; an unmarked one is its own program.
    rm -f "$ORDER_FILE"
    # shellcheck disable=SC2016 # expanded by the script when it runs
    add_script "$st/custom_scripts/d4" S10in '# convirt: in-shell
printf "%s|%s|%s|%s|%s|%s\n" "$VM_NAME" "$IMAGE_CONF" "${GUEST_ROOT:-unset}" "$#" "$$" "$(declare -F _cv_assign)" > "$ORDER_FILE.in"'
    # shellcheck disable=SC2016
    add_script "$st/custom_scripts/d4" S20out 'printf "%s\n" "$$" > "$ORDER_FILE.out"'
    # shellcheck disable=SC2016
    add_script "$st/custom_scripts/d5" S10infail '# convirt: in-shell
exit 9'
    add_script "$st/custom_scripts/d5" S20never
    (
        store="$st" image_root="$img" image_conf="$dir/i.conf" vm_config="$dir/v.conf"
        log_file="$dir/log4" VM_NAME=vm2 GUEST_ROOT="$dir/guest"
        custom_list="['d4']"
        quiet run_custom_scripts a b
        printf '%s\n' "$$" > "$ORDER_FILE.me"
    )
    check_eq "an in-shell script gets the environment, no arguments, the functions, this shell's $$" \
        "vm2|$dir/i.conf|$dir/guest|0|$(cat "$ORDER_FILE.me")|_cv_assign" "$(cat "$ORDER_FILE.in" 2> /dev/null)"
    check "an unmarked script is its own program" test "$(cat "$ORDER_FILE.out")" != "$(cat "$ORDER_FILE.me")"
    rm -f "$ORDER_FILE"
    if (
        store="$st" image_root="$img" log_file="$dir/log5"
        custom_list="['d5']"
        quiet run_custom_scripts
    ); then
        fail "a failing in-shell script stops run_custom_scripts"
    else
        pass "a failing in-shell script stops run_custom_scripts"
    fi
    check_eq "nothing after a failing in-shell script" S10infail "$(cat "$ORDER_FILE" 2> /dev/null)"
    check_contains "its status is reported" "$dir/log5" "d5/S10infail failed with exit status 9"
    unset ORDER_FILE
}

###########################################################################
# Customization scripts of the store
###########################################################################

test_store_custom_scripts() {
    local dir="$TMP/storecs" guest
    guest="$dir/guest"
    mkdir -p "$guest/etc"
    printf 'root:*:19000:0:99999:7:::\nbin:*:19000:0:99999:7:::\n' > "$guest/etc/shadow"
    chmod 0640 "$guest/etc/shadow"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\told-name\n' > "$guest/etc/hosts"
    printf "root_password_hash = '\$6\$rounds=5000\$salt\$h/a.sh\$(x)'\n" > "$dir/image.conf"
    local -a env=(CONVIRT_COMMON_DIR="$STORE/common" log_file="$dir/log" IMAGE_CONF="$dir/image.conf" VM_NAME=web_1.example.org GUEST_ROOT="$guest")
    check "hostname script runs" quiet env "${env[@]}" "$STORE/custom_scripts/hostname/S10hostname"
    check_eq "guest /etc/hostname" web-1 "$(cat "$guest/etc/hostname" 2> /dev/null)"
    check_eq "guest /etc/hosts 127.0.1.1 entry replaced" \
        $'127.0.0.1\tlocalhost\n127.0.1.1\tweb-1.example.org web-1' "$(cat "$guest/etc/hosts")"
    check "root_password script runs" quiet env "${env[@]}" "$STORE/custom_scripts/root_password/S10root_password"
    # shellcheck disable=SC2016 # a literal crypt hash
    check_eq "root hash set verbatim" '$6$rounds=5000$salt$h/a.sh$(x)' "$(awk -F: '$1 == "root" { print $2 }' "$guest/etc/shadow")"
    check_eq "other shadow entries kept" 'bin:*:19000:0:99999:7:::' "$(sed -n 2p "$guest/etc/shadow")"
    check_eq "shadow mode kept" 640 "$(stat -c %a "$guest/etc/shadow")"
    check "without GUEST_ROOT the scripts skip" quiet env -u GUEST_ROOT "${env[@]:0:4}" "$STORE/custom_scripts/hostname/S10hostname"
    check_contains "skip is logged" "$dir/log" "GUEST_ROOT unset"
    printf 'hacked\n' > "$dir/host-file"
    if quiet env "${env[@]:0:4}" GUEST_ROOT=/ "$STORE/custom_scripts/hostname/S10hostname"; then
        fail "hostname refuses GUEST_ROOT=/"
    else
        pass "hostname refuses GUEST_ROOT=/"
    fi
    printf "root_password_hash = 'bad:hash'\n" > "$dir/bad.conf"
    if quiet env "${env[@]}" IMAGE_CONF="$dir/bad.conf" "$STORE/custom_scripts/root_password/S10root_password"; then
        fail "root_password rejects a hash with ':'"
    else
        pass "root_password rejects a hash with ':'"
    fi
}

###########################################################################
# Guest tree helpers, the guest customization scripts, common/guest
###########################################################################

# The bash -c snippets get their values as "$1" on purpose.
# shellcheck disable=SC2016
test_guest_helpers() {
    local dir="$TMP/guest" g img out
    g="$dir/root"
    mkdir -p "$g/etc/ssh" "$g/root" "$dir/outside"
    ln -s "$dir/outside" "$g/evil"
    printf 'root:*:19000:0:99999:7:::\n' > "$g/etc/shadow"
    chmod 0640 "$g/etc/shadow"
    check "guest_path refuses a link out of the tree" bash -c '! (GUEST_ROOT="$1" guest_path evil/x) 2>/dev/null' _ "$g"
    check "guest_path refuses .." bash -c '! (GUEST_ROOT="$1" guest_path etc/../../x) 2>/dev/null' _ "$g"
    check "guest_root refuses /" bash -c '! (GUEST_ROOT=/ guest_root) 2>/dev/null' _
    (GUEST_ROOT=$g && printf 'x\n' | guest_write_file etc/new/file 0600) > /dev/null
    check_eq "guest_write_file writes with its mode and makes parents" "600 x" "$(stat -c %a "$g/etc/new/file") $(cat "$g/etc/new/file")"
    (GUEST_ROOT=$g && printf 'y\n' | guest_write_file etc/shadow keep) > /dev/null
    check_eq "guest_write_file keep keeps the mode" 640 "$(stat -c %a "$g/etc/shadow")"
    check "guest_write_file leaves no temporary file" bash -c '! ls "$1"/etc/*.convirt.* 2>/dev/null' _ "$g"

    local -a env=(CONVIRT_COMMON_DIR="$STORE/common" log_file="$dir/log" GUEST_ROOT="$g" VM_NAME=vm1)
    printf 'root:*:19000:0:99999:7:::\n' > "$g/etc/shadow"
    printf "root_password_hash = 'hunter2'\n" > "$dir/clear.conf"
    if quiet env "${env[@]}" IMAGE_CONF="$dir/clear.conf" "$STORE/custom_scripts/root_password/S10root_password"; then
        fail "root_password refuses a clear-text password"
    else
        pass "root_password refuses a clear-text password"
        check_contains "with a hint to hash it" "$TMP/last.out" "openssl passwd -6"
    fi
    check_eq "shadow untouched after the refusal" 'root:*:19000:0:99999:7:::' "$(cat "$g/etc/shadow")"

    ssh-keygen -q -t ed25519 -N '' -C k1 -f "$dir/k1" && ssh-keygen -q -t ed25519 -N '' -C k2 -f "$dir/k2"
    printf "ssh_authorized_keys = '%s\\\\n%s'\n" "$(cat "$dir/k1.pub")" "$(cat "$dir/k2.pub")" > "$dir/keys.conf"
    check "ssh_authorized_keys script runs" quiet env "${env[@]}" IMAGE_CONF="$dir/keys.conf" "$STORE/custom_scripts/ssh_authorized_keys/S10ssh_authorized_keys"
    check_eq "both keys installed" "$(cat "$dir/k1.pub" "$dir/k2.pub")" "$(cat "$g/root/.ssh/authorized_keys" 2> /dev/null)"
    check_eq "authorized_keys modes" "700 600" "$(stat -c %a "$g/root/.ssh") $(stat -c %a "$g/root/.ssh/authorized_keys")"
    printf "ssh_authorized_keys = '%s'\n" "$(head -1 "$dir/k1")" > "$dir/priv.conf"
    if quiet env "${env[@]}" IMAGE_CONF="$dir/priv.conf" "$STORE/custom_scripts/ssh_authorized_keys/S10ssh_authorized_keys"; then
        fail "ssh_authorized_keys refuses a private key"
    else
        pass "ssh_authorized_keys refuses a private key"
    fi

    check "serial_console script runs" quiet env "${env[@]}" "$STORE/custom_scripts/serial_console/S10serial_console"
    check_eq "getty on ttyS0 and hvc0" "/lib/systemd/system/serial-getty@.service /lib/systemd/system/serial-getty@.service" \
        "$(readlink "$g/etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service") $(readlink "$g/etc/systemd/system/getty.target.wants/serial-getty@hvc0.service")"
    check "dhcp_network script runs" quiet env "${env[@]}" "$STORE/custom_scripts/dhcp_network/S10dhcp_network"
    check_contains "eth0 by DHCP" "$g/etc/network/interfaces.d/eth0" "iface eth0 inet dhcp"
    check "fstab script runs" quiet env "${env[@]}" "$STORE/custom_scripts/fstab/S10fstab"
    check_contains "fstab root by label" "$g/etc/fstab" $'LABEL=root\t/\text4'
    touch "$g/etc/ssh/ssh_host_ed25519_key"
    check "machine_identity script runs" quiet env "${env[@]}" "$STORE/custom_scripts/machine_identity/S10machine_identity"
    local id1 key1
    id1=$(cat "$g/etc/machine-id")
    key1=$(cat "$g/etc/ssh/ssh_host_ed25519_key.pub")
    check "machine-id is 32 hex digits" bash -c '[[ "$1" =~ ^[0-9a-f]{32}$ ]]' _ "$id1"
    quiet env "${env[@]}" "$STORE/custom_scripts/machine_identity/S10machine_identity"
    check "machine-id and host key fresh on each run" test "$id1" != "$(cat "$g/etc/machine-id")" -a "$key1" != "$(cat "$g/etc/ssh/ssh_host_ed25519_key.pub")"
    check "without ssh_rsa_host_key the RSA key is made at provisioning" test -s "$g/etc/ssh/ssh_host_rsa_key.pub"
    check "and no first-boot unit" test ! -e "$g/etc/systemd/system/convirt-ssh-host-keys.service"
    printf "ssh_rsa_host_key = 'first-boot'\n" > "$dir/rsa.conf"
    check "machine_identity with ssh_rsa_host_key = 'first-boot'" quiet env "${env[@]}" IMAGE_CONF="$dir/rsa.conf" "$STORE/custom_scripts/machine_identity/S10machine_identity"
    check_eq "first-boot: ECDSA and Ed25519 keys, no RSA key" "ssh_host_ecdsa_key ssh_host_ecdsa_key.pub ssh_host_ed25519_key ssh_host_ed25519_key.pub" \
        "$(cd "$g/etc/ssh" && echo ssh_host_*)"
    check_contains "first-boot: the unit makes the missing keys before sshd" "$g/etc/systemd/system/convirt-ssh-host-keys.service" "ConditionPathExists=!/etc/ssh/ssh_host_rsa_key"
    check_eq "first-boot: the unit is enabled" /etc/systemd/system/convirt-ssh-host-keys.service \
        "$(readlink "$g/etc/systemd/system/multi-user.target.wants/convirt-ssh-host-keys.service")"
    printf "ssh_rsa_host_key = 'later'\n" > "$dir/rsa-bad.conf"
    if quiet env "${env[@]}" IMAGE_CONF="$dir/rsa-bad.conf" "$STORE/custom_scripts/machine_identity/S10machine_identity"; then
        fail "machine_identity refuses an unknown ssh_rsa_host_key"
    else
        pass "machine_identity refuses an unknown ssh_rsa_host_key"
        check_contains "naming the two values" "$dir/log" "it must be 'provision' or 'first-boot'"
    fi

    # common/guest: the package list and the cache key.
    # shellcheck source=../../image_store/common/guest
    source "$STORE/common/guest"
    out=$(DEBIAN_PACKAGES="['zsh', 'bash']" extra_packages='curl, bash' guest_packages | tr '\n' ' ')
    check_eq "guest_packages: sorted, unique, list or string" "bash curl zsh " "$out"
    check "guest_packages refuses a bad name" bash -c '! (DEBIAN_PACKAGES="[\x27a;b\x27]" guest_packages) >/dev/null 2>&1'
    check_eq "cache key changes with the packages" 1 "$(
        a=$(DEBIAN_PACKAGES="['bash']" guest_cache_key http://m)
        b=$(DEBIAN_PACKAGES="['bash', 'zsh']" guest_cache_key http://m)
        [[ "$a" =~ ^[0-9a-f]{16}$ && "$a" != "$b" ]] && echo 1
    )"
    check_eq "cache key changes with the mirror" 1 "$(
        [[ "$(guest_cache_key http://m1)" != "$(guest_cache_key http://m2)" ]] && echo 1
    )"
    check "DEBIAN_MIRROR must be a URL" bash -c '! (DEBIAN_MIRROR="a b" guest_mirror) >/dev/null 2>&1'

    # The write-back: what the scripts changed in a staged tree lands in an
    # ext4 image made from the pristine tree, without mounting.
    mkdir -p "$dir/p/etc/keep" "$dir/p/etc/gone.d"
    printf 'old\n' > "$dir/p/etc/hostname"
    printf 'same\n' > "$dir/p/etc/keep/same"
    printf 'bye\n' > "$dir/p/etc/gone"
    printf 'bye\n' > "$dir/p/etc/gone.d/f"
    printf 'mode\n' > "$dir/p/etc/mode"
    cp -a "$dir/p" "$dir/s"
    printf 'new\n' > "$dir/s/etc/hostname"
    rm -r "$dir/s/etc/gone" "$dir/s/etc/gone.d"
    chmod 0600 "$dir/s/etc/mode"
    mkdir -p "$dir/s/root/.ssh"
    printf 'key\n' > "$dir/s/root/.ssh/authorized_keys"
    ln -s /lib/x "$dir/s/etc/link"
    # The disk also holds files outside the staged part (usr/).
    cp -a "$dir/p" "$dir/full"
    mkdir -p "$dir/full/usr/local/bin"
    printf 'base\n' > "$dir/full/usr/local/bin/tool"
    (cd "$dir/full" && find . -mindepth 1 -printf '%y %P\n') > "$dir/paths.list"
    mkdir -p "$dir/s/usr/local/bin/new.d"
    printf 'mine\n' > "$dir/s/usr/local/bin/tool"
    img="$dir/disk.img"
    mkfs.ext4 -q -F -O metadata_csum_seed -d "$dir/full" "$img" 8M > /dev/null
    _guest_debugfs_script "$dir/p" "$dir/s" "$dir/paths.list" > "$dir/cmds" 2> /dev/null
    check "debugfs script has no line for an unchanged file" bash -c '! grep -q keep/same "$1"' _ "$dir/cmds"
    check "debugfs script applies" quiet _guest_apply "$img" "$dir/cmds"
    check_eq "changed file written" new "$(debugfs_cat "$img" /etc/hostname)"
    check_eq "new file in a new directory written" key "$(debugfs_cat "$img" /root/.ssh/authorized_keys)"
    check_eq "unchanged file kept" same "$(debugfs_cat "$img" /etc/keep/same)"
    check_eq "a file outside the staged part replaced" mine "$(debugfs_cat "$img" /usr/local/bin/tool)"
    check "a new directory beside existing ones made" bash -c 'debugfs -R "stat /usr/local/bin/new.d" "$1" 2>/dev/null | grep -q "Type: directory"' _ "$img"
    check "removed file and directory removed" bash -c '! debugfs -R "stat /etc/gone" "$1" 2>&1 | grep -q Inode; ! debugfs -R "stat /etc/gone.d" "$1" 2>&1 | grep -q Inode' _ "$img"
    check "mode change written" bash -c 'debugfs -R "stat /etc/mode" "$1" 2>/dev/null | grep -q "Mode:  0600"' _ "$img"
    check "symbolic link written" bash -c 'debugfs -R "stat /etc/link" "$1" 2>/dev/null | grep -q "Fast link dest: \"/lib/x\""' _ "$img"
    check "file system still clean" quiet e2fsck -fn "$img"
    printf 'rm /no/such/file\n' > "$dir/bad.cmds"
    check "a failing debugfs command is an error" bash -c '! _guest_apply "$1" "$2" >/dev/null 2>&1' _ "$img" "$dir/bad.cmds"
}

###########################################################################
# common/guest's cache: one build under a lock, damaged entries, REFRESH
###########################################################################

# The real bootstrap (mmdebstrap from a mirror, a minute or more) is proved by
# tests/e2e/boot.rs. Here a stand-in `mmdebstrap` on PATH writes a small but
# real tar of a tree with a kernel, an initrd, /etc and /root, and counts its
# runs, so the cache logic (locking, completeness, REFRESH, failure) is
# tested in seconds. Everything else (tar, mkfs.ext4 -d, flock) is real.
# shellcheck disable=SC2016
test_guest_cache() {
    local dir="$TMP/gcache" fake e1 e2
    fake="$dir/bin"
    mkdir -p "$fake"
    cat > "$fake/mmdebstrap" << 'FAKE'
#!/bin/bash
# Stand-in for mmdebstrap: SUITE TARGET MIRROR are the last three arguments.
set -eu
out=${@: -2:1}
printf '%s\n' "$*" >> "$FAKE_RUNS"
[[ -z "${FAKE_FAIL:-}" ]] || { echo "E: mirror unreachable" >&2; exit 1; }
t=$(mktemp -d)
mkdir -p "$t/boot" "$t/etc/ssh" "$t/root" "$t/usr/bin"
echo kernel > "$t/boot/vmlinuz-6.1.0-1-cloud-amd64"
echo initrd > "$t/boot/initrd.img-6.1.0-1-cloud-amd64"
echo base > "$t/etc/hostname"
echo 'root:*:19000:0:99999:7:::' > "$t/etc/shadow"
echo tool > "$t/usr/bin/tool"
sleep 1
tar -C "$t" -cf "$out" .
rm -rf "$t"
FAKE
    chmod +x "$fake/mmdebstrap"
    local -a genv=(PATH="$fake:$PATH" FAKE_RUNS="$dir/runs" VM_CACHE_DIR="$dir/cache" log_file="$dir/log"
        DEBIAN_PACKAGES="['linux-image-cloud-amd64']")
    local body='source "$1/functions"; source "$1/guest"; guest_ensure_cache http://m k1 && printf "%s\n" "$guest_entry" > "$2"'
    env "${genv[@]}" bash -c "$body" _ "$STORE/common" "$dir/e1" > "$dir/out1" 2>&1 &
    env "${genv[@]}" bash -c "$body" _ "$STORE/common" "$dir/e2" > "$dir/out2" 2>&1 &
    wait
    e1=$(cat "$dir/e1" 2> /dev/null)
    e2=$(cat "$dir/e2" 2> /dev/null)
    check_eq "two concurrent provisionings: one bootstrap" 1 "$(grep -c '' "$dir/runs" 2> /dev/null)"
    check_eq "both use the same entry" "$dir/cache/guests/debian-k1 $dir/cache/guests/debian-k1" "$e1 $e2"
    check "the second waited for the first" grep -q "waiting for it" "$dir/out1" "$dir/out2"
    check "the entry is complete" test -f "$e1/complete" -a -f "$e1/vmlinuz" -a -f "$e1/overlay.tar" -a -f "$e1/paths.list"
    check_contains "paths.list knows the base's files" "$e1/paths.list" "f usr/bin/tool"

    env "${genv[@]}" bash -c "$body" _ "$STORE/common" "$dir/e3" > /dev/null 2>&1
    check_eq "a warm entry is reused" 1 "$(grep -c '' "$dir/runs")"
    printf 'x' >> "$e1/overlay.tar"
    env "${genv[@]}" bash -c "$body" _ "$STORE/common" "$dir/e3" > "$dir/out3" 2>&1
    check_eq "a damaged entry is rebuilt, never used" 2 "$(grep -c '' "$dir/runs")"
    check_contains "and the log says so" "$dir/out3" "incomplete or damaged"
    env "${genv[@]}" REFRESH=1 bash -c "$body" _ "$STORE/common" "$dir/e3" > "$dir/out6" 2>&1 &
    env "${genv[@]}" REFRESH=1 bash -c "$body" _ "$STORE/common" "$dir/e4" > "$dir/out7" 2>&1 &
    wait
    check_eq "REFRESH=1 rebuilds, once for two concurrent provisionings" 3 "$(grep -c '' "$dir/runs")"
    local manifest
    manifest=$(cat "$e1/complete")
    if env "${genv[@]}" REFRESH=1 FAKE_FAIL=1 bash -c "$body" _ "$STORE/common" "$dir/e3" > "$dir/out4" 2>&1; then
        fail "a failed bootstrap is an error"
    else
        pass "a failed bootstrap is an error"
    fi
    check_contains "naming the step" "$dir/out4" "step bootstrap"
    check_eq "a failed rebuild leaves the entry as it was" "$manifest" "$(cat "$e1/complete")"
    check "and no half-built directory" bash -c '! ls -d "$1"/.debian-k1.new.* 2>/dev/null' _ "$dir/cache/guests"

    env "${genv[@]}" bash -c 'source "$1/functions"; source "$1/guest"; guest_ensure_cache http://m k1 && guest_base_disk "$guest_entry" 8 && printf "%s\n" "$guest_base" > "$2"' \
        _ "$STORE/common" "$dir/base" > "$dir/out5" 2>&1
    check_eq "the base disk of a size is built once" "$e1/base-8M.img" "$(cat "$dir/base" 2> /dev/null)"
    check_eq "it holds the base tree" tool "$(debugfs_cat "$e1/base-8M.img" /usr/bin/tool)"
    check "with root ownership" bash -c 'debugfs -R "stat /usr/bin/tool" "$1" 2>/dev/null | grep -q "User:     0   Group:     0"' _ "$e1/base-8M.img"

    # Readers of a warm entry share its lock: a VM being made from it (here a
    # process holding the shared lock) does not hold up the next one, but a
    # REFRESH waits for it. The timeout only turns a hang into a failure.
    local lock="$dir/cache/guests/.debian-k1.lock" reader runs i
    rm -f "$dir/ready" "$dir/release"
    flock -s "$lock" bash -c 'touch "$1"; while [[ ! -e "$2" ]]; do sleep 0.1; done' _ "$dir/ready" "$dir/release" &
    reader=$!
    for ((i = 0; i < 100; i++)); do
        [[ -e "$dir/ready" ]] && break
        sleep 0.1
    done
    if env "${genv[@]}" timeout 60 bash -c "$body" _ "$STORE/common" "$dir/e5" > "$dir/out8" 2>&1; then
        pass "warm entry: a second reader does not wait for the first"
    else
        fail "warm entry: a second reader does not wait for the first" "$(tail -n 3 "$dir/out8")"
    fi
    check "and does not say it waits" bash -c '! grep -q "waiting for it" "$1"' _ "$dir/out8"
    runs=$(grep -c '' "$dir/runs")
    env "${genv[@]}" REFRESH=1 timeout 60 bash -c "$body" _ "$STORE/common" "$dir/e6" > "$dir/out9" 2>&1 &
    local refresher=$!
    for ((i = 0; i < 100; i++)); do
        grep -q "waiting for it" "$dir/out9" 2> /dev/null && break
        sleep 0.1
    done
    check_contains "a REFRESH waits while a VM is made from the entry" "$dir/out9" "waiting for it"
    check_eq "and has not rebuilt yet" "$runs" "$(grep -c '' "$dir/runs")"
    touch "$dir/release"
    wait "$reader"
    check "the REFRESH then completes" wait "$refresher"
    check_eq "rebuilding once" $((runs + 1)) "$(grep -c '' "$dir/runs")"
}

###########################################################################
# The disk-entry table shared with convirt's Rust parser
###########################################################################

# test_disk_entry_table: every row of tests/fixtures/disk_entries.txt read by
# _cv_parse_disk (the Rust side reads the same rows in src/disks.rs).
test_disk_entry_table() {
    local line entry want got rows=0 bad=0
    local d_type d_path d_dev d_mode d_cdrom
    local -a cols=()
    while IFS= read -r line; do
        [[ -z "${line//[[:space:]]/}" || "$line" == '#'* ]] && continue
        IFS='|' read -r -a cols <<< "$line"
        for i in "${!cols[@]}"; do
            cols[i]=$(_cv_trim "${cols[i]}")
        done
        entry=${cols[0]}
        want="${cols[1]}|${cols[2]}|${cols[3]}|${cols[4]}|${cols[5]}"
        if _cv_parse_disk "$entry" > /dev/null 2>&1; then
            got="$d_type|$d_path|$d_dev|$d_mode|$d_cdrom"
        else
            got="(parse error)"
        fi
        rows=$((rows + 1))
        if [[ "$got" != "$want" ]]; then
            bad=$((bad + 1))
            fail "disk entry table: $entry" "expected $want, got $got"
        fi
    done < "$HERE/../fixtures/disk_entries.txt"
    check "disk entry table has rows" test "$rows" -ge 15
    check_eq "disk entry table: every row as convirt reads it" 0 "$bad"
}

###########################################################################
# The shipped provision.sh scripts, end to end
###########################################################################

# make_workdir IMAGE DIR [CUSTOM...]: the execution environment as convirt
# builds it: DIR/image_store with common/, the image and custom dirs.
make_workdir() {
    local image="$1" work="$2" custom
    shift 2
    mkdir -p "$work/image_store/custom_scripts"
    cp -a "$STORE/common" "$STORE/$image" "$work/image_store/"
    for custom in "$@"; do
        cp -a "$STORE/custom_scripts/$custom" "$work/image_store/custom_scripts/"
    done
}

# write_args FILE VM IMAGE WORK: the -p file.
write_args() {
    {
        printf "VM_NAME='%s'\n" "$2"
        printf "IMAGE_NAME='%s'\n" "$3"
        printf "IMAGE_LOCATION='%s'\n" "$3"
        printf "IMAGE_STORE='%s'\n" "$4/image_store"
        printf "%s\n" "EXTRA_ARG='it'\\''s \$(touch $4/pwned-args)'"
    } > "$1"
}

# run_provision IMAGE WORK VM: run the image's provision.sh like convirt,
# with CONVIRT_CREATED at WORK/created; output in WORK/out.
run_provision() {
    local image="$1" work="$2" vm="$3" rc=0
    (
        cd "$work" || exit 1
        export CONVIRT_CREATED="$work/created" CONVIRT_VM_NAME="$vm"
        "$work/image_store/$image/provision.sh" -x "$work/vm.conf" -p "$work/args" \
            -s "$work/image_store" -i "$image" -l "$work/$image.log" -c "$work/image.conf"
    ) > "$work/out" 2>&1 || rc=$?
    if ((VERBOSE)); then
        sed 's/^/       | /' "$work/out"
    fi
    return "$rc"
}

# with_guest_root DIR CMD...: run CMD with GUEST_ROOT=DIR exported.
with_guest_root() {
    local root="$1"
    shift
    (
        export GUEST_ROOT="$root"
        "$@"
    )
}

test_e2e_hvm() {
    local image="$1" work="$TMP/e2e-$1" disks
    disks="$work/vm disks"
    make_workdir "$image" "$work"
    cat > "$work/image.conf" << EOF
# instantiated image.conf
INSTALL_ISO = '$work/iso/install.iso'
hda_disk_create = 'yes'
hda_disk_type = 'VBD'
hda_disk_size = 64
customizable_options = ['INSTALL_ISO', 'hda_disk_size', 'hda_disk_type', 'hda_disk_create']
EOF
    cat > "$work/vm.conf" << EOF
arch = 'x86_64'
arch_libdir = 'lib64'
name = 'vm1'
builder = 'hvm'
kernel = '/usr/lib/xen/boot/hvmloader'
device_model = '/usr/lib64/xen/bin/qemu-dm'
memory = 1024
disk = ['file:$disks/vm1.disk.xm,hda,w', 'file:$work/iso/install.iso,hdc:cdrom,r']
vif = ['mac=00:16:3e:12:34:56,bridge=xenbr0']
boot = 'cd'
vnc = 1
usb = 1
usbdevice = 'tablet'
extra = '\$(touch $work/pwned-vm); \`touch $work/pwned-tick\`'
log_file = '$work/evil.log'
store = '/nonexistent'
image_conf = '$work/image.conf'
image_name = '$image'
provision_timeout = 300
EOF
    write_args "$work/args" vm1 "$image" "$work"
    check "$image: provision.sh succeeds" run_provision "$image" "$work" vm1
    check_eq "$image: disk created with the image.conf size" 67108864 "$(apparent_size "$disks/vm1.disk.xm" 2> /dev/null)"
    check "$image: disk is sparse" test "$(used_kb "$disks/vm1.disk.xm" 2> /dev/null || echo 99999)" -lt 1024
    check_eq "$image: CONVIRT_CREATED lists the disk dir and the disk" \
        "$disks"$'\n'"$disks/vm1.disk.xm" "$(created_entries "$work/created")"
    check "$image: cdrom never created" test ! -e "$work/iso/install.iso"
    check_contains "$image: missing ISO is warned about" "$work/$image.log" "install.iso does not exist"
    check_contains "$image: log says completed" "$work/$image.log" "Provisioning of VM vm1 completed"
    check "$image: no value was executed" test -z "$(find "$work" -name 'pwned*')"
    check "$image: a config key cannot redirect the log" test ! -e "$work/evil.log"
    check "$image: a key equal to a fixed variable is not warned about" bash -c "! grep -q \"'image_conf' is a special\" '$work/$image.log'"
    check_contains "$image: a key that would change a fixed variable is" "$work/$image.log" "'store' is a special"

    # Again: the disk exists now, so provisioning must fail and keep it.
    printf 'precious' | dd of="$disks/vm1.disk.xm" conv=notrunc status=none
    cp "$disks/vm1.disk.xm" "$work/disk.copy"
    rm -f "$work/created"
    if run_provision "$image" "$work" vm1; then
        fail "$image: provisioning over an existing disk fails"
    else
        pass "$image: provisioning over an existing disk fails"
    fi
    check "$image: existing disk unchanged" cmp -s "$disks/vm1.disk.xm" "$work/disk.copy"
    check_contains "$image: error mentions --force" "$work/out" "--force"
    check_eq "$image: nothing recorded by the failed run" "" "$(created_entries "$work/created")"
}

test_e2e_fedora() {
    local image=Fedora_Core_Install work="$TMP/e2e-fedora" cache guest
    cache="$work/cache/kernels/$image/Fedora_test"
    guest="$work/guest"
    make_workdir "$image" "$work" hostname root_password
    mkdir -p "$work/mirror" "$guest/etc"
    printf 'vmlinuz bytes\n' > "$work/mirror/vmlinuz"
    printf 'initrd bytes\n' > "$work/mirror/initrd.img"
    printf 'root:!:19000:0:99999:7:::\n' > "$guest/etc/shadow"
    cat > "$work/image.conf" << EOF
KERNEL_TYPE = 'Fedora_test'
kernel_src = '$work/mirror/vmlinuz'
ramdisk_src = 'file://$work/mirror/initrd.img'
INSTALL_REPO = 'https://example.org/fedora/os/'
KICKSTART = ''
http_proxy = ''
xvda_disk_create = 'yes'
xvda_disk_type = 'VBD'
xvda_disk_size = 64
custom_list = ['hostname', 'root_password']
root_password_hash = '\$1\$9qAFryp3\$XmvqcFN/CJG4AC7jgyVE8'
EOF
    cat > "$work/vm.conf" << EOF
name = 'fed1'
memory = 2048
kernel = '$cache/vmlinuz'
ramdisk = '$cache/initrd.img'
extra = 'inst.repo=https://example.org/fedora/os/ '
disk = ['file:$work/disks/fed1.disk.xm,xvda,w']
vif = ['mac=00:16:3e:12:34:57,bridge=xenbr0']
vfb = ['vnc=1,vncunused=1']
on_reboot = 'destroy'
next_bootloader = 'pygrub'
provision_timeout = 600
EOF
    write_args "$work/args" fed1 "$image" "$work"
    check "Fedora: provision.sh succeeds" with_guest_root "$guest" run_provision "$image" "$work" fed1
    check "Fedora: kernel fetched from a local path" cmp -s "$work/mirror/vmlinuz" "$cache/vmlinuz"
    check "Fedora: ramdisk fetched from file://" cmp -s "$work/mirror/initrd.img" "$cache/initrd.img"
    check_eq "Fedora: disk created" 67108864 "$(apparent_size "$work/disks/fed1.disk.xm" 2> /dev/null)"
    check_eq "Fedora: CONVIRT_CREATED in creation order" \
        "$work/disks"$'\n'"$work/disks/fed1.disk.xm"$'\n'"$work/cache"$'\n'"$work/cache/kernels"$'\n'"$work/cache/kernels/$image"$'\n'"$cache"$'\n'"$cache/.vmlinuz.part.X"$'\n'"$cache/vmlinuz"$'\n'"$cache/.initrd.img.part.X"$'\n'"$cache/initrd.img" \
        "$(created_entries "$work/created" | sed -E 's/\.part\.[A-Za-z0-9]{6}$/.part.X/')"
    check_eq "Fedora: hostname script set the guest name" fed1 "$(cat "$guest/etc/hostname" 2> /dev/null)"
    # shellcheck disable=SC2016 # a literal crypt hash
    check_eq "Fedora: root_password script set the hash verbatim" '$1$9qAFryp3$XmvqcFN/CJG4AC7jgyVE8' \
        "$(cut -d: -f2 "$guest/etc/shadow")"
    check_contains "Fedora: custom scripts logged" "$work/$image.log" "Running customization script root_password/S10root_password"
    check_eq "Fedora: a custom script's log_msg line is logged once" 1 "$(grep -c 'hostname: wrote' "$work/$image.log")"

    # A second VM: the kernel is cached, no guest tree staged.
    sed -i 's/fed1/fed2/g' "$work/vm.conf"
    write_args "$work/args" fed2 "$image" "$work"
    rm -f "$work/created"
    check "Fedora: second VM succeeds without GUEST_ROOT" run_provision "$image" "$work" fed2
    check_contains "Fedora: cached kernel reused" "$work/out" "already exists; not fetching"
    check_eq "Fedora: second run records only its disk" "$work/disks/fed2.disk.xm" "$(created_entries "$work/created")"
    check_contains "Fedora: custom scripts skip without a guest tree" "$work/$image.log" "hostname: no guest file tree staged"
    check "Fedora: args file was sourced safely" test ! -e "$work/pwned-args"

    # A custom_list directory that does not exist stops provisioning.
    sed -i "s/custom_list = .*/custom_list = ['hostname', 'nonexistent']/" "$work/image.conf"
    sed -i 's/fed2/fed3/g' "$work/vm.conf"
    if run_provision "$image" "$work" fed3; then
        fail "Fedora: a missing customization directory fails provisioning"
    else
        pass "Fedora: a missing customization directory fails provisioning"
    fi
}

test_e2e_example() {
    local image=example work="$TMP/e2e-example"
    make_workdir "$image" "$work"
    cat > "$work/image.conf" << EOF
xvda_disk_create = 'yes'
xvda_disk_type = 'VBD'
xvda_disk_size = 32
xvda_disk_fs_type = 'ext4'
xvdb_disk_create = 'yes'
xvdb_disk_type = 'VBD'
xvdb_disk_size = 16
xvdb_disk_fs_type = 'swap'
kernel_src = ''
ramdisk_src = ''
http_proxy = ''
custom_list = ['sample']
admin_user = 'adm\x27in'
admin_password_hash = ''
EOF
    cat > "$work/vm.conf" << EOF
name = 'ex1'
memory = 512
bootloader = 'pygrub'
disk = ['file:$work/disks/ex1.disk.xm,xvda,w', 'file:$work/disks/ex1.swap.xm,xvdb,w']
vif = ['mac=00:16:3e:12:34:58,bridge=xenbr0']
EOF
    write_args "$work/args" ex1 "$image" "$work"
    check "example: provision.sh succeeds" run_provision "$image" "$work" ex1
    check "example: root disk has a clean ext4" quiet e2fsck -fn "$work/disks/ex1.disk.xm"
    check_eq "example: swap disk" SWAPSPACE2 "$(dd if="$work/disks/ex1.swap.xm" bs=1 skip=4086 count=10 2> /dev/null)"
    check_contains "example: sample script read image.conf" "$work/$image.log" "sample: VM ex1, admin user 'adm'in'"
}

test_shipped_files() {
    local image
    for image in Linux_CD_Install Windows_CD_Install Fedora_Core_Install example; do
        check "$image: provision.sh is executable" test -x "$STORE/$image/provision.sh"
        check "$image: has image.conf, vm_conf.template, description.htm" \
            test -f "$STORE/$image/image.conf" -a -f "$STORE/$image/vm_conf.template" -a -f "$STORE/$image/description.htm"
    done
    check "custom scripts are executable" test -x "$STORE/custom_scripts/hostname/S10hostname" -a \
        -x "$STORE/custom_scripts/root_password/S10root_password" -a -x "$STORE/example/custom_scripts/sample/S10sample"
    check "no image.conf defines VM_DISKS_DIR or VM_CONF_DIR" bash -c "! grep -qE '^(VM_DISKS_DIR|VM_CONF_DIR)[[:space:]]*=' '$STORE'/*/image.conf"
    check "nothing hard-codes /var/cache/convirt" bash -c "! grep -rq '/var/cache/convirt' '$STORE'/*/image.conf '$STORE'/*/vm_conf.template"
}

###########################################################################

test_source_python_config
test_py_list_items
test_create_disk
test_create_disk_lvm
test_make_fs
test_copy_disk_content
test_copy_disk_image
test_fetch_file
test_convirt_created
test_provision_disks
test_run_custom_scripts
test_store_custom_scripts
test_guest_helpers
test_guest_cache
test_disk_entry_table
test_e2e_hvm Linux_CD_Install
test_e2e_hvm Windows_CD_Install
test_e2e_fedora
test_e2e_example
test_shipped_files

printf '%d passed, %d failed\n' "$passed" "$failed"
((failed == 0))
