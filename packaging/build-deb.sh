#!/usr/bin/env bash
# make deb: dist/vssm_VERSION_ARCH.deb and dist/libvssm-pkcs11_VERSION_ARCH.deb from the release
# builds in dist/ (make release). The version is the one in Sources/VSSMWire/Version.swift.
# Depends: from dpkg-shlibdeps; man pages from the binary's own help (scripts/gen-man.py).
set -eu
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
version=$(sed -n 's/.*static let string = "\([^"]*\)".*/\1/p' Sources/VSSMWire/Version.swift)
[ -n "$version" ] || { echo "build-deb: no version in Sources/VSSMWire/Version.swift" >&2; exit 1; }
arch=$(dpkg --print-architecture)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
for f in dist/vssm dist/libvssm-pkcs11.so; do
    [ -s "$f" ] || { echo "build-deb: $f is missing (make release)" >&2; exit 1; }
done
out="$root/dist"
work="$root/dist/deb"
rm -rf "$work"
mkdir -p "$work"

# The changelog both packages carry (Debian format, from CHANGELOG.md's newest entry).
changelog() {
    local pkg="$1" date
    date=$(date -R -d "@$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)")
    {
        echo "$pkg ($version) stable; urgency=medium"
        echo
        # The newest entry's bullets, wrapped to Debian's 80 columns.
        python3 -c '
import re, sys, textwrap
entry = re.split(r"^## ", open(sys.argv[1]).read(), flags=re.M)[1]
for item in re.findall(r"^- (.*?)(?=^- |\Z)", entry.split("\n", 1)[1], flags=re.M | re.S):
    print(textwrap.fill(" ".join(item.split()), 78, initial_indent="  * ", subsequent_indent="    "))
' CHANGELOG.md
        echo
        echo " -- vssm-pkcs11 developers <vssm-pkcs11@example.org>  $date"
    } | gzip -9n
}

# depends BINARY...: the Depends line of these ELF files (dpkg-shlibdeps needs a debian/control).
depends() {
    local t="$work/shlibs"
    rm -rf "$t"; mkdir -p "$t/debian"
    printf 'Source: vssm-pkcs11\n\nPackage: x\nArchitecture: any\n' > "$t/debian/control"
    (cd "$t" && dpkg-shlibdeps -O "$@" 2>/dev/null) | sed -n 's/^shlibs:Depends=//p'
}

finish() {
    local pkg="$1" dir="$2"
    local size
    find "$dir" -type d -exec chmod 0755 {} +
    size=$(du -k -s --exclude=DEBIAN "$dir" | cut -f1)
    sed -i -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" -e "s|@SIZE@|$size|" "$dir/DEBIAN/control"
    (cd "$dir" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum > DEBIAN/md5sums)
    chmod 0644 "$dir/DEBIAN/md5sums" "$dir/DEBIAN/control"
    fakeroot dpkg-deb --build -Zxz "$dir" "$out/${pkg}_${version}_${arch}.deb" >/dev/null
    echo "built dist/${pkg}_${version}_${arch}.deb"
}

# --- vssm ------------------------------------------------------------------------------------------
d="$work/vssm"
install -D -m 0755 dist/vssm "$d/usr/bin/vssm"
sed -e 's|@BINDIR@|/usr/bin|g' -e 's|@DOCDIR@|/usr/share/doc/vssm|g' packaging/vssm.service.in \
    | grep -v '^# ' > "$work/vssm.service"
install -D -m 0644 "$work/vssm.service" "$d/lib/systemd/system/vssm.service"
install -d -m 0755 "$d/etc/vssm"
install -d "$d/usr/share/man/man1"
python3 scripts/gen-man.py "$d/usr/bin/vssm" "$d/usr/share/man/man1" "$version"
gzip -9n "$d"/usr/share/man/man1/*.1
install -D -m 0644 packaging/debian/copyright "$d/usr/share/doc/vssm/copyright"
install -m 0644 README.md "$d/usr/share/doc/vssm/README.md"
gzip -9n "$d/usr/share/doc/vssm/README.md"
install -d "$d/usr/share/doc/vssm/docs"
for f in docs/*.md; do gzip -9n -c "$f" > "$d/usr/share/doc/vssm/docs/$(basename "$f").gz"; done
changelog vssm > "$d/usr/share/doc/vssm/changelog.gz"
install -d "$d/DEBIAN"
sed "s|@DEPENDS@|$(depends "$d/usr/bin/vssm")|" packaging/debian/vssm.control > "$d/DEBIAN/control"
for s in postinst postrm prerm; do install -m 0755 "packaging/debian/vssm.$s" "$d/DEBIAN/$s"; done
finish vssm "$d"

# --- libvssm-pkcs11 ---------------------------------------------------------------------------------
d="$work/libvssm-pkcs11"
install -D -m 0644 dist/libvssm-pkcs11.so "$d/usr/lib/$multiarch/pkcs11/libvssm-pkcs11.so"
sed -e "s|@PKCS11DIR@|/usr/lib/$multiarch/pkcs11|g" -e 's|@SYSCONFDIR@|/etc|g' packaging/vssm-pkcs11.module.in \
    > "$work/vssm-pkcs11.module"
install -D -m 0644 "$work/vssm-pkcs11.module" "$d/usr/share/p11-kit/modules/vssm-pkcs11.module"
install -D -m 0644 packaging/debian/copyright "$d/usr/share/doc/libvssm-pkcs11/copyright"
install -D -m 0644 packaging/pkcs11.json.example "$d/usr/share/doc/libvssm-pkcs11/examples/pkcs11.json"
gzip -9n -c docs/config-module.md > "$d/usr/share/doc/libvssm-pkcs11/config-module.md.gz"
changelog libvssm-pkcs11 > "$d/usr/share/doc/libvssm-pkcs11/changelog.gz"
install -d "$d/DEBIAN"
sed "s|@DEPENDS@|$(depends "$d/usr/lib/$multiarch/pkcs11/libvssm-pkcs11.so")|" packaging/debian/libvssm-pkcs11.control > "$d/DEBIAN/control"
finish libvssm-pkcs11 "$d"
