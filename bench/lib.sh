#!/bin/bash
# bench/lib.sh: what the benchmarks share. Sourced by bench/*.sh, never run on its own:
#
#   BENCH_ROOT                         the repository
#   bench_binary                       prints the release binary's path, building it first;
#                                      CONVIRT_BIN=PATH measures that binary instead (no build)
#   bench_noop_sleep_images STORE      two test images without disks in STORE: Noop (its
#                                      provision.sh exits at once) and Sleep (sleeps 0.2 s), and
#                                      the shipped common/
#   bench_write_section DOC TITLE      puts stdin as the section `## TITLE` of DOC in place of
#                                      the one there (appended when there is none)

BENCH_ROOT="$(cd "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"

bench_binary() {
    if [[ -n "${CONVIRT_BIN:-}" ]]; then
        printf '%s\n' "$CONVIRT_BIN"
        return
    fi
    (cd "$BENCH_ROOT" && cargo build --release --quiet)
    printf '%s\n' "$BENCH_ROOT/target/release/convirt"
}

bench_noop_sleep_images() {
    local store="$1" img
    mkdir -p "$store/Noop" "$store/Sleep"
    cp -a "$BENCH_ROOT/image_store/common" "$store/common"
    for img in Noop Sleep; do
        printf "hda_disk_create = 'no'\n" > "$store/$img/image.conf"
        cat > "$store/$img/vm_conf.template" << 'CONF'
name = ''
memory = 256
kernel = '/boot/vmlinuz'
disk = ['file:$VM_DISKS_DIR/$VM_NAME.disk,xvda,w']
vif = ['mac=$AUTOGEN_MAC,bridge=$DEFAULT_BRIDGE']
CONF
        echo "<body>$img</body>" > "$store/$img/description.htm"
    done
    printf '#!/bin/bash\nexit 0\n' > "$store/Noop/provision.sh"
    printf '#!/bin/bash\nsleep 0.2\n' > "$store/Sleep/provision.sh"
    chmod +x "$store/Noop/provision.sh" "$store/Sleep/provision.sh"
}

bench_write_section() {
    local doc="$1" title="$2"
    SECTION="$(cat)" python3 - "$doc" "## $title" << 'PY'
import os, re, sys
path, title = sys.argv[1], sys.argv[2]
section = os.environ["SECTION"].rstrip("\n") + "\n"
text = open(path).read() if os.path.exists(path) else "# Performance\n"
start = text.find(title)
if start < 0:
    text = text.rstrip("\n") + "\n\n" + section
else:
    nxt = re.search(r"^## ", text[start + len(title):], re.M)
    end = start + len(title) + nxt.start() if nxt else len(text)
    text = text[:start] + section + ("\n" + text[end:] if nxt else "")
open(path, "w").write(text)
PY
    echo "wrote $doc" >&2
}
