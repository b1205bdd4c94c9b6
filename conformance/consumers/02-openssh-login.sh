#!/usr/bin/env bash
# OpenSSH logins (issue 4): an sshd on a loopback port, started and stopped here by PID, accepts
#  - `ssh -I MODULE` with an RSA key and with an ECDSA key held in the service,
#  - the same keys through `ssh-agent` after `ssh-add -s MODULE`,
#  - a user certificate whose CA key lives in the service, trusted through TrustedUserCAKeys.
# sshd's own log (LogLevel VERBOSE) is the independent witness of which key was accepted.
set -u
source "$(dirname "$0")/../lib.sh"
source "$CONFORMANCE_DIR/dev-env.sh" || exit 1
W="$VSSM_DEV_DIR/work"; mkdir -p "$W"
SSHD_PID=""; AGENT_PID=""
cleanup() {
    [ -n "$SSHD_PID" ] && kill "$SSHD_PID" 2>/dev/null
    [ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null
    vssm_dev_stop
}
trap cleanup EXIT
SSHD=/usr/sbin/sshd
[ -x "$SSHD" ] || { fail "sshd is not installed (apt-get install openssh-server; make check installs it)"; finish; exit 1; }
USER_NAME="$(id -un)"
[ "$(id -u)" -eq 0 ] && mkdir -p /run/sshd

"$VSSM_BIN" admin generate-key login-rsa --type ASYMMETRIC --spec RSA --size 2048 >/dev/null
"$VSSM_BIN" admin generate-key login-ec --type ASYMMETRIC --spec EC --size 256 >/dev/null
"$VSSM_BIN" admin generate-key user-ca --type ASYMMETRIC --spec EC --size 384 >/dev/null
keys=$(ssh-keygen -D "$MODULE" 2>/dev/null)
for k in login-rsa login-ec user-ca; do grep " $k$" <<< "$keys" > "$W/$k.pub"; done
check "ssh-keygen -D exports the three keys" test -s "$W/login-rsa.pub" -a -s "$W/login-ec.pub" -a -s "$W/user-ca.pub"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ssh-keygen -q -t ed25519 -N '' -f "$W/host_key"
: > "$W/authorized_keys"
cat > "$W/sshd_config" <<CFG
ListenAddress 127.0.0.1:$port
HostKey $W/host_key
PidFile $W/sshd.pid
AuthorizedKeysFile $W/authorized_keys
TrustedUserCAKeys $W/user-ca.pub
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
LogLevel VERBOSE
CFG
"$SSHD" -D -e -f "$W/sshd_config" 2>"$W/sshd.log" &
SSHD_PID=$!
for _ in $(seq 1 50); do
    grep -q "Server listening" "$W/sshd.log" 2>/dev/null && break
    kill -0 "$SSHD_PID" 2>/dev/null || break
    sleep 0.1
done
check "sshd listens on 127.0.0.1:$port" grep -q "Server listening on 127.0.0.1 port $port" "$W/sshd.log"

SSH_OPTS=(-p "$port" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile="$W/known_hosts"
    -o IdentitiesOnly=yes -o ConnectTimeout=20 -o LogLevel=ERROR -F /dev/null)
# accepted N PATTERN: sshd logged a new "Accepted publickey" line matching PATTERN since line N.
accepted() { tail -n +"$(($1 + 1))" "$W/sshd.log" | grep "Accepted publickey for $USER_NAME" | grep -q "$2"; }
loglines() { wc -l < "$W/sshd.log"; }
fingerprint() { ssh-keygen -lf "$1" | awk '{print $2}'; }

# The token says CKF_LOGIN_REQUIRED: ssh asks for the PIN (here through SSH_ASKPASS; BatchMode
# would forbid asking).
printf '#!/bin/sh\necho "%s"\n' "$PIN" > "$W/askpass"; chmod 700 "$W/askpass"
ASK=(env SSH_ASKPASS="$W/askpass" SSH_ASKPASS_REQUIRE=force DISPLAY=:0)
for k in login-rsa login-ec; do
    kind=RSA; [ "$k" = login-ec ] && kind=ECDSA
    fp=$(fingerprint "$W/$k.pub")
    cp "$W/$k.pub" "$W/authorized_keys"
    n=$(loglines)
    out=$("${ASK[@]}" ssh -o BatchMode=no "${SSH_OPTS[@]}" -I "$MODULE" -i "$W/$k.pub" "$USER_NAME@127.0.0.1" echo "hello from $k" 2>&1)
    expect_eq "ssh -I MODULE logs in with the $kind key" "hello from $k" "$out"
    check "  ... sshd accepted $kind $fp" accepted "$n" "$kind $fp"
done

# Only the RSA key is authorized: an ECDSA-only attempt must be refused (the test can fail).
cp "$W/login-rsa.pub" "$W/authorized_keys"
check "a key that is not authorized is refused" bash -c "! ${ASK[*]} ssh -o BatchMode=no ${SSH_OPTS[*]} -I '$MODULE' -i '$W/login-ec.pub' '$USER_NAME@127.0.0.1' true 2>/dev/null"

# ssh-agent holding the token's keys (ssh-add -s asks for the PIN through SSH_ASKPASS).
eval "$(ssh-agent -s -P "$(dirname "$(readlink -f "$MODULE")")/*" -a "$W/agent.sock")" >/dev/null
AGENT_PID="$SSH_AGENT_PID"
check "ssh-add -s MODULE loads the token's keys into ssh-agent" "${ASK[@]}" \
    ssh-add -s "$(readlink -f "$MODULE")"
listed=$(ssh-add -L 2>&1)
check "  ... ssh-add -L lists the RSA and ECDSA keys" bash -c "grep -q ' login-rsa$' <<< '$listed' && grep -q ' login-ec$' <<< '$listed'"
cat "$W/login-rsa.pub" "$W/login-ec.pub" > "$W/authorized_keys"
for k in login-rsa login-ec; do
    kind=RSA; [ "$k" = login-ec ] && kind=ECDSA
    n=$(loglines)
    out=$(ssh "${SSH_OPTS[@]}" -i "$W/$k.pub" "$USER_NAME@127.0.0.1" echo "agent $k" 2>&1)
    expect_eq "ssh through ssh-agent logs in with the $kind key" "agent $k" "$out"
    check "  ... sshd accepted $kind $(fingerprint "$W/$k.pub")" accepted "$n" "$kind $(fingerprint "$W/$k.pub")"
done
check "ssh-add -e removes the provider's keys" ssh-add -e "$(readlink -f "$MODULE")"
kill "$AGENT_PID" 2>/dev/null; AGENT_PID=""; unset SSH_AUTH_SOCK SSH_AGENT_PID

# A user certificate signed by the CA key in the service; no authorized_keys entry at all.
: > "$W/authorized_keys"
ssh-keygen -q -t ed25519 -N '' -f "$W/alice"
check "user certificate signed by the service's CA key" "${ASK[@]}" ssh-keygen -q -s "$W/user-ca.pub" -D "$MODULE" -I alice@example \
    -n "$USER_NAME" -V -5m:+1h -z 42 "$W/alice.pub"
n=$(loglines)
out=$(ssh "${SSH_OPTS[@]}" -i "$W/alice" -o CertificateFile="$W/alice-cert.pub" "$USER_NAME@127.0.0.1" echo certificate-login 2>&1)
expect_eq "login with the certificate (TrustedUserCAKeys)" "certificate-login" "$out"
check "  ... sshd accepted ED25519-CERT ID alice@example signed by the ECDSA CA $(fingerprint "$W/user-ca.pub")" \
    accepted "$n" "ID alice@example (serial 42) CA ECDSA $(fingerprint "$W/user-ca.pub")"
"${ASK[@]}" ssh-keygen -q -s "$W/user-ca.pub" -D "$MODULE" -I mallory -n "someone-else" -V +1h "$W/alice.pub" 2>/dev/null
check "a certificate for another principal is refused" bash -c "! ssh ${SSH_OPTS[*]} -i '$W/alice' -o CertificateFile='$W/alice-cert.pub' '$USER_NAME@127.0.0.1' true 2>/dev/null"

kill "$SSHD_PID"; wait "$SSHD_PID" 2>/dev/null; SSHD_PID=""
finish
