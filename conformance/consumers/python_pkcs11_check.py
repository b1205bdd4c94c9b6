"""python-pkcs11 against the module: open the token, find keys, sign/verify, encrypt/decrypt.

Every result that can be checked outside the token is checked with `cryptography`.
Usage: python3 python_pkcs11_check.py MODULE TOKEN_LABEL PIN OUTDIR
Prints `ok`/`FAIL` lines like the shell scenarios; exits non-zero on any failure.
"""
import os
import sys

from checks import check, done

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.mechanisms import GCMParams
from pkcs11.util.ec import encode_named_curve_parameters
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

module, token_label, pin, outdir = sys.argv[1:5]


def raises(fn, exc):
    try:
        fn()
    except exc:
        return True
    return False


lib = pkcs11.lib(module)
token = lib.get_token(token_label=token_label)
check(f"python-pkcs11 finds the token {token.label!r} ({lib.manufacturer_id.strip()})", token.label == token_label)

with token.open(user_pin=pin, rw=True) as s:
    # Keys made by the admin CLI are found by label.
    rsa_priv = s.get_key(ObjectClass.PRIVATE_KEY, KeyType.RSA, label="py-rsa")
    rsa_pub = s.get_key(ObjectClass.PUBLIC_KEY, KeyType.RSA, label="py-rsa")
    check("finds the RSA key pair by label", rsa_priv[Attribute.ID] == rsa_pub[Attribute.ID])
    check("the private key is sensitive and not extractable",
          rsa_priv[Attribute.SENSITIVE] and not rsa_priv[Attribute.EXTRACTABLE])
    modulus = rsa_pub[Attribute.MODULUS]
    exponent = rsa_pub[Attribute.PUBLIC_EXPONENT]
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicNumbers
    crsa = RSAPublicNumbers(int.from_bytes(exponent, "big"), int.from_bytes(modulus, "big")).public_key()
    check("RSA public key is 2048 bits", crsa.key_size == 2048)

    data = b"python-pkcs11 signs this" * 10
    sig = rsa_priv.sign(data, mechanism=Mechanism.SHA256_RSA_PKCS)
    try:
        crsa.verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
        check("SHA256_RSA_PKCS signature verifies with cryptography", True)
    except InvalidSignature:
        check("SHA256_RSA_PKCS signature verifies with cryptography", False)
    check("the token verifies its own signature", rsa_pub.verify(data, sig, mechanism=Mechanism.SHA256_RSA_PKCS))
    check("the token rejects a signature over other data",
          not rsa_pub.verify(data + b"!", sig, mechanism=Mechanism.SHA256_RSA_PKCS))

    ct = crsa.encrypt(b"secret for the token", padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None))
    pt = rsa_priv.decrypt(ct, mechanism=Mechanism.RSA_PKCS_OAEP)
    check("RSA-OAEP: the token decrypts what cryptography encrypted", pt == b"secret for the token")

    # EC key generated through python-pkcs11.
    params = s.create_domain_parameters(KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True)
    ec_pub, ec_priv = params.generate_keypair(store=True, label="py-ec", id=b"\x70\x79")
    check("generates an EC P-256 key pair in the service", ec_priv[Attribute.LABEL] == "py-ec")
    found = list(s.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.ID: b"\x70\x79"}))
    check("finds the new private key by CKA_ID", len(found) == 1)
    point = ec_pub[Attribute.EC_POINT]
    # EC_POINT is a DER OCTET STRING around the uncompressed point.
    raw_point = point[2:] if point[0] == 0x04 and point[1] == len(point) - 2 else point
    cec = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw_point)
    sig = ec_priv.sign(data, mechanism=Mechanism.ECDSA_SHA256)
    check("ECDSA_SHA256 signature is 64 bytes (r||s)", len(sig) == 64)
    der = utils.encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    try:
        cec.verify(der, data, ec.ECDSA(hashes.SHA256()))
        check("ECDSA signature verifies with cryptography", True)
    except InvalidSignature:
        check("ECDSA signature verifies with cryptography", False)

    # AES-GCM with a key whose bytes the test knows (imported), so cryptography can check it.
    key_bytes = os.urandom(32)
    aes = s.create_object({
        Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES, Attribute.TOKEN: True,
        Attribute.LABEL: "py-aes-imported", Attribute.VALUE: key_bytes,
        Attribute.ENCRYPT: True, Attribute.DECRYPT: True,
    })
    check("imports an AES-256 key (C_CreateObject)", aes[Attribute.LABEL] == "py-aes-imported")
    aes = s.get_key(ObjectClass.SECRET_KEY, KeyType.AES, label="py-aes-imported")
    nonce, aad = os.urandom(12), b"header"
    plaintext = b"AES-GCM through PKCS#11" * 3
    ct = aes.encrypt(plaintext, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(nonce, aad, 128))
    check("AES-GCM ciphertext is plaintext + 16-byte tag", len(ct) == len(plaintext) + 16)
    try:
        check("cryptography decrypts the token's AES-GCM ciphertext", AESGCM(key_bytes).decrypt(nonce, ct, aad) == plaintext)
    except InvalidTag:
        check("cryptography decrypts the token's AES-GCM ciphertext", False)
    ct2 = AESGCM(key_bytes).encrypt(nonce, b"from cryptography", aad)
    check("the token decrypts cryptography's AES-GCM ciphertext",
          aes.decrypt(ct2, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(nonce, aad, 128)) == b"from cryptography")
    bad = bytes([ct2[0] ^ 1]) + ct2[1:]
    check("a tampered AES-GCM ciphertext is refused",
          raises(lambda: aes.decrypt(bad, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(nonce, aad, 128)),
                 (pkcs11.exceptions.EncryptedDataInvalid, pkcs11.exceptions.PKCS11Error)))

    # ML-DSA (PKCS#11 3.2, issue 22): token keys generated in the service; cryptography reads
    # the public key the token shows and checks every signature, with and without a context.
    import ctypes
    import struct
    from cryptography.hazmat.primitives.asymmetric import mldsa
    from pkcs11.mechanisms import MLDSAParameterSet
    msg = b"a post-quantum signature through PKCS#11"
    for pset, size in ((MLDSAParameterSet.ML_DSA_65, 3309), (MLDSAParameterSet.ML_DSA_87, 4627)):
        name = f"py-mldsa-{int(pset)}"
        pub, priv = s.generate_keypair(KeyType.ML_DSA, public_template={Attribute.PARAMETER_SET: pset}, store=True, label=name)
        check(f"{name}: generated with CKA_PARAMETER_SET {int(pset)}", pub[Attribute.PARAMETER_SET] == int(pset)
              and priv[Attribute.PARAMETER_SET] == int(pset) and priv[Attribute.KEY_TYPE] == KeyType.ML_DSA)
        # CKA_VALUE of an ML-DSA public key is the raw key (python-pkcs11 cannot ask for
        # CKA_PUBLIC_KEY_INFO; pykcs11_check.py reads that one).
        cls = mldsa.MLDSA65PublicKey if size == 3309 else mldsa.MLDSA87PublicKey
        key = cls.from_public_bytes(pub[Attribute.VALUE])
        check(f"{name}: cryptography reads the public key (CKA_VALUE)", len(pub[Attribute.VALUE]) == (1952 if size == 3309 else 2592))
        check(f"{name}: the private key's value is sensitive",
              raises(lambda: priv[Attribute.VALUE], (pkcs11.exceptions.AttributeSensitive, pkcs11.exceptions.PKCS11Error)))
        sig = priv.sign(msg)
        check(f"{name}: signature is {size} bytes", len(sig) == size)
        try:
            key.verify(sig, msg)
            check(f"{name}: signature verifies with cryptography", True)
        except InvalidSignature:
            check(f"{name}: signature verifies with cryptography", False)
        # CK_SIGN_ADDITIONAL_CONTEXT {hedgeVariant, pContext, ulContextLen}, packed by hand
        # (python-pkcs11 has no class for it).
        context = b"vssm context"
        buf = ctypes.create_string_buffer(context, len(context))
        param = struct.pack("QQQ", 0, ctypes.addressof(buf), len(context))
        sig2 = priv.sign(msg, mechanism=Mechanism.ML_DSA, mechanism_param=param)
        try:
            key.verify(sig2, msg, context)
            check(f"{name}: signature with a context verifies with cryptography (same context)", True)
        except InvalidSignature:
            check(f"{name}: signature with a context verifies with cryptography (same context)", False)
        check(f"{name}: ... and not without it", raises(lambda: key.verify(sig2, msg), InvalidSignature))
        check(f"{name}: C_Verify accepts the signature and refuses another message",
              pub.verify(msg, sig) and not pub.verify(msg + b"!", sig))
        check(f"{name}: C_Verify checks the context too",
              pub.verify(msg, sig2, mechanism=Mechanism.ML_DSA, mechanism_param=param) and not pub.verify(msg, sig2))
        deterministic = struct.pack("QQQ", 2, 0, 0)
        check(f"{name}: deterministic signing (not offered) is CKR_MECHANISM_PARAM_INVALID",
              raises(lambda: priv.sign(msg, mechanism=Mechanism.ML_DSA, mechanism_param=deterministic),
                     pkcs11.exceptions.MechanismParamInvalid))
    check("ML-DSA-44 (not offered) is refused with CKR_ATTRIBUTE_VALUE_INVALID",
          raises(lambda: s.generate_keypair(KeyType.ML_DSA, public_template={Attribute.PARAMETER_SET: MLDSAParameterSet.ML_DSA_44}),
                 pkcs11.exceptions.AttributeValueInvalid))

    # ML-KEM (PKCS#11 3.2 C_EncapsulateKey / C_DecapsulateKey through the 3.2 interface): cryptography
    # encapsulates to the token's public key; the token decapsulates into an AES key in the service
    # whose encryptions match cryptography's with the shared secret.
    from cryptography.hazmat.primitives.asymmetric import mlkem
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from pkcs11.mechanisms import MLKEMParameterSet
    for pset, cls, ct_size in ((MLKEMParameterSet.ML_KEM_768, mlkem.MLKEM768PublicKey, 1088),
                               (MLKEMParameterSet.ML_KEM_1024, mlkem.MLKEM1024PublicKey, 1568)):
        name = f"py-mlkem-{int(pset)}"
        pub, priv = s.generate_keypair(KeyType.ML_KEM, public_template={Attribute.PARAMETER_SET: pset}, store=True, label=name)
        check(f"{name}: generated with CKA_PARAMETER_SET {int(pset)}, CKA_ENCAPSULATE/DECAPSULATE TRUE",
              pub[Attribute.PARAMETER_SET] == int(pset) and priv[Attribute.KEY_TYPE] == KeyType.ML_KEM
              and pub[Attribute.ENCAPSULATE] and priv[Attribute.DECAPSULATE])
        theirs = cls.from_public_bytes(pub[Attribute.VALUE])
        shared, ciphertext = theirs.encapsulate()
        token_key = priv.decapsulate_key(ciphertext, KeyType.AES, store=False, key_length=256)
        block = os.urandom(16)
        mine = Cipher(algorithms.AES(shared), modes.ECB()).encryptor().update(block)
        check(f"{name}: the token decapsulates cryptography's ciphertext to the same shared secret (AES-256 key)",
              token_key.encrypt(block, mechanism=Mechanism.AES_ECB) == mine)
        ct2, enc_key = pub.encapsulate_key(KeyType.AES, key_length=128, store=False)
        dec_key = priv.decapsulate_key(ct2, KeyType.AES, store=False, key_length=128)
        check(f"{name}: C_EncapsulateKey gives a {ct_size}-byte ciphertext whose key C_DecapsulateKey recovers (AES-128)",
              len(ct2) == ct_size and enc_key.encrypt(block, mechanism=Mechanism.AES_ECB) == dec_key.encrypt(block, mechanism=Mechanism.AES_ECB))
        tampered = bytes([ciphertext[0] ^ 1]) + ciphertext[1:]
        other = priv.decapsulate_key(tampered, KeyType.AES, store=False, key_length=256)
        check(f"{name}: a tampered ciphertext gives another key (implicit rejection)",
              other.encrypt(block, mechanism=Mechanism.AES_ECB) != mine)
        check(f"{name}: a ciphertext of the wrong size is CKR_WRAPPED_KEY_LEN_RANGE",
              raises(lambda: priv.decapsulate_key(ciphertext[:-1], KeyType.AES, store=False, key_length=256),
                     pkcs11.exceptions.WrappedKeyLenRange))

    # A key generated in the service for PyKCS11 to use later (round trip across libraries).
    gen = s.generate_key(KeyType.AES, 256, label="py-aes", store=True)
    iv = os.urandom(16)
    cbc = gen.encrypt(b"cross-library check", mechanism=Mechanism.AES_CBC_PAD, mechanism_param=iv)
    with open(os.path.join(outdir, "cbc.bin"), "wb") as f:
        f.write(iv + cbc)
    check("AES-CBC-PAD round trip with a generated key",
          gen.decrypt(cbc, mechanism=Mechanism.AES_CBC_PAD, mechanism_param=iv) == b"cross-library check")
    with open(os.path.join(outdir, "py-ec.pub.pem"), "wb") as f:
        f.write(cec.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))

done("python-pkcs11")
