#!/bin/bash
# CI check of the Debian package of convirt (issue #14), run as root by .ci/run:
#   1. build it with scripts/build-deb.sh; `cargo install --path .` into a temp root;
#   2. lintian: no errors, and every warning left is explained in docs/packaging.md;
#   3. dpkg-deb -x: the file list is exactly what the package must ship; the extracted binary
#      runs, its man pages render with man -l, its completion scripts load;
#   4. a throwaway Debian root (mmdebstrap, from the apt mirror this machine uses): apt
#      installs the .deb with its dependencies, then `dpkg -i`, `man convirt`,
#      `convirt --version`, `dpkg --purge`, and the root holds exactly the files it held
#      before the install.
# Needs root (mmdebstrap --mode=root, chroot) and the packages of scripts/install-deps.sh.
# SKIP_ROOT_INSTALL=1 skips step 4 (for a quick local run).
set -euo pipefail

cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }
fail() { echo "check-deb: $*" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/convirt-check-deb.XXXXXX")
trap 'rm -rf -- "$work"' EXIT

step "build: scripts/build-deb.sh"
deb=$(scripts/build-deb.sh | tail -n 1)
[[ -f "$deb" ]] || fail "build-deb.sh did not leave a package"
case "${deb##*/}" in
    convirt_*_*.deb) ;;
    *) fail "unexpected package name ${deb##*/}" ;;
esac
dpkg-deb --info "$deb"

step "cargo install --path . (the README's other way)"
# The same release profile and target dir as the package build, so nothing is rebuilt.
cargo install --quiet --locked --path . --root "$work/cargo-root" --target-dir "${CARGO_TARGET_DIR:-target}"
"$work/cargo-root/bin/convirt" --version

step "lintian"
# --fail-on error: warnings are allowed, but each must be explained in docs/packaging.md.
lintian --info --display-level '>=warning' --fail-on error "$deb" | tee "$work/lintian.txt" ||
    fail "lintian reported errors"
while read -r tag; do
    grep -q -- "\`$tag\`" docs/packaging.md ||
        fail "lintian warning $tag is not explained in docs/packaging.md"
done < <(awk '$1 == "W:" {print $3}' "$work/lintian.txt" | sort -u)

step "file list (dpkg-deb -x)"
x="$work/x"
dpkg-deb -x "$deb" "$x"
(cd "$x" && find . -mindepth 1 \( -type f -o -type l \) -printf '%P\n' | sort) > "$work/files"
# The man pages the extracted binary generates: one per command, so new commands need no
# change here.
"$x/usr/bin/convirt" --quiet manpage --dir "$work/man"
{
    echo etc/convirt/convirt.toml
    echo usr/bin/convirt
    echo usr/share/bash-completion/completions/convirt
    echo usr/share/doc/convirt/changelog.gz
    echo usr/share/doc/convirt/copyright
    echo usr/share/fish/vendor_completions.d/convirt.fish
    for page in "$work"/man/*.1; do echo "usr/share/man/man1/${page##*/}.gz"; done
    echo usr/share/zsh/vendor-completions/_convirt
} | sort > "$work/expected"
diff -u "$work/expected" "$work/files" || fail "the package's files differ from the expected list"
grep -qx 'usr/share/man/man1/convirt-provision.1.gz' "$work/files" ||
    fail "no convirt-provision(1)"
grep -qx 'usr/share/man/man1/convirt-ui.1.gz' "$work/files" || fail "no convirt-ui(1)"
[[ $(dpkg-deb -f "$deb" Depends) == *e2fsprogs* ]] || fail "Depends lacks e2fsprogs"
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles | grep -qx /etc/convirt/convirt.toml ||
    fail "/etc/convirt/convirt.toml is not a conffile"
echo "ok: $(wc -l < "$work/files") files"

step "the extracted binary"
"$x/usr/bin/convirt" --version
"$x/usr/bin/convirt" --help > /dev/null
for page in convirt convirt-provision convirt-image-show; do
    LC_ALL=C MANWIDTH=80 man -l "$x/usr/share/man/man1/$page.1.gz" > "$work/$page.txt" 2> "$work/man.err"
    [[ -s "$work/$page.txt" && ! -s "$work/man.err" ]] || fail "man -l $page: $(cat "$work/man.err")"
done
# man justifies text: compare with the spaces squeezed.
tr -s ' \n' ' ' < "$work/convirt-provision.txt" | grep -q 'Provision one or more VMs from an image' ||
    fail "convirt-provision(1) is wrong"
bash -c 'source "$1" && complete -p convirt' _ "$x/usr/share/bash-completion/completions/convirt" ||
    fail "the bash completion does not load"
# Desktop shells may be absent; the scripts at least name convirt's completer.
grep -q _CONVIRT_COMPLETE "$x/usr/share/zsh/vendor-completions/_convirt"
grep -q _CONVIRT_COMPLETE "$x/usr/share/fish/vendor_completions.d/convirt.fish"

[[ -n "${SKIP_ROOT_INSTALL:-}" ]] && { echo "skipping the throwaway root (SKIP_ROOT_INSTALL)"; exit 0; }

step "install and purge in a throwaway root (mmdebstrap)"
[[ $(id -u) -eq 0 ]] || fail "the throwaway-root install needs root"
# The mirror and release this machine's apt uses (never a host name written here).
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
if [[ -z "$mirror" ]]; then
    mirror=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
fi
[[ -n "$mirror" ]] || fail "cannot find the apt mirror in /etc/apt/sources.list.d/"
# shellcheck source=/dev/null
suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
[[ -n "$suite" ]] || fail "cannot tell the Debian release from /etc/os-release"

cp -- "$deb" "$work/convirt.deb"
cat > "$work/in-root.sh" <<'INROOT'
#!/bin/bash
# Runs inside the throwaway root.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
snapshot() {
    find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /tmp \
        -o -path /var/lib/dpkg -o -path /var/lib/apt -o -path /var/cache \
        -o -path /var/log \) -prune -o -printf '%p %y %m\n' | sort
}
echo "-- apt resolves the package's dependencies (Recommends included, simulated)"
# mmdebstrap turns Recommends off inside its roots (99mmdebstrap): turn them on here.
apt-get -o APT::Install-Recommends=1 install -s /tmp/convirt.deb > /tmp/sim.txt
grep -E '^Inst (qemu-utils|openssh-client|mmdebstrap|uidmap) ' /tmp/sim.txt | sort
for p in qemu-utils openssh-client mmdebstrap uidmap; do
    grep -q "^Inst $p " /tmp/sim.txt || { echo "apt would not install $p" >&2; exit 1; }
done
grep -q '^Inst xen' /tmp/sim.txt && { echo "apt would install Xen (only a suggestion)" >&2; exit 1; }
echo "-- apt install ./convirt.deb (without Recommends, to stay small)"
apt-get install -y -q --no-install-recommends /tmp/convirt.deb > /tmp/apt.txt
dpkg --purge convirt
before=$(snapshot)
echo "-- dpkg -i"
dpkg -i /tmp/convirt.deb
echo "-- man convirt"
MANPAGER=cat MANWIDTH=80 man convirt > /tmp/man.txt
head -n 12 /tmp/man.txt
MANPAGER=cat man convirt-provision > /tmp/man-provision.txt
grep -q -- '--image' /tmp/man-provision.txt
echo "-- convirt --version"
convirt --version
test -f /etc/convirt/convirt.toml
dpkg-query -W -f='${Conffiles}\n' convirt | grep -q /etc/convirt/convirt.toml
# The shipped settings work as they are.
convirt --config /etc/convirt/convirt.toml store init /tmp/st > /dev/null
convirt --config /etc/convirt/convirt.toml --store /tmp/st image list | grep -q Linux_CD_Install
rm -rf /tmp/st
echo "-- dpkg --purge"
dpkg --purge convirt
after=$(snapshot)
if [[ "$before" != "$after" ]]; then
    echo "the purge left a difference:" >&2
    diff <(echo "$before") <(echo "$after") >&2 || true
    exit 1
fi
test ! -e /etc/convirt
dpkg-query -W convirt 2>/dev/null && { echo "convirt still known to dpkg" >&2; exit 1; }
echo "ok: installed, used and purged; nothing left behind"
INROOT
# The second hook's $1 is mmdebstrap's root directory, expanded by mmdebstrap's shell.
# shellcheck disable=SC2016
mmdebstrap --quiet --mode=root --variant=apt --include=man-db "$suite" /dev/null "$mirror" \
    --customize-hook="copy-in '$work/convirt.deb' '$work/in-root.sh' /tmp" \
    --customize-hook='chroot "$1" /bin/bash /tmp/in-root.sh'
echo "check-deb: all checks passed"
