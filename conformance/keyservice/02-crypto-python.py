#!/usr/bin/env python3
"""Every crypto endpoint checked against Python `cryptography`, both directions, plus restoring a
backup built the way a Go VSSM node builds it (Go's PKCS#8 encodings included)."""
import hmac
import hashlib
import json
import os
import sys
import time

from cryptography.hazmat.primitives import hashes, serialization, padding as sympad
from cryptography.hazmat.primitives.asymmetric import ec, rsa, padding, utils
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

sys.path.insert(0, os.path.dirname(__file__))
from vssm_client import VSSM, Checks, b64, unb64  # noqa: E402

v = VSSM()
c = Checks()
pt = b"hello vssm world!"  # 17 bytes


def gen(name, t, size, spec=None):
    body = {"keyName": name, "keyType": t, "keySize": size}
    if spec:
        body["keySpec"] = spec
    v.admin("/REST/v1/admin/generatekey", body)


# --- symmetric: inject known keys so Python can compute the same ciphertexts -------------------
aes_key = os.urandom(32)
v.admin("/REST/v1/admin/injectkey", {"keyName": "aes256", "keyType": "SYMMETRIC", "key": b64(aes_key)})
tdes_key = os.urandom(24)
v.admin("/REST/v1/ext/injectkey", {"keyName": "tdes", "keyType": "SYMMETRIC", "key": b64(tdes_key), "cipher": "3DES"})


def enc(name, alg, data):
    return unb64(v.call("/REST/v1/symmetric/encrypt", {"keyName": name, "algorithm": alg, "input": b64(data)})["output"])


def dec(name, alg, data):
    return unb64(v.call("/REST/v1/symmetric/decrypt", {"keyName": name, "algorithm": alg, "input": b64(data)}).get("output", ""))


def pkcs7(data, bits=128):
    p = sympad.PKCS7(bits).padder()
    return p.update(data) + p.finalize()


out = enc("aes256", "AES/GCM/NoPadding", pt)
c.ok(len(out) == 45 and AESGCM(aes_key).decrypt(out[:12], out[12:], None) == pt, "AES-GCM output nonce||ct||tag decrypts with cryptography")
nonce = os.urandom(12)
c.ok(dec("aes256", "AES/GCM/NoPadding", nonce + AESGCM(aes_key).encrypt(nonce, pt, None)) == pt, "cryptography AES-GCM ciphertext decrypts on the service")
out = enc("aes256", "AES/CBC/PKCS5Padding", pt)
d = Cipher(algorithms.AES(aes_key), modes.CBC(out[:16])).decryptor()
c.ok(len(out) == 48 and d.update(out[16:]) + d.finalize() == pkcs7(pt), "AES-CBC IV||ct with PKCS#7 padding decrypts with cryptography")
iv = os.urandom(16)
e = Cipher(algorithms.AES(aes_key), modes.CTR(iv)).encryptor()
c.ok(dec("aes256", "AES/CTR/NoPadding", iv + e.update(pt) + e.finalize()) == pt, "cryptography AES-CTR (full-block counter) decrypts on the service")
out = enc("aes256", "AES/CTR/NoPadding", pt)
d = Cipher(algorithms.AES(aes_key), modes.CTR(out[:16])).decryptor()
c.ok(d.update(out[16:]) + d.finalize() == pt, "AES-CTR output decrypts with cryptography")
block = os.urandom(32)
e = Cipher(algorithms.AES(aes_key), modes.ECB()).encryptor()
c.ok(enc("aes256", "AES/ECB/NoPadding", block) == e.update(block) + e.finalize(), "AES-ECB matches cryptography byte for byte")
try:
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # older cryptography
    TripleDES = algorithms.TripleDES
out = enc("tdes", "3DES/CBC/PKCS5Padding", pt)
d = Cipher(TripleDES(tdes_key), modes.CBC(out[:8])).decryptor()
c.ok(len(out) == 32 and d.update(out[8:]) + d.finalize() == pkcs7(pt, 64), "3DES-CBC (8-byte IV) decrypts with cryptography")

# Extension: caller IV, AAD and a 12-byte tag for GCM.
iv12 = os.urandom(12)
aad = b"header"
r = v.call("/REST/v1/ext/symmetric/encrypt", {"keyName": "aes256", "algorithm": "AES/GCM/NoPadding", "input": b64(pt),
                                              "iv": b64(iv12), "aad": b64(aad), "tagLength": 16})
c.ok(unb64(r["output"]) == AESGCM(aes_key).encrypt(iv12, pt, aad), "ext GCM with caller IV and AAD matches cryptography")
ct = AESGCM(aes_key).encrypt(iv12, pt, aad)
r = v.call("/REST/v1/ext/symmetric/decrypt", {"keyName": "aes256", "algorithm": "AES/GCM/NoPadding", "input": b64(ct),
                                              "iv": b64(iv12), "aad": b64(aad)})
c.ok(unb64(r["output"]) == pt, "ext GCM decrypt with AAD")
iv16 = os.urandom(16)
r = v.call("/REST/v1/ext/symmetric/encrypt", {"keyName": "aes256", "algorithm": "AES/CBC/NoPadding", "input": b64(block), "iv": b64(iv16)})
e = Cipher(algorithms.AES(aes_key), modes.CBC(iv16)).encryptor()
c.ok(unb64(r["output"]) == e.update(block) + e.finalize(), "ext CBC with caller IV has no IV prefix and matches")

# --- HMAC -----------------------------------------------------------------------------------------
mac_key = os.urandom(32)
v.admin("/REST/v1/admin/injectkey", {"keyName": "mac", "keyType": "MAC", "key": b64(mac_key)})
for alg, h in [("SHA1", hashlib.sha1), ("SHA256", hashlib.sha256), ("SHA384", hashlib.sha384), ("SHA512", hashlib.sha512)]:
    r = v.call("/REST/v1/hmac/create", {"keyName": "mac", "algorithm": alg, "input": b64(pt)})
    c.ok(unb64(r["output"]) == hmac.new(mac_key, pt, h).digest(), f"HMAC-{alg} matches Python hmac")
    r = v.call("/REST/v1/hmac/verify", {"keyName": "mac", "algorithm": alg, "input": b64(pt), "hmac": b64(hmac.new(mac_key, pt, h).digest())})
    c.ok(r == {"valid": True}, f"HMAC-{alg} verify of a Python HMAC")

# --- asymmetric -----------------------------------------------------------------------------------
gen("rsa", "ASYMMETRIC", 2048, "RSA")
gen("p256", "ASYMMETRIC", 256, "EC")
gen("p521", "ASYMMETRIC", 521, "EC")
keys = {k["name"]: serialization.load_der_public_key(unb64(k["publicKey"]))
        for k in v.admin("/REST/v1/admin/listkeys", {})["asymmetricKey"]}
rsa_pub = keys["rsa"]
for hname, h in [("SHA1", hashes.SHA1()), ("SHA256", hashes.SHA256())]:
    ct = rsa_pub.encrypt(pt, padding.OAEP(mgf=padding.MGF1(h), algorithm=h, label=None))
    r = v.call("/REST/v1/asymmetric/decrypt", {"keyName": "rsa", "algorithm": f"RSA-OAEP/{hname}", "input": b64(ct)})
    c.ok(unb64(r["output"]) == pt, f"cryptography RSA-OAEP/{hname} ciphertext decrypts")
ct = rsa_pub.encrypt(pt, padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA256(), label=b"lbl"))
r = v.call("/REST/v1/ext/decrypt", {"keyName": "rsa", "algorithm": "RSA-OAEP", "hash": "SHA256", "mgf1Hash": "SHA1", "label": b64(b"lbl"), "input": b64(ct)})
c.ok(unb64(r["output"]) == pt, "ext OAEP with SHA-256, MGF1-SHA1 and a label (Java's default) decrypts")
for name, curve_hash in [("p256", hashes.SHA256()), ("p521", hashes.SHA512())]:
    r = v.call("/REST/v1/ext/sign", {"keyName": name, "algorithm": f"{curve_hash.name.upper()}withECDSA", "input": b64(pt)})
    try:
        keys[name].verify(unb64(r["output"]), pt, ec.ECDSA(curve_hash))
        c.ok(True, f"{name} {curve_hash.name} ECDSA signature verifies with cryptography")
    except Exception as ex:  # noqa: BLE001
        c.ok(False, f"{name} ECDSA verify", ex)
digest = hashlib.sha256(pt).digest()
digest_info = bytes.fromhex("3031300d060960864801650304020105000420") + digest
r = v.call("/REST/v1/ext/sign", {"keyName": "rsa", "algorithm": "NONEwithRSA", "hashed": b64(digest_info)})
try:
    rsa_pub.verify(unb64(r["output"]), digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    c.ok(True, "ext raw PKCS#1 v1.5 over a DigestInfo verifies as SHA256withRSA")
except Exception as ex:  # noqa: BLE001
    c.ok(False, "raw PKCS#1", ex)
r = v.call("/REST/v1/ext/sign", {"keyName": "rsa", "algorithm": "SHA384withRSA/PSS", "input": b64(pt), "saltLength": 20})
try:
    rsa_pub.verify(unb64(r["output"]), pt, padding.PSS(padding.MGF1(hashes.SHA384()), 20), hashes.SHA384())
    c.ok(True, "ext PSS SHA-384 salt 20 verifies with cryptography")
except Exception as ex:  # noqa: BLE001
    c.ok(False, "PSS", ex)

# --- a backup as a Go node writes it restores here -----------------------------------------------
# Go's rsa2pkcs8 omits the NULL algorithm parameter; its EC PKCS#8 has version 1 and both OIDs.
def der_len(n):
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def tlv(tag, body):
    return bytes([tag]) + der_len(len(body)) + body


go_rsa = rsa.generate_private_key(65537, 2048)
pkcs1 = go_rsa.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())
go_rsa_pkcs8 = tlv(0x30, tlv(0x02, b"\x00") + tlv(0x30, tlv(0x06, bytes.fromhex("2a864886f70d010101"))) + tlv(0x04, pkcs1))
go_ec = ec.generate_private_key(ec.SECP384R1())
sec1 = go_ec.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())
go_ec_pkcs8 = tlv(0x30, tlv(0x02, b"\x01") + tlv(0x30, tlv(0x06, bytes.fromhex("2a8648ce3d0201")) + tlv(0x06, bytes.fromhex("2b81040022"))) + tlv(0x04, sec1))
now = int(time.time() * 1000)
state = {
    "symmetricKey": [{"name": "go_aes", "createdAt": str(now), "key": b64(bytes(range(16)))}],
    "asymmetricKey": [{"name": "go_rsa", "createdAt": str(now), "keyType": "RSA", "key": b64(go_rsa_pkcs8)},
                      {"name": "go_ec", "createdAt": str(now), "keyType": "EC", "key": b64(go_ec_pkcs8)}],
    "macKey": [],
}
rpc_cert = open(os.environ["VSSM_CA"], "rb").read()
from cryptography import x509  # noqa: E402

rpc_pub = x509.load_pem_x509_certificate(rpc_cert).public_key()
data_key = os.urandom(32)
n12 = os.urandom(12)
blob = {
    "encryptionKey": b64(rpc_pub.encrypt(data_key, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))),
    "version": 1,
    "timestamp": str(now),
    "encryptedState": b64(n12 + AESGCM(data_key).encrypt(n12, json.dumps(state, separators=(",", ":")).encode(), None)),
}
v.admin("/REST/v1/admin/restorebackup", {"backup": blob})
r = v.call("/REST/v1/asymmetric/sign", {"keyName": "go_rsa", "algorithm": "SHA256withRSA", "input": b64(pt)})
try:
    go_rsa.public_key().verify(unb64(r["output"]), pt, padding.PKCS1v15(), hashes.SHA256())
    c.ok(True, "Go-format backup: RSA key (PKCS#8 without NULL parameter) restored and signs")
except Exception as ex:  # noqa: BLE001
    c.ok(False, "Go RSA restore", ex)
r = v.call("/REST/v1/asymmetric/sign", {"keyName": "go_ec", "algorithm": "SHA256withECDSA", "input": b64(pt)})
try:
    go_ec.public_key().verify(unb64(r["output"]), pt, ec.ECDSA(hashes.SHA256()))
    c.ok(True, "Go-format backup: EC key (version-1 PKCS#8) restored and signs")
except Exception as ex:  # noqa: BLE001
    c.ok(False, "Go EC restore", ex)
e = Cipher(algorithms.AES(bytes(range(16))), modes.ECB()).encryptor()
c.ok(enc("go_aes", "AES/ECB/NoPadding", block) == e.update(block) + e.finalize(), "Go-format backup: AES key restored")

# And our backup decrypts the way a Go node would read it.
ours = v.admin("/REST/v1/admin/generatebackup", {})["backup"]
rpc_key = serialization.load_pem_private_key(open(os.path.join(os.environ["VSSM_DEV_DIR"], "rpc-key.pem"), "rb").read(), None)
dk = rpc_key.decrypt(unb64(ours["encryptionKey"]), padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
es = unb64(ours["encryptedState"])
plain = json.loads(AESGCM(dk).decrypt(es[:12], es[12:], None))
names = sorted(k["name"] for k in plain["asymmetricKey"])
c.ok(ours["version"] == "1" and names == ["go_ec", "go_rsa", "p256", "p521", "rsa"], "our backup decrypts with cryptography into the original state format", names)
c.ok(set(plain) <= {"symmetricKey", "asymmetricKey", "macKey"}, "backup plaintext has only fields a Go node accepts")
for k in plain["asymmetricKey"]:
    try:
        serialization.load_der_private_key(unb64(k["key"]), None)
    except Exception:  # noqa: BLE001
        if k["name"] not in ("go_rsa", "go_ec"):  # echoed byte-for-byte like the original
            c.ok(False, f"backup PKCS#8 of {k['name']} loads in cryptography")
sys.exit(c.finish("02-crypto-python.py"))
