#!/usr/bin/env bash
# nginx (issue 4): TLS with the private keys in the service through the OpenSSL libp11 engine,
# several worker processes (forked after the master loaded the keys). curl completes TLS 1.2 and
# TLS 1.3 handshakes with an RSA key (TLS 1.3 signs with RSA-PSS) and an ECDSA key; openssl
# s_client reports the signature type; the access log shows more than one worker served.
set -u
source "$(dirname "$0")/../lib.sh"
source "$CONFORMANCE_DIR/dev-env.sh" || exit 1
W="$VSSM_DEV_DIR/work"; N="$W/nginx"; mkdir -p "$N/logs" "$N/tmp"
NGINX_PID=""
cleanup() { if [ -n "$NGINX_PID" ]; then kill "$NGINX_PID" 2>/dev/null; wait "$NGINX_PID" 2>/dev/null; fi; vssm_dev_stop; }
trap cleanup EXIT
NGINX=/usr/sbin/nginx
[ -x "$NGINX" ] || { fail "nginx is not installed (apt-get install nginx-light; make check installs it)"; finish; exit 1; }

engine_conf "$W/openssl.cnf"
"$VSSM_BIN" admin generate-key web-rsa --type ASYMMETRIC --spec RSA --size 2048 >/dev/null
"$VSSM_BIN" admin generate-key web-ec --type ASYMMETRIC --spec EC --size 256 >/dev/null
for k in web-rsa web-ec; do
    check "certificate for $k made through the engine" env OPENSSL_CONF="$W/openssl.cnf" openssl req -new -x509 -engine pkcs11 \
        -keyform engine -key "pkcs11:object=$k;type=private" -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost" \
        -days 2 -sha256 -out "$W/$k.crt"
done
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RSA_PORT=$(free_port); EC_PORT=$(free_port)
# Workers run as an unprivileged user with nginx's cleared environment: the module reuses the
# configuration (and client certificate and key) the master loaded, so they need neither.
user_line=""; [ "$(id -u)" -eq 0 ] && user_line="user nobody nogroup;"
cat > "$N/nginx.conf" <<CONF
$user_line
worker_processes 3;
daemon off;
master_process on;
pid $N/nginx.pid;
error_log $N/logs/error.log info;
ssl_engine pkcs11;
events { worker_connections 64; }
http {
    access_log $N/logs/access.log combined_pid;
    log_format combined_pid '\$pid \$ssl_protocol \$ssl_cipher \$status';
    client_body_temp_path $N/tmp; proxy_temp_path $N/tmp; fastcgi_temp_path $N/tmp;
    uwsgi_temp_path $N/tmp; scgi_temp_path $N/tmp;
    ssl_protocols TLSv1.2 TLSv1.3;
    server {
        listen 127.0.0.1:$RSA_PORT ssl;
        ssl_certificate $W/web-rsa.crt;
        ssl_certificate_key "engine:pkcs11:pkcs11:object=web-rsa;type=private";
        location / { return 200 "rsa \$ssl_protocol\n"; }
    }
    server {
        listen 127.0.0.1:$EC_PORT ssl;
        ssl_certificate $W/web-ec.crt;
        ssl_certificate_key "engine:pkcs11:pkcs11:object=web-ec;type=private";
        location / { return 200 "ec \$ssl_protocol\n"; }
    }
}
CONF
# access_log must come after log_format in nginx 1.22.
python3 - "$N/nginx.conf" <<'PY'
import sys
p = sys.argv[1]; s = open(p).read().splitlines()
i = next(n for n, l in enumerate(s) if "access_log" in l); j = next(n for n, l in enumerate(s) if "log_format" in l)
s[i], s[j] = s[j], s[i]; open(p, "w").write("\n".join(s) + "\n")
PY
check "nginx -t accepts the configuration (engine keys)" env OPENSSL_CONF="$W/openssl.cnf" "$NGINX" -t -p "$N" -c "$N/nginx.conf"
OPENSSL_CONF="$W/openssl.cnf" "$NGINX" -p "$N" -c "$N/nginx.conf" 2>>"$N/logs/stderr.log" &
NGINX_PID=$!
for _ in $(seq 1 100); do
    curl -s -o /dev/null --max-time 1 -k "https://127.0.0.1:$EC_PORT/" && break
    kill -0 "$NGINX_PID" 2>/dev/null || break
    sleep 0.2
done
workers=$(pgrep -P "$NGINX_PID" | wc -l)
expect_eq "nginx runs 3 worker processes" "3" "$workers"
if [ "$(id -u)" -eq 0 ]; then
    expect_eq "  ... as user nobody" "nobody" "$(ps -o user= --ppid "$NGINX_PID" | sort -u | tr -d ' ')"
fi

# curl: both TLS versions, both keys; the server certificate verified against itself (the CA).
for spec in "rsa:$RSA_PORT:web-rsa" "ec:$EC_PORT:web-ec"; do
    IFS=: read -r kind port key <<< "$spec"
    for v in 1.2 1.3; do
        out=$(curl -sS --max-time 20 --cacert "$W/$key.crt" --resolve "localhost:$port:127.0.0.1" \
            --tlsv$v --tls-max $v "https://localhost:$port/" 2>&1)
        expect_eq "curl TLS $v handshake with the $kind key (certificate verified)" "$kind TLSv$v" "$out"
    done
done

# openssl s_client: which signature the server made with the service's key.
sigtype() { # port, extra s_client args...
    local port=$1; shift
    echo Q | openssl s_client -connect "127.0.0.1:$port" -servername localhost "$@" 2>&1 | grep -E "^(Peer signature type|Protocol|Verification)" | tr '\n' ' '
}
out=$(sigtype "$RSA_PORT" -tls1_3 -CAfile "$W/web-rsa.crt")
check "TLS 1.3 with the RSA key: RSA-PSS signature, chain verified" bash -c "grep -q 'Peer signature type: RSA-PSS' <<< '$out' && grep -q 'Verification: OK' <<< '$out'"
out=$(sigtype "$RSA_PORT" -tls1_2 -sigalgs "RSA+SHA256" -CAfile "$W/web-rsa.crt")
check "TLS 1.2 with the RSA key and PKCS#1 v1.5 sigalgs: RSA signature" grep -q "Peer signature type: RSA " <<< "$out"
out=$(sigtype "$RSA_PORT" -tls1_2 -sigalgs "RSA-PSS+SHA384" -CAfile "$W/web-rsa.crt")
check "TLS 1.2 with the RSA key and RSA-PSS+SHA384 sigalgs" grep -q "Peer signature type: RSA-PSS" <<< "$out"
out=$(sigtype "$EC_PORT" -tls1_3 -CAfile "$W/web-ec.crt")
check "TLS 1.3 with the EC key: ECDSA signature, chain verified" bash -c "grep -q 'Peer signature type: ECDSA' <<< '$out' && grep -q 'Verification: OK' <<< '$out'"

# Many parallel handshakes, spread over the workers.
seq 1 30 | xargs -P 10 -I{} curl -s -o /dev/null -w '%{http_code}\n' --max-time 30 --cacert "$W/web-ec.crt" \
    --resolve "localhost:$EC_PORT:127.0.0.1" -H "Connection: close" "https://localhost:$EC_PORT/" > "$W/codes"
expect_eq "30 parallel HTTPS requests all answered 200" "30" "$(grep -c '^200$' "$W/codes")"
served=$(awk '{print $1}' "$N/logs/access.log" | sort -u | wc -l)
check "more than one worker process served handshakes ($served)" test "$served" -ge 2
check "no worker crashed or logged an engine error" bash -c "! grep -Eq 'signal [0-9]+|exited on signal|PKCS11_|engine' '$N/logs/error.log'"

kill -QUIT "$NGINX_PID"; wait "$NGINX_PID" 2>/dev/null; rc=$?; NGINX_PID=""
expect_eq "nginx shuts down cleanly" "0" "$rc"
finish
