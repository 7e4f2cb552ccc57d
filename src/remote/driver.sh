#!/bin/bash
# driver.sh: one provisioning on a managed server, for convirt (docs/remote.md).
#
# convirt streams a work tree (this script, plan.sh, inputs/, image_store/) over ssh into
# a private directory WORK and runs `bash WORK/driver.sh WORK`. The steps are the local
# ones (spec §6.1): take the per-VM lock, refuse what exists (unless --force), write the
# inputs beside the log, run provision.sh in its own process group with the timeout,
# install the VM config atomically on success, remove what the run created on failure.
#
# Talking to convirt:
#   stdout  the script's output, also appended to the log (tee)
#   stderr  `CONVIRT:<word> <text>` lines convirt reads; anything else is an error text
#   stdin   a lifeline: a `stop` line stops the script (Ctrl-C on the console); end of
#           file means the connection dropped: stop the script and clean up all the same.
#
# Needs bash, coreutils, tar and util-linux's flock; nothing of convirt.

set -uo pipefail
# The connection may go away: a write to it must fail, not kill this script before the
# clean-up.
trap '' PIPE HUP

w=$1
# Files the run makes get the usual modes; private ones are chmod-ed explicitly.
umask 022
# The lifeline, kept away from everything else this script starts.
exec 3<&0 0< /dev/null

# Set by plan.sh (written by convirt, every value shell-quoted).
VM='' IMAGE='' LOG='' LOG_DIR='' IMAGE_CONF='' VM_CONF='' ARGS='' CONFIG='' WORK_ROOT=''
FORCE=0 KEEP=0 TIMEOUT=0 HOLDER='' SERVER='' START=0 AUTO_LINK=''
DISKS=() TOOLS=()
# shellcheck source=/dev/null
source "$w/plan.sh"

say() { printf 'CONVIRT:%s\n' "$*" >&2; }

# Timestamps in UTC from bash's own printf: no process per log line. The script gets the
# time zone it would have had.
script_tz=${TZ-}
script_tz_set=${TZ+set}
export TZ=UTC

# parent VAR PATH: VAR = the directory of PATH. Builtins only: every process the driver
# starts is paid once per VM.
parent() {
    local p=${2%/*}
    printf -v "$1" '%s' "${p:-/}"
}

# copy_private SRC DST: a new DST (rotating an older one) of mode 0640 with SRC's text.
copy_private() {
    local text=''
    IFS= read -r -d '' text < "$1"
    rotate "$2" || return 1
    umask 027
    printf '%s' "$text" > "$2"
    local rc=$?
    umask 022
    return "$rc"
}

note() {
    printf '[%(%Y-%m-%dT%H:%M:%SZ)T] convirt: %s\n' -1 "$*" >> "$LOG" 2> /dev/null
}

lock=''
finish() {
    local gone=()
    [[ -n "$lock" ]] && gone+=("$lock")
    if ((KEEP)) && [[ "${1:-}" == failed ]]; then
        say "kept $w"
    else
        gone+=("$w")
    fi
    ((${#gone[@]} == 0)) || rm -rf -- "${gone[@]}"
}

# fail MESSAGE [HINT]: stop before anything changed on the server.
fail() {
    say "error $1"
    if [[ -n "${2:-}" ]]; then
        say "hint $2"
    fi
    KEEP=0
    finish
    exit 1
}

# The nearest existing ancestor of a path must be a writable directory.
writable() {
    local d=$1
    while [[ ! -e "$d" && "$d" != / ]]; do
        parent d "$d"
    done
    [[ -d "$d" && -w "$d" ]]
}

# rotate PATH: PATH -> PATH.1, PATH.1 -> PATH.2, ...; never overwrite an old run.
rotate() {
    local p=$1 n=1
    [[ -e "$p" ]] || return 0
    while [[ -e "$p.$n" ]]; do
        n=$((n + 1))
    done
    while ((n > 1)); do
        mv -- "$p.$((n - 1))" "$p.$n" || return 1
        n=$((n - 1))
    done
    mv -- "$p" "$p.1"
}

# --- before anything changes -------------------------------------------------------------

missing=()
for t in "${TOOLS[@]}"; do
    command -v "$t" > /dev/null 2>&1 || missing+=("$t")
done
if ((${#missing[@]})); then
    fail "the server lacks ${missing[*]}, which provisioning \`$VM\` needs" \
        "install it on $SERVER; nothing was changed there"
fi

[[ -d "$WORK_ROOT/locks" ]] || mkdir -p -- "$WORK_ROOT/locks" 2> /dev/null ||
    fail "cannot create \`$WORK_ROOT/locks\` on $SERVER (the server-side work_dir is not writable)"
for _ in 1 2 3; do
    exec 9<> "$WORK_ROOT/locks/$VM.lock" ||
        fail "cannot open the lock \`$WORK_ROOT/locks/$VM.lock\` on $SERVER"
    if ! flock -n 9; then
        holder=''
        IFS= read -r holder < "$WORK_ROOT/locks/$VM.lock"
        fail "VM \`$VM\` is already being provisioned on $SERVER${holder:+ ($holder)}" \
            "wait for it to finish; the lock is \`$WORK_ROOT/locks/$VM.lock\` on $SERVER"
    fi
    # The file locked may have been removed by a finishing holder in the meantime.
    if [[ "$WORK_ROOT/locks/$VM.lock" -ef /dev/fd/9 ]]; then
        lock=$WORK_ROOT/locks/$VM.lock
        break
    fi
    exec 9>&-
done
[[ -n "$lock" ]] || fail "cannot take the lock \`$WORK_ROOT/locks/$VM.lock\` on $SERVER"
printf '%s' "$HOLDER" > "$lock"

# A running domain of that name is refused, even with --force (as locally), where the
# server's `xl list` works; a server without Xen running is not asked twice.
if command -v xl > /dev/null 2>&1 && domains=$(xl list 2> /dev/null < /dev/null 3<&- 9>&-); then
    seen=0
    while read -r name _; do
        if ((seen)) && [[ "$name" == "$VM" ]]; then
            fail "a domain \`$VM\` is running on $SERVER (\`xl list\`)" \
                "stop it first (\`xl shutdown $VM\` there); \`--force\` never replaces a running VM's files"
        fi
        [[ "$name" == Name ]] && seen=1
    done <<< "$domains"
fi
if ! ((FORCE)) && [[ -e "$CONFIG" || -L "$CONFIG" ]]; then
    fail "VM config \`$CONFIG\` already exists on $SERVER" \
        "choose another VM name, or pass \`--force\` to replace the config and the disks the image names"
fi
if [[ -n "$AUTO_LINK" ]] && ! ((FORCE)) && [[ -e "$AUTO_LINK" || -L "$AUTO_LINK" ]]; then
    fail "the auto-start link \`$AUTO_LINK\` already exists on $SERVER" "pass \`--force\` to replace it"
fi
existing=()
for d in "${DISKS[@]}"; do
    if [[ -e "$d" ]]; then
        ((FORCE)) || fail "disk \`$d\` already exists on $SERVER" \
            "pass \`--force\` to replace it (its data will be lost), or choose another VM name"
        existing+=("$d")
    fi
done
conf_dir='' dd=''
parent conf_dir "$CONFIG"
for p in "$LOG_DIR" "$conf_dir"; do
    writable "$p" || fail "\`$p\` is not writable on $SERVER" \
        "fix its permissions or choose another path in the host's settings; nothing was changed there"
done
for d in "${DISKS[@]}"; do
    parent dd "$d"
    writable "$dd" || fail "\`$dd\` is not writable on $SERVER (disk \`$d\`)" \
        "fix its permissions or set VM_DISKS_DIR for this host; nothing was changed there"
done

# --- the run --------------------------------------------------------------------------------

if [[ ! -d "$LOG_DIR" ]]; then
    mkdir -p -- "$LOG_DIR" && chmod 750 -- "$LOG_DIR" 2> /dev/null
fi
if ! { rotate "$LOG" && umask 027 && : > "$LOG" && umask 022; }; then
    fail "cannot create the log \`$LOG\` on $SERVER"
fi
for pair in "image.conf:$IMAGE_CONF" "vm.conf:$VM_CONF" "args:$ARGS"; do
    src=$w/inputs/${pair%%:*} dst=${pair#*:}
    if ! copy_private "$src" "$dst"; then
        fail "cannot write \`$dst\` on $SERVER"
    fi
done
say "started"
note "provisioning VM $VM from image $IMAGE on $SERVER (convirt remote driver)"

for d in "${existing[@]}"; do
    if rm -f -- "$d"; then
        note "--force: removed existing disk $d"
        say "replaced $d"
    fi
done
if ((FORCE)) && [[ -e "$CONFIG" ]]; then
    say "replaced $CONFIG"
fi

: > "$w/created"
mkfifo -- "$w/out"
argv=("$w/image_store/$IMAGE/provision.sh" -x "$VM_CONF" -p "$ARGS" -s "$w/image_store"
    -i "$IMAGE" -l "$LOG" -c "$IMAGE_CONF")
note "running: ${argv[*]}"
# Neither the lifeline (3) nor the lock (9) goes to what the driver starts. tee inherits
# the ignored SIGPIPE: when the connection goes, it keeps writing the log.
tee -a -- "$LOG" < "$w/out" 3<&- 9>&- &
tee_pid=$!
# Job control gives the script its own process group, which a stop signals as a whole.
set -m
(
    trap - PIPE HUP
    if [[ -n "$script_tz_set" ]]; then
        export TZ="$script_tz"
    else
        unset TZ
    fi
    cd -- "$w" || exit 126
    umask 022
    export CONVIRT_CREATED="$w/created" CONVIRT_VM_NAME="$VM" CONVIRT_IMAGE_NAME="$IMAGE" \
        CONVIRT_LOG_FILE="$LOG" CONVIRT_LOG_VIA_STDOUT=1
    exec "${argv[@]}"
) > "$w/out" 2>&1 < /dev/null 3<&- 9>&- &
pid=$!
set +m

stop_group() {
    kill -TERM -- "-$pid" 2> /dev/null
    local i
    for ((i = 0; i < 60; i++)); do
        kill -0 "$pid" 2> /dev/null || break
        sleep 0.05
    done
    kill -KILL -- "-$pid" 2> /dev/null
}

started=$SECONDS
stopped=''
while kill -0 "$pid" 2> /dev/null; do
    if read -r -t 0.02 -u 3 msg; then
        if [[ "$msg" == stop ]]; then
            stopped=interrupted
        fi
    elif (($? <= 128)); then
        stopped=lost
    fi
    if [[ -z "$stopped" ]] && ((TIMEOUT > 0 && SECONDS - started >= TIMEOUT)); then
        stopped=timeout
    fi
    if [[ -n "$stopped" ]]; then
        stop_group
        break
    fi
done
wait "$pid"
status=$?
if [[ -n "$stopped" || $status -ne 0 ]]; then
    # A background process of the script must not outlive a failed run.
    kill -KILL -- "-$pid" 2> /dev/null
fi
for ((i = 0; i < 200; i++)); do
    kill -0 "$tee_pid" 2> /dev/null || break
    sleep 0.01
done
kill "$tee_pid" 2> /dev/null
wait "$tee_pid" 2> /dev/null

case "$stopped" in
    interrupted) outcome="interrupted" text="was interrupted (Ctrl-C) and stopped" ;;
    lost) outcome="lost" text="was stopped: the connection to convirt was lost" ;;
    timeout) outcome="timeout $TIMEOUT" text="timed out after $TIMEOUT s and was stopped" ;;
    *)
        if ((status == 0)); then
            outcome="success" text="succeeded"
        elif ((status > 128)); then
            outcome="signal $((status - 128))" text="was killed by signal $((status - 128))"
        else
            outcome="exit $status" text="exited with status $status"
        fi
        ;;
esac
note "provision.sh $text"
say "outcome $outcome"

# remove_created: what the run recorded, newest first; directories only when empty.
remove_created() {
    local entries=() e i
    mapfile -d '' -t entries < "$w/created"
    for ((i = ${#entries[@]} - 1; i >= 0; i--)); do
        e=${entries[i]}
        if [[ "$e" == lvm:* ]]; then
            if lvremove -f -- "${e#lvm:}" > /dev/null 2>&1; then
                note "removed logical volume ${e#lvm:}"
                say "removed $e"
            else
                note "could not remove logical volume ${e#lvm:}"
                say "notremoved $e"
            fi
            continue
        fi
        [[ "$e" == /* && "$e" != "$LOG" ]] || continue
        [[ -e "$e" || -L "$e" ]] || continue
        if { [[ -d "$e" && ! -L "$e" ]] && rmdir -- "$e" 2> /dev/null; } || rm -f -- "$e" 2> /dev/null; then
            note "removed $e"
            say "removed $e"
        elif [[ ! -d "$e" ]]; then
            note "could not remove $e"
            say "notremoved $e"
        fi
    done
}

# report: what the run created, with size, device, inode and birth time, for convirt's
# record (docs/records.md). Entries `kind TAB size TAB dev TAB ino TAB birth TAB type TAB
# path NUL` (paths may hold any byte but NUL), then a newline; sent on stderr as
# `CONVIRT:report <bytes>` and the bytes, counted because they may hold newlines.
installed=0 made_dirs=() auto_dirs=() linked=0
is_disk() {
    local d
    for d in "${DISKS[@]}"; do
        [[ "$d" == "$1" ]] && return 0
    done
    return 1
}
report() {
    local kinds=() paths=() entries=() e k i j
    if ((KEEP)); then
        kinds+=(workdir) paths+=("$w")
    fi
    for e in "$LOG" "$IMAGE_CONF" "$VM_CONF" "$ARGS"; do
        kinds+=(log) paths+=("$e")
    done
    mapfile -d '' -t entries < "$w/created"
    for e in "${entries[@]}"; do
        if [[ "$e" == lvm:* ]]; then
            k=lvm e=${e#lvm:}
        elif [[ "$e" != /* ]]; then
            continue
        elif is_disk "$e"; then
            k=disk
        elif [[ -d "$e" && ! -L "$e" ]]; then
            k=dir
        else
            k='file'
        fi
        kinds+=("$k") paths+=("$e")
    done
    if ((installed)); then
        for e in "${made_dirs[@]}"; do
            kinds+=(dir) paths+=("$e")
        done
        kinds+=(config) paths+=("$CONFIG")
        for e in "${auto_dirs[@]}"; do
            kinds+=(dir) paths+=("$e")
        done
        if ((linked)); then
            kinds+=(autostart) paths+=("$AUTO_LINK")
        fi
    fi
    # One `stat` for all: a process per item would cost each VM dearly.
    local ex=() idx=() st=() info=()
    for i in "${!paths[@]}"; do
        if [[ "${kinds[i]}" != lvm ]] && [[ -e "${paths[i]}" || -L "${paths[i]}" ]]; then
            ex+=("${paths[i]}") idx+=("$i")
        fi
    done
    if ((${#ex[@]})); then
        mapfile -t st < <(stat --printf='%s\t%d\t%i\t%.9W\t%F\n' -- "${ex[@]}" 2> /dev/null)
        if ((${#st[@]} == ${#ex[@]})); then
            for j in "${!idx[@]}"; do
                info[idx[j]]=${st[j]}
            done
        fi
    fi
    {
        for i in "${!paths[@]}"; do
            if [[ "${kinds[i]}" == lvm ]]; then
                printf 'lvm\t\t\t\t\t\t%s\0' "${paths[i]}"
            elif [[ -n "${info[i]+set}" ]]; then
                printf '%s\t%s\t%s\0' "${kinds[i]}" "${info[i]}" "${paths[i]}"
            elif [[ -e "${paths[i]}" || -L "${paths[i]}" ]]; then
                printf '%s\t\t\t\t\t\t%s\0' "${kinds[i]}" "${paths[i]}"
            fi
        done
        printf '\n'
    } > "$w/report" || return
    local size
    size=$(wc -c < "$w/report") || return
    say "report $size"
    cat -- "$w/report" >&2
}

failed() {
    if ((KEEP)); then
        note "--keep: nothing removed"
        local entries=() e
        mapfile -d '' -t entries < "$w/created"
        for e in "${entries[@]}"; do
            say "kept $e"
        done
        report
    else
        remove_created
    fi
    finish failed
    say "done"
    exit 1
}

if [[ "$outcome" != success ]]; then
    failed
fi

# Install the VM config atomically: a temporary file beside it, then a rename (--force) or
# a hard link, which fails rather than replace a config that appeared meanwhile.
install_config() {
    local d=$conf_dir
    while [[ ! -e "$d" && "$d" != / ]]; do
        made_dirs=("$d" "${made_dirs[@]}")
        parent d "$d"
    done
    [[ -d "$conf_dir" ]] || mkdir -p -- "$conf_dir" || return 1
    local text='' i
    IFS= read -r -d '' text < "$w/inputs/config"
    # A fresh temporary name, made with builtins: noclobber refuses an existing file.
    for ((i = 0; i < 20; i++)); do
        tmp=$conf_dir/.convirt-tmp-$$-$RANDOM$RANDOM
        set -C
        if { printf '%s' "$text" > "$tmp"; } 2> /dev/null; then
            set +C
            break
        fi
        set +C
        tmp=''
    done
    [[ -n "$tmp" ]] || return 1
    if ((FORCE)); then
        mv -f -- "$tmp" "$CONFIG" || {
            rm -f -- "$tmp"
            return 1
        }
    else
        ln -- "$tmp" "$CONFIG" 2> /dev/null || {
            rm -f -- "$tmp"
            return 1
        }
        rm -f -- "$tmp"
    fi
}
if ! install_config; then
    note "cannot install the VM config $CONFIG"
    say "installfailed $CONFIG"
    failed
fi
note "installed VM config $CONFIG"
say "installed $CONFIG"
installed=1

# --autostart: the config linked into the server's auto-start directory. A failure here
# leaves the VM provisioned (as locally); convirt reports it.
link_autostart() {
    local dir d
    parent dir "$AUTO_LINK"
    d=$dir
    while [[ ! -e "$d" && "$d" != / ]]; do
        auto_dirs=("$d" "${auto_dirs[@]}")
        parent d "$d"
    done
    if ! why=$(mkdir -p -- "$dir" 2>&1); then
        return 1
    fi
    if ((FORCE)) && [[ -L "$AUTO_LINK" ]]; then
        rm -f -- "$AUTO_LINK"
    fi
    why=$(ln -s -- "$CONFIG" "$AUTO_LINK" 2>&1) || return 1
    linked=1
}
if [[ -n "$AUTO_LINK" ]]; then
    why=''
    if link_autostart; then
        note "auto-start link $AUTO_LINK"
        say "autostart $AUTO_LINK"
    else
        note "cannot link the config into the auto-start directory: $why"
        say "autostartfailed ${why//$'\n'/ }"
    fi
fi
report

# --start: `xl create` after the record's report, so a VM that fails to start stays
# provisioned and recorded.
if ((START)); then
    if ! command -v xl > /dev/null 2>&1; then
        note "not started: xl is not installed"
        say "xlmissing"
    elif out=$(xl create "$CONFIG" 2>&1 < /dev/null 3<&- 9>&-); then
        note "started with xl create"
        say "xlstarted"
    else
        rc=$?
        out=${out%$'\n'}
        note "not started: xl create exited with status $rc: ${out##*$'\n'}"
        say "xlfailed $rc ${out##*$'\n'}"
    fi
fi
if ((KEEP)); then
    note "work directory kept at $w"
    finish failed
else
    finish
fi
say "done"
exit 0
