#!/usr/bin/env bash
# Benchmark: provisioning over ssh (docs/remote.md). Starts two private sshds on 127.0.0.1
# (own host keys, own client config; nobody's ssh setup is touched; needs root for sshd),
# then measures
#   - the per-VM cost of the SSH path against the local path: the time of 16 VMs minus the
#     time of 1 VM, divided by 15, so the one-time login and probe are not counted;
#   - the login and probe once per host (a --dry-run against a local --dry-run);
#   - 8 VMs whose script sleeps 0.2 s onto 2 servers with --jobs 4 against 1 server with
#     --jobs 1;
#   - the first contact with a server that has no convirt: the copy of this convirt into the
#     server user's cache (~/.cache/convirt/bin/<sha256>), with a --dry-run (issue #17).
# The server side logs in as a user made for the bench (`convirt-bench`, home in the temp
# dir, empty ~/.bashrc): sshd's bash runs the user's ~/.bashrc for every command, and a heavy
# one (pyenv init takes 0.5 s here) would be measured instead of convirt.
# Run by hand as root: bench/remote.sh (builds the release binary; ROUNDS=N runs each
# measurement N times, 5 by default; CONVIRT_BIN=path uses
# another).
# Prints a Markdown table for docs/performance.md.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
cd "$BENCH_ROOT"
bin=$(bench_binary)
tmp=$(mktemp -d)
chmod 755 "$tmp"
pids=()
user=convirt-bench
id "$user" > /dev/null 2>&1 || useradd -M -s /bin/bash "$user"
usermod -p '*' -d "$tmp/home" "$user"
mkdir -p "$tmp/home"
: > "$tmp/home/.bashrc"
chown -R "$user:" "$tmp/home"
cleanup() {
    local p
    for p in "${pids[@]}"; do
        kill "$p" 2> /dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT

mkdir -p /run/sshd
bench_noop_sleep_images "$tmp/store"

ssh-keygen -q -t ed25519 -N '' -f "$tmp/client_key"
cp "$tmp/client_key.pub" "$tmp/authorized_keys"
chmod 644 "$tmp/authorized_keys"
: > "$tmp/known_hosts"
cat > "$tmp/c.toml" << CONF
image_store = "$tmp/store"
log_dir = "$tmp/local/log"
work_dir = "$tmp/local/work"
[variables]
VM_DISKS_DIR = "$tmp/local/disks"
VM_CONF_DIR = "$tmp/local/conf"
CONF
for i in 0 1; do
    d=$tmp/sshd$i
    mkdir -p "$d"
    ssh-keygen -q -t ed25519 -N '' -f "$d/host_key"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    cat > "$d/sshd_config" << CONF
Port $port
ListenAddress 127.0.0.1
HostKey $d/host_key
PidFile $d/sshd.pid
UsePAM no
StrictModes no
AuthorizedKeysFile $tmp/authorized_keys
PasswordAuthentication no
PermitRootLogin prohibit-password
LogLevel ERROR
CONF
    /usr/sbin/sshd -D -f "$d/sshd_config" &
    pids+=("$!")
    echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$d/host_key.pub")" >> "$tmp/known_hosts"
    cat >> "$tmp/c.toml" << CONF
[hosts.srv$i]
address = "127.0.0.1"
port = $port
user = "$user"
log_dir = "~/srv$i/log"
work_dir = "~/srv$i/work"
VM_DISKS_DIR = "~/srv$i/disks"
VM_CONF_DIR = "~/srv$i/conf"
CONF
done
cat > "$tmp/ssh_config" << CONF
Host *
  IdentityFile $tmp/client_key
  IdentitiesOnly yes
  UserKnownHostsFile $tmp/known_hosts
  GlobalKnownHostsFile /dev/null
  LogLevel ERROR
CONF
export CONVIRT_SSH="ssh -F $tmp/ssh_config"
# The VM records (local and remote runs) stay in the bench's own directory.
export CONVIRT_STATE_DIR="$tmp/state"
sleep 0.5

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
# time_ms CMD...: the wall time of CMD in ms. The writes of the runs before are flushed
# first (`sync`, untimed), so that no run pays for the writeback of another's files.
time_ms() {
    local s e
    sync
    s=$(date +%s%N)
    "$@" > /dev/null 2>&1 || {
        echo "failed: $*" >&2
        exit 1
    }
    e=$(date +%s%N)
    echo $(((e - s) / 1000000))
}
cv() { "$bin" --config "$tmp/c.toml" -q provision "$@"; }
names() { # names PREFIX N
    local i
    for i in $(seq "$2"); do printf '%s%s ' "$1" "$i"; done
}

rounds=${ROUNDS:-5}
# First contact: no convirt in the server user's cache, none on its PATH (the bench user's
# PATH is the system's; a /usr/bin/convirt of this version would be used instead).
first=$(for r in $(seq 3); do
    rm -rf "$tmp/home/.cache/convirt"
    time_ms cv --host srv0 --image Noop --vm d --dry-run
done | median)
size=$(stat -c %s "$bin")
# shellcheck disable=SC2046
{
    l1=$(for r in $(seq "$rounds"); do time_ms cv --image Noop --vm "la$r"; done | median)
    l16=$(for r in $(seq "$rounds"); do time_ms cv --image Noop --vm $(names "lb${r}_" 16); done | median)
    r1=$(for r in $(seq "$rounds"); do time_ms cv --host srv0 --image Noop --vm "ra$r"; done | median)
    r16=$(for r in $(seq "$rounds"); do time_ms cv --host srv0 --image Noop --vm $(names "rb${r}_" 16); done | median)
    port0=$(sed -n 's/^Port //p' "$tmp/sshd0/sshd_config")
    ssh -F "$tmp/ssh_config" -p "$port0" -l "$user" -o ControlMaster=yes -o ControlPath="$tmp/cm" -o ControlPersist=30 -fN 127.0.0.1
    st=$(for r in $(seq "$rounds"); do time_ms ssh -F "$tmp/ssh_config" -p "$port0" -l "$user" -o ControlPath="$tmp/cm" 127.0.0.1 true; done | median)
    ssh -F "$tmp/ssh_config" -o ControlPath="$tmp/cm" -O exit 127.0.0.1 2> /dev/null
    ld=$(for r in $(seq "$rounds"); do time_ms cv --image Noop --vm d --dry-run; done | median)
    rd=$(for r in $(seq "$rounds"); do time_ms cv --host srv0 --image Noop --vm d --dry-run; done | median)
    one=$(for r in $(seq 3); do time_ms cv --host srv0 --image Sleep --jobs 1 --vm $(names "sa${r}_" 8); done | median)
    two=$(for r in $(seq 3); do time_ms cv --host srv0 --host srv1 --image Sleep --jobs 4 --vm $(names "sb${r}_" 8); done | median)
}
lper=$(awk -v a="$l16" -v b="$l1" 'BEGIN {printf "%.1f", (a - b) / 15}')
rper=$(awk -v a="$r16" -v b="$r1" 'BEGIN {printf "%.1f", (a - b) / 15}')
over=$(awk -v a="$rper" -v b="$lper" 'BEGIN {printf "%.1f", a - b}')

echo "| measurement (median of $rounds; 8-VM runs of 3) | local | over ssh |"
echo "| --- | ---: | ---: |"
echo "| 1 VM, no-op script | ${l1} ms | ${r1} ms |"
echo "| 16 VMs, no-op script, \`--jobs 1\` | ${l16} ms | ${r16} ms |"
echo "| per VM: (16 VMs - 1 VM) / 15 | ${lper} ms | ${rper} ms |"
echo "| \`--dry-run\` of 1 VM (ssh: login + probe) | ${ld} ms | ${rd} ms |"
echo "| floor: \`ssh HOST true\` through a shared connection | | ${st} ms |"
echo "| first contact: \`--dry-run\` with the copy of convirt ($((size / 1048576)) MiB) | | ${first} ms |"
echo
echo "SSH path overhead per VM with the shared connection: **${over} ms** (goal: at most 25 ms)."
echo
echo "| 8 VMs, script sleeps 0.2 s | time |"
echo "| --- | ---: |"
echo "| 1 server, \`--jobs 1\` | ${one} ms |"
echo "| 2 servers, \`--jobs 4\` | ${two} ms ($(awk -v a="$two" -v b="$one" 'BEGIN {printf "%.2f", a/b}') of it) |"
