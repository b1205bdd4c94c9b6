"""Minimal independent client for the VSSM REST API (Python stdlib + `cryptography`).

Connects to 127.0.0.1 but verifies the server certificate as `VSSM`, like the original's clients.
"""
import base64
import http.client
import json
import os
import socket
import ssl


class _Conn(http.client.HTTPSConnection):
    def __init__(self, port, context):
        super().__init__("VSSM", port, context=context, timeout=120)

    def connect(self):
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname="VSSM")


class VSSM:
    def __init__(self, url=None, ca=None, cert=None, key=None, password=None):
        url = url or os.environ["VSSM_URL"]
        self.port = int(url.rsplit(":", 1)[1])
        ctx = ssl.create_default_context(cafile=ca or os.environ["VSSM_CA"])
        ctx.load_cert_chain(cert or os.environ["VSSM_CLIENT_CERT"], key or os.environ["VSSM_CLIENT_KEY"])
        self.ctx = ctx
        self.password = password or os.environ.get("VSSM_ADMIN_PASSWORD", "")
        self.conn = _Conn(self.port, ctx)

    def raw(self, path, body):
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        self.conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
        r = self.conn.getresponse()
        return r.status, r.read().decode()

    def call(self, path, body):
        status, text = self.raw(path, body)
        if status != 200:
            raise RuntimeError(f"{path}: HTTP {status} {text}")
        return json.loads(text)

    def admin(self, path, body):
        body = dict(body)
        body["adminPassword"] = self.password
        return self.call(path, body)


def b64(b):
    return base64.b64encode(b).decode()


def unb64(s):
    return base64.b64decode(s)


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def ok(self, cond, what, detail=""):
        if cond:
            self.passed += 1
            print(f"  ok   {what}")
        else:
            self.failed += 1
            print(f"  FAIL {what} {detail}")

    def finish(self, name):
        print(f"{name}: {self.passed} passed, {self.failed} failed")
        return 0 if self.failed == 0 else 1
