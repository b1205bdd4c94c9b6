#!/usr/bin/env bash
# Installs what building and testing need on Debian 12 (run as root or with sudo available).
# Idempotent: does nothing when everything is present.
# `install-deps.sh demo` installs only what `make demo` needs (build, pkcs11-tool, the OpenSSL engine).
set -eu
what="${1:-check}"
# Build: libssl-dev. Demo: pkcs11-tool (opensc) and the libp11 engine. Tests: the consumers the
# conformance scenarios drive.
pkgs=(libssl-dev openssl curl python3 ca-certificates opensc libengine-pkcs11-openssl)
[ "$what" = demo ] || pkgs+=(openssh-client openssh-server nginx-light gnutls-bin p11-kit default-jdk-headless etcd-server etcd-client
                              lintian libnss3-tools dpkg-dev fakeroot adduser iproute2 util-linux man-db jq faketime)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
if [ -n "$SUDO" ] && [ ${#missing[@]} -gt 0 ] && ! command -v sudo >/dev/null; then
    echo "install-deps: missing Debian packages: ${missing[*]}; install them as root: apt-get install ${missing[*]}" >&2
    exit 1
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: apt-get install ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The OpenSSL 3 provider (conformance/consumers/11-openssl-provider.sh): in Debian 12 only in
# bookworm-backports, whose packages apt never prefers unless asked (priority 100).
if [ "$what" != demo ] && ! dpkg -s pkcs11-provider >/dev/null 2>&1; then
    if grep -q '^VERSION_CODENAME=bookworm' /etc/os-release 2>/dev/null \
        && ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        echo "install-deps: adding bookworm-backports to apt's sources (for pkcs11-provider)"
        echo "deb http://deb.debian.org/debian bookworm-backports main" | $SUDO tee /etc/apt/sources.list.d/bookworm-backports.list >/dev/null
    fi
    echo "install-deps: apt-get install pkcs11-provider"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq pkcs11-provider >/dev/null
fi
# cryptography with ML-DSA (46 and later): the post-quantum checks verify with it.
if ! python3 -c 'from cryptography.hazmat.primitives.asymmetric import mldsa' 2>/dev/null; then
    echo "install-deps: pip install cryptography"
    python3 -m pip install -q -U cryptography 2>/dev/null || {
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-cryptography >/dev/null; }
fi
# The conformance suite runs every `vssm serve` as this unprivileged system user (the Debian
# package's `vssm` user, made the same way), so nothing that needs root can hide in the tests.
if ! getent passwd vssm >/dev/null; then
    echo "install-deps: adding the system user vssm"
    $SUDO adduser --system --group --home /var/lib/vssm --no-create-home --quiet vssm
fi
command -v swift >/dev/null || export PATH="/opt/swift/usr/bin:$PATH"
command -v swift >/dev/null || { echo "install-deps: the Swift toolchain is not on PATH (expected /opt/swift)"; exit 1; }
if [ "$what" = demo ]; then echo "install-deps: ok (demo)"; exit 0; fi
# The consumers' own test suites (conformance/consumers/09-python-suites.sh) need these.
for mod in pytest:pytest parameterized:parameterized oscrypto:oscrypto wheel:wheel; do
    if ! python3 -c "import ${mod%%:*}" 2>/dev/null; then
        echo "install-deps: pip install ${mod#*:}"
        python3 -m pip install -q "${mod#*:}" || { echo "install-deps: pip install ${mod#*:} failed"; exit 1; }
    fi
done
for mod in pkcs11:python-pkcs11==0.10.1 PyKCS11:PyKCS11==1.5.20; do
    if ! python3 -c "import ${mod%%:*}" 2>/dev/null; then
        echo "install-deps: pip install ${mod#*:}"
        python3 -m pip install -q "${mod#*:}" || { echo "install-deps: pip install ${mod#*:} failed"; exit 1; }
    fi
done
echo "install-deps: ok"
