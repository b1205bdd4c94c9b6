#!/usr/bin/env bash
# OpenSSH (issue 4, first part): ssh-keygen lists the service's keys and signs user and host
# certificates with a CA key held in the service; Python `cryptography` verifies the signatures.
set -u
source "$(dirname "$0")/../lib.sh"
source "$CONFORMANCE_DIR/dev-env.sh" || exit 1
trap vssm_dev_stop EXIT
W="$VSSM_DEV_DIR/work"; mkdir -p "$W"
"$VSSM_BIN" admin generate-key ssh-ca-ec --type ASYMMETRIC --spec EC --size 256 >/dev/null
"$VSSM_BIN" admin generate-key ssh-ca-rsa --type ASYMMETRIC --spec RSA --size 2048 >/dev/null
out=$(ssh-keygen -D "$MODULE" 2>&1)
check "ssh-keygen -D lists the ECDSA key" grep -q "^ecdsa-sha2-nistp256 .* ssh-ca-ec$" <<< "$out"
check "ssh-keygen -D lists the RSA key" grep -q "^ssh-rsa .* ssh-ca-rsa$" <<< "$out"
grep " ssh-ca-ec$" <<< "$out" > "$W/ca-ec.pub"
grep " ssh-ca-rsa$" <<< "$out" > "$W/ca-rsa.pub"
ssh-keygen -q -t ed25519 -N '' -f "$W/alice"
# Signing needs the PIN (the token says CKF_LOGIN_REQUIRED): ssh-keygen asks through SSH_ASKPASS.
printf '#!/bin/sh\necho "%s"\n' "$PIN" > "$W/askpass"; chmod 700 "$W/askpass"
ASK=(env SSH_ASKPASS="$W/askpass" SSH_ASKPASS_REQUIRE=force DISPLAY=:0)
ssh-keygen -q -t ecdsa -N '' -f "$W/host"
check "user certificate signed by the service's ECDSA CA key" "${ASK[@]}" ssh-keygen -s "$W/ca-ec.pub" -D "$MODULE" -I alice@example -n alice -V +1h "$W/alice.pub"
check "host certificate signed by the service's RSA CA key" "${ASK[@]}" ssh-keygen -s "$W/ca-rsa.pub" -D "$MODULE" -I host.example -h -n host.example -V +1h "$W/host.pub"
out=$(ssh-keygen -L -f "$W/alice-cert.pub" 2>&1)
check "ssh-keygen -L: user certificate, principal alice" bash -c "grep -q 'user certificate' <<< '$out' && grep -q 'alice' <<< '$out'"
out=$(ssh-keygen -L -f "$W/host-cert.pub" 2>&1)
check "ssh-keygen -L: host certificate signed with rsa-sha2-512" bash -c "grep -q 'host certificate' <<< '$out' && grep -q 'rsa-sha2-512' <<< '$out'"
verify='
import sys
from cryptography.hazmat.primitives import serialization
cert = serialization.load_ssh_public_identity(open(sys.argv[1], "rb").read())
ca = serialization.load_ssh_public_key(open(sys.argv[2], "rb").read())
cert.verify_cert_signature()
assert cert.signature_key().public_numbers() == ca.public_numbers(), "signed by another key"
'
check "user certificate signature verifies with the CA public key (cryptography)" python3 -c "$verify" "$W/alice-cert.pub" "$W/ca-ec.pub"
check "host certificate signature verifies with the CA public key (cryptography)" python3 -c "$verify" "$W/host-cert.pub" "$W/ca-rsa.pub"
finish
