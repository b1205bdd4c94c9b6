"""PyKCS11 against the module: slots and token, find keys, sign/verify, encrypt/decrypt (AES-GCM).

Runs after python_pkcs11_check.py in the same token and uses what it left: the EC key `py-ec`
(public key in OUTDIR/py-ec.pub.pem) and the AES key `py-aes` with a CBC ciphertext in
OUTDIR/cbc.bin. Results are checked with `cryptography` where the key material allows it.
Usage: python3 pykcs11_check.py MODULE TOKEN_LABEL PIN OUTDIR
"""
import hashlib
import hmac
import os
import subprocess
import sys

from checks import check, done

import PyKCS11
from PyKCS11 import LowLevel
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicNumbers

module, token_label, pin, outdir = sys.argv[1:5]


lib = PyKCS11.PyKCS11Lib()
lib.load(module)
info = lib.getInfo()
check(f"PyKCS11 loads the module (cryptoki {info.cryptokiVersion[0]}.{info.cryptokiVersion[1]})",
      info.manufacturerID.strip() != "")
slots = lib.getSlotList(tokenPresent=True)
slot = next((s for s in slots if lib.getTokenInfo(s).label.strip() == token_label), None)
check(f"finds the token {token_label!r} among {len(slots)} slot(s)", slot is not None)
if slot is None:
    sys.exit(1)
mechs = lib.getMechanismList(slot)
check("mechanism list has CKM_AES_GCM, CKM_ECDSA and CKM_SHA256_RSA_PKCS_PSS",
      all(m in mechs for m in ("CKM_AES_GCM", "CKM_ECDSA", "CKM_SHA256_RSA_PKCS_PSS")))

s = lib.openSession(slot, PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
s.login(pin)


def verifies(what, verify, *args):
    """check() that cryptography's verify(*args) accepts the signature."""
    try:
        verify(*args)
        check(what, True)
    except InvalidSignature:
        check(what, False)


def one(template):
    objs = s.findObjects(template)
    return objs[0] if len(objs) == 1 else None


rsa_priv = one([(PyKCS11.CKA_CLASS, PyKCS11.CKO_PRIVATE_KEY), (PyKCS11.CKA_LABEL, "py-rsa")])
rsa_pub = one([(PyKCS11.CKA_CLASS, PyKCS11.CKO_PUBLIC_KEY), (PyKCS11.CKA_LABEL, "py-rsa")])
check("finds the RSA key pair by label", rsa_priv is not None and rsa_pub is not None)
n, e = s.getAttributeValue(rsa_pub, [PyKCS11.CKA_MODULUS, PyKCS11.CKA_PUBLIC_EXPONENT])
crsa = RSAPublicNumbers(int.from_bytes(bytes(e), "big"), int.from_bytes(bytes(n), "big")).public_key()

data = b"PyKCS11 signs this"
pss = PyKCS11.RSA_PSS_Mechanism(PyKCS11.CKM_SHA256_RSA_PKCS_PSS, PyKCS11.CKM_SHA256, PyKCS11.CKG_MGF1_SHA256, 32)
sig = bytes(s.sign(rsa_priv, data, pss))
verifies("RSA-PSS (SHA-256) signature verifies with cryptography", crsa.verify, sig, data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
check("the token verifies the PSS signature", s.verify(rsa_pub, data, sig, pss))

ct = crsa.encrypt(b"pkcs1 v1.5 secret", padding.PKCS1v15())
pt = bytes(s.decrypt(rsa_priv, ct, PyKCS11.Mechanism(PyKCS11.CKM_RSA_PKCS)))
check("RSA PKCS#1 v1.5: the token decrypts what cryptography encrypted", pt == b"pkcs1 v1.5 secret")
oaep = PyKCS11.RSAOAEPMechanism(PyKCS11.CKM_SHA256, PyKCS11.CKG_MGF1_SHA256)
ct = bytes(s.encrypt(rsa_pub, b"oaep sha-256", oaep))
pt = bytes(s.decrypt(rsa_priv, ct, oaep))
check("RSA-OAEP (SHA-256): encrypt with the public object, decrypt with the private one", pt == b"oaep sha-256")

# SHA-3 (the hash rows, issue 21): hash-and-sign, PSS, OAEP, ECDSA, the digest and HMAC, each
# checked against cryptography / hashlib.
check("mechanism list has the SHA-3 digests, HMACs and hash-and-sign mechanisms",
      all(m in mechs for m in ("CKM_SHA3_256", "CKM_SHA3_512_HMAC", "CKM_SHA3_224_RSA_PKCS", "CKM_SHA3_384_RSA_PKCS_PSS",
                               "CKM_ECDSA_SHA3_256")))
sig = bytes(s.sign(rsa_priv, data, PyKCS11.Mechanism(PyKCS11.CKM_SHA3_256_RSA_PKCS)))
verifies("CKM_SHA3_256_RSA_PKCS verifies with cryptography", crsa.verify, sig, data, padding.PKCS1v15(), hashes.SHA3_256())
pss3 = PyKCS11.RSA_PSS_Mechanism(PyKCS11.CKM_SHA3_384_RSA_PKCS_PSS, PyKCS11.CKM_SHA3_384, PyKCS11.CKG_MGF1_SHA3_384, 48)
sig = bytes(s.sign(rsa_priv, data, pss3))
verifies("CKM_SHA3_384_RSA_PKCS_PSS verifies with cryptography", crsa.verify, sig, data, padding.PSS(mgf=padding.MGF1(hashes.SHA3_384()), salt_length=48), hashes.SHA3_384())
# cryptography refuses OAEP with SHA-3; the openssl command line makes the ciphertext instead.
pub_pem = os.path.join(outdir, "py-rsa.pub.pem")
with open(pub_pem, "wb") as f:
    f.write(crsa.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
ct = subprocess.run(["openssl", "pkeyutl", "-encrypt", "-pubin", "-inkey", pub_pem, "-pkeyopt", "rsa_padding_mode:oaep",
                     "-pkeyopt", "rsa_oaep_md:sha3-256", "-pkeyopt", "rsa_mgf1_md:sha3-256"],
                    input=b"oaep sha3", capture_output=True, check=True).stdout
pt = bytes(s.decrypt(rsa_priv, ct, PyKCS11.RSAOAEPMechanism(PyKCS11.CKM_SHA3_256, PyKCS11.CKG_MGF1_SHA3_256)))
check("RSA-OAEP (SHA3-256): the token decrypts what openssl pkeyutl encrypted", pt == b"oaep sha3")
check("CKM_SHA3_512 digest equals hashlib's",
      bytes(s.digest(data, PyKCS11.Mechanism(PyKCS11.CKM_SHA3_512))) == hashlib.sha3_512(data).digest())
mac_value = os.urandom(32)
mac_key = s.createObject([(PyKCS11.CKA_CLASS, PyKCS11.CKO_SECRET_KEY), (PyKCS11.CKA_KEY_TYPE, PyKCS11.CKK_GENERIC_SECRET),
                          (PyKCS11.CKA_TOKEN, False), (PyKCS11.CKA_SIGN, True), (PyKCS11.CKA_VERIFY, True),
                          (PyKCS11.CKA_VALUE, mac_value), (PyKCS11.CKA_LABEL, "py-sha3-mac")])
mac = bytes(s.sign(mac_key, data, PyKCS11.Mechanism(PyKCS11.CKM_SHA3_256_HMAC)))
check("CKM_SHA3_256_HMAC equals Python's hmac", mac == hmac.new(mac_value, data, "sha3_256").digest())
check("the token verifies its SHA3-256 HMAC", s.verify(mac_key, data, mac, PyKCS11.Mechanism(PyKCS11.CKM_SHA3_256_HMAC)))
s.destroyObject(mac_key)

# The EC key python-pkcs11 generated; ECDSA over a digest computed here (as TLS stacks do).
ec_priv = one([(PyKCS11.CKA_CLASS, PyKCS11.CKO_PRIVATE_KEY), (PyKCS11.CKA_LABEL, "py-ec")])
check("finds the EC key python-pkcs11 generated", ec_priv is not None)
cec = serialization.load_pem_public_key(open(os.path.join(outdir, "py-ec.pub.pem"), "rb").read())
h = hashes.Hash(hashes.SHA384())
h.update(data)
digest = h.finalize()
sig = bytes(s.sign(ec_priv, digest, PyKCS11.Mechanism(PyKCS11.CKM_ECDSA)))
der = utils.encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
verifies("CKM_ECDSA over a SHA-384 digest verifies with cryptography", cec.verify, der, digest, ec.ECDSA(utils.Prehashed(hashes.SHA384())))

sig = bytes(s.sign(ec_priv, data, PyKCS11.Mechanism(PyKCS11.CKM_ECDSA_SHA3_256)))
half = len(sig) // 2
der = utils.encode_dss_signature(int.from_bytes(sig[:half], "big"), int.from_bytes(sig[half:], "big"))
verifies("CKM_ECDSA_SHA3_256 verifies with cryptography", cec.verify, der, data, ec.ECDSA(hashes.SHA3_256()))

# The ML-DSA-65 key python-pkcs11 generated: its CKA_PUBLIC_KEY_INFO is the RFC 9881
# SubjectPublicKeyInfo cryptography reads, holding the same key as CKA_VALUE.
from cryptography.hazmat.primitives.asymmetric import mldsa
pq = one([(PyKCS11.CKA_CLASS, PyKCS11.CKO_PUBLIC_KEY), (PyKCS11.CKA_LABEL, "py-mldsa-2")])
check("finds the ML-DSA-65 public key python-pkcs11 generated", pq is not None)
spki, raw = s.getAttributeValue(pq, [0x129, PyKCS11.CKA_VALUE])
pq_key = serialization.load_der_public_key(bytes(spki))
check("cryptography reads its CKA_PUBLIC_KEY_INFO as an ML-DSA-65 key, equal to CKA_VALUE",
      isinstance(pq_key, mldsa.MLDSA65PublicKey)
      and pq_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw) == bytes(raw))

from cryptography.hazmat.primitives.asymmetric import mlkem
kem = one([(PyKCS11.CKA_CLASS, PyKCS11.CKO_PUBLIC_KEY), (PyKCS11.CKA_LABEL, "py-mlkem-3")])
spki, raw = s.getAttributeValue(kem, [0x129, PyKCS11.CKA_VALUE])
kem_key = serialization.load_der_public_key(bytes(spki))
check("cryptography reads the ML-KEM-1024 key's CKA_PUBLIC_KEY_INFO, equal to CKA_VALUE",
      isinstance(kem_key, mlkem.MLKEM1024PublicKey)
      and kem_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw) == bytes(raw))

# The AES key python-pkcs11 generated: decrypt its CBC ciphertext (cross-library), then AES-GCM.
aes = one([(PyKCS11.CKA_CLASS, PyKCS11.CKO_SECRET_KEY), (PyKCS11.CKA_LABEL, "py-aes")])
check("finds the AES key python-pkcs11 generated", aes is not None)
blob = open(os.path.join(outdir, "cbc.bin"), "rb").read()
pt = bytes(s.decrypt(aes, blob[16:], PyKCS11.Mechanism(PyKCS11.CKM_AES_CBC_PAD, blob[:16])))
check("decrypts python-pkcs11's AES-CBC-PAD ciphertext", pt == b"cross-library check")
iv, aad = os.urandom(12), b"associated"
gcm = PyKCS11.AES_GCM_Mechanism(iv, aad, 128)
ct = bytes(s.encrypt(aes, b"gcm via PyKCS11", gcm))
check("AES-GCM encrypt gives plaintext + 16-byte tag", len(ct) == len(b"gcm via PyKCS11") + 16)
pt = bytes(s.decrypt(aes, ct, PyKCS11.AES_GCM_Mechanism(iv, aad, 128)))
check("AES-GCM decrypt round trip", pt == b"gcm via PyKCS11")
try:
    s.decrypt(aes, ct, PyKCS11.AES_GCM_Mechanism(iv, b"other aad", 128))
    check("AES-GCM with other AAD is refused", False)
except PyKCS11.PyKCS11Error as err:
    check(f"AES-GCM with other AAD is refused ({PyKCS11.CKR[err.value]})", err.value == PyKCS11.CKR_ENCRYPTED_DATA_INVALID)

rnd = bytes(s.generateRandom(32))
check("C_GenerateRandom gives 32 bytes", len(rnd) == 32 and rnd != bytes(32))
s.logout()
s.closeSession()
done("PyKCS11")
