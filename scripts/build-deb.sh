#!/bin/bash
# Builds the Debian package of convirt itself: target/debian/convirt_<version>_<arch>.deb.
#
#   scripts/build-deb.sh            release build, then the package
#
# A plain dpkg-deb build (no cargo-deb, no debhelper): the files come from pkg/ and from the
# binary itself (man pages and completions are generated from the CLI definition), so the
# script needs only what Debian's dpkg-dev, binutils and gzip provide. docs/packaging.md
# explains the layout; docs/decisions.md why not cargo-deb.
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$(pwd)
target="${CARGO_TARGET_DIR:-$repo/target}"

cargo build --release --locked
bin="$target/release/convirt"

version=$("$bin" --version | awk '{print $2}')
changelog_version=$(dpkg-parsechangelog -l pkg/changelog -S Version)
if [[ "$version" != "$changelog_version" ]]; then
    echo "error: Cargo.toml says $version but pkg/changelog's top entry is $changelog_version" >&2
    exit 1
fi
arch=$(dpkg --print-architecture)
# Reproducible: every timestamp is the changelog's date.
SOURCE_DATE_EPOCH=$(dpkg-parsechangelog -l pkg/changelog -S Timestamp)
export SOURCE_DATE_EPOCH

out="$target/debian"
mkdir -p "$out"
stage=$(mktemp -d "$out/.stage.XXXXXX")
trap 'rm -rf -- "$stage"' EXIT
root="$stage/root"

install -d -m 0755 "$root/DEBIAN" "$root/usr/bin" "$root/usr/share/man/man1" \
    "$root/usr/share/doc/convirt" "$root/etc/convirt" \
    "$root/usr/share/bash-completion/completions" \
    "$root/usr/share/zsh/vendor-completions" \
    "$root/usr/share/fish/vendor_completions.d"

install -m 0755 "$bin" "$root/usr/bin/convirt"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$root/usr/bin/convirt"

# Man pages and completions from the binary being packaged, so they describe exactly it.
"$root/usr/bin/convirt" --quiet manpage --dir "$stage/man"
for page in "$stage"/man/*.1; do
    gzip -9n < "$page" > "$root/usr/share/man/man1/${page##*/}.gz"
done
"$root/usr/bin/convirt" completions bash > "$root/usr/share/bash-completion/completions/convirt"
"$root/usr/bin/convirt" completions zsh > "$root/usr/share/zsh/vendor-completions/_convirt"
"$root/usr/bin/convirt" completions fish > "$root/usr/share/fish/vendor_completions.d/convirt.fish"

install -m 0644 pkg/convirt.toml "$root/etc/convirt/convirt.toml"
install -m 0644 pkg/copyright "$root/usr/share/doc/convirt/copyright"
# A native package: the changelog is changelog.gz.
gzip -9n < pkg/changelog > "$root/usr/share/doc/convirt/changelog.gz"
install -m 0644 pkg/conffiles "$root/DEBIAN/conffiles"

# The shared-library dependencies, as dpkg-shlibdeps finds them in the stripped binary.
mkdir -p "$stage/src/debian"
printf 'Source: convirt\n\nPackage: convirt\nArchitecture: any\n' > "$stage/src/debian/control"
shlibs=$(cd "$stage/src" && dpkg-shlibdeps -O "$root/usr/bin/convirt" |
    sed -n 's/^shlibs:Depends=//p')
if [[ -z "$shlibs" ]]; then
    echo "error: dpkg-shlibdeps found no library dependencies" >&2
    exit 1
fi

size=$(du -k -s --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
    -e "s/@SHLIBS@/$shlibs/" pkg/control.in > "$root/DEBIAN/control"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z |
    xargs -0 md5sum) > "$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"

find "$root" -exec touch --no-dereference --date="@$SOURCE_DATE_EPOCH" {} +
deb="$out/convirt_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb.tmp" > /dev/null
mv -f -- "$deb.tmp" "$deb"
echo "$deb"
