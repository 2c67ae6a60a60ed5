#!/usr/bin/env python3
"""A sigstore of the tests' own: a Fulcio-like CA, a Rekor log key and a CT
log key in a trusted_root.json, and classic keyless cosign signatures made
with them (Python's cryptography; nothing leaves this machine).

No real keyless-signed image whose layers exist is available offline, so the
end-to-end tests and the boot test sign with this; the real vectors in
tests/data/keyless prove interoperability with the public-good instance.

    sigstore.py root DIR
        DIR/trusted_root.json and the keys it names (DIR/*.key)
    sigstore.py sign DIR PAYLOAD --identity SAN --issuer URL [--time EPOCH]
        prints the JSON object of the annotations of a classic cosign
        signature layer over PAYLOAD: the signature, the certificate (Fulcio's
        SAN and issuer extensions, an embedded SCT) and the Rekor bundle (SET)
      --forge-set / --forge-sct   the SET / the SCT signed by a key that is not
                                  the log's (its log ID still the trusted one's)
      --cert-offset SECS          the certificate valid SECS later than the
                                  entry's time (the entry outside its validity)
"""

import argparse
import base64
import datetime
import hashlib
import json
import os
import struct
import sys
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

ISSUER_V1 = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
ISSUER_V2 = ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
SCT_LIST = ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
START = "2020-01-01T00:00:00Z"


def b64(b):
    return base64.b64encode(b).decode()


def spki(key):
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def save_key(path, key):
    with open(path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))


def load_key(path):
    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), None)


def der_len(n):
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def ca_cert(subject_cn, key, issuer_name, issuer_key, path_len, not_before):
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.ORGANIZATION_NAME, "minipull test sigstore"),
                      x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, subject_cn)])
    b = (x509.CertificateBuilder()
         .subject_name(name)
         .issuer_name(issuer_name or name)
         .public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(not_before)
         .not_valid_after(not_before + datetime.timedelta(days=3650 * 3))
         .add_extension(x509.BasicConstraints(ca=True, path_length=path_len), critical=True)
         .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    if issuer_name is not None:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
    return b.sign(issuer_key or key, hashes.SHA384()), name


def make_root(d):
    os.makedirs(d, exist_ok=True)
    not_before = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    root_key = ec.generate_private_key(ec.SECP384R1())
    inter_key = ec.generate_private_key(ec.SECP384R1())
    rekor_key = ec.generate_private_key(ec.SECP256R1())
    ct_key = ec.generate_private_key(ec.SECP256R1())
    root, root_name = ca_cert("test fulcio root", root_key, None, None, 1, not_before)
    inter, _ = ca_cert("test fulcio intermediate", inter_key, root_name, root_key, 0, not_before)
    for name, key in [("root", root_key), ("intermediate", inter_key), ("rekor", rekor_key), ("ct", ct_key)]:
        save_key(os.path.join(d, name + ".key"), key)
    with open(os.path.join(d, "intermediate.pem"), "wb") as f:
        f.write(inter.public_bytes(serialization.Encoding.PEM))

    def log(key, url):
        return {"baseUrl": url, "hashAlgorithm": "SHA2_256",
                "publicKey": {"rawBytes": b64(spki(key)), "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                              "validFor": {"start": START}},
                "logId": {"keyId": b64(hashlib.sha256(spki(key)).digest())}}

    trusted = {
        "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "tlogs": [log(rekor_key, "https://rekor.test.invalid")],
        "certificateAuthorities": [{
            "subject": {"organization": "minipull test sigstore", "commonName": "test fulcio"},
            "uri": "https://fulcio.test.invalid",
            "certChain": {"certificates": [{"rawBytes": b64(c.public_bytes(serialization.Encoding.DER))}
                                           for c in (inter, root)]},
            "validFor": {"start": START}}],
        "ctlogs": [log(ct_key, "https://ct.test.invalid")],
        "timestampAuthorities": [],
    }
    with open(os.path.join(d, "trusted_root.json"), "w") as f:
        json.dump(trusted, f, indent=2)


def leaf_builder(leaf_key, inter, san, issuer, t, serial, offset=0):
    nb = datetime.datetime.fromtimestamp(t - 60 + offset, datetime.timezone.utc)
    uri = x509.UniformResourceIdentifier(san) if "://" in san else x509.RFC822Name(san)
    v2 = b"\x0c" + der_len(len(issuer.encode())) + issuer.encode()
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(inter.subject)
            .public_key(leaf_key.public_key())
            .serial_number(serial)
            .not_valid_before(nb)
            .not_valid_after(nb + datetime.timedelta(minutes=10))
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .add_extension(x509.SubjectAlternativeName([uri]), critical=True)
            .add_extension(x509.UnrecognizedExtension(ISSUER_V1, issuer.encode()), critical=False)
            .add_extension(x509.UnrecognizedExtension(ISSUER_V2, v2), critical=False))


def sign(d, payload_path, san, issuer, t, log_index, forge_set=False, forge_sct=False, offset=0):
    inter_key = load_key(os.path.join(d, "intermediate.key"))
    rekor_key = load_key(os.path.join(d, "rekor.key"))
    ct_key = load_key(os.path.join(d, "ct.key"))
    with open(os.path.join(d, "intermediate.pem"), "rb") as f:
        inter = x509.load_pem_x509_certificate(f.read())
    with open(payload_path, "rb") as f:
        payload = f.read()
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    serial = x509.random_serial_number()
    # The precertificate's TBS is the certificate's without the SCT list: the
    # same builder, signed once without it (RFC 6962 3.2).
    pre = leaf_builder(leaf_key, inter, san, issuer, t, serial, offset).sign(inter_key, hashes.SHA384())
    tbs = pre.tbs_certificate_bytes
    millis = struct.pack(">Q", t * 1000)
    issuer_hash = hashlib.sha256(inter.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).digest()
    signed = b"\x00\x00" + millis + b"\x00\x01" + issuer_hash + len(tbs).to_bytes(3, "big") + tbs + b"\x00\x00"
    ct_signer = ec.generate_private_key(ec.SECP256R1()) if forge_sct else ct_key
    sct_sig = ct_signer.sign(signed, ec.ECDSA(hashes.SHA256()))
    sct = (b"\x00" + hashlib.sha256(spki(ct_key)).digest() + millis + b"\x00\x00" + b"\x04\x03"
           + struct.pack(">H", len(sct_sig)) + sct_sig)
    tls_list = struct.pack(">H", len(sct) + 2) + struct.pack(">H", len(sct)) + sct
    ext = b"\x04" + der_len(len(tls_list)) + tls_list
    cert = (leaf_builder(leaf_key, inter, san, issuer, t, serial, offset)
            .add_extension(x509.UnrecognizedExtension(SCT_LIST, ext), critical=False)
            .sign(inter_key, hashes.SHA384()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    sig = leaf_key.sign(payload, ec.ECDSA(hashes.SHA256()))
    body = {"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": {
        "data": {"hash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()}},
        "signature": {"content": b64(sig), "publicKey": {"content": b64(cert_pem)}}}}
    body_b64 = b64(json.dumps(body, separators=(",", ":")).encode())
    log_id = hashlib.sha256(spki(rekor_key)).hexdigest()
    canonical = json.dumps({"body": body_b64, "integratedTime": t, "logID": log_id, "logIndex": log_index},
                           separators=(",", ":"), sort_keys=True)
    set_signer = ec.generate_private_key(ec.SECP256R1()) if forge_set else rekor_key
    set_sig = set_signer.sign(canonical.encode(), ec.ECDSA(hashes.SHA256()))
    bundle = {"SignedEntryTimestamp": b64(set_sig),
              "Payload": {"body": body_b64, "integratedTime": t, "logIndex": log_index, "logID": log_id}}
    return {
        "dev.cosignproject.cosign/signature": b64(sig),
        "dev.sigstore.cosign/certificate": cert_pem.decode(),
        "dev.sigstore.cosign/bundle": json.dumps(bundle, separators=(",", ":")),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("root")
    r.add_argument("dir")
    s = sub.add_parser("sign")
    s.add_argument("dir")
    s.add_argument("payload")
    s.add_argument("--identity", required=True)
    s.add_argument("--issuer", required=True)
    s.add_argument("--time", type=int, default=int(time.time()))
    s.add_argument("--log-index", type=int, default=1)
    s.add_argument("--forge-set", action="store_true")
    s.add_argument("--forge-sct", action="store_true")
    s.add_argument("--cert-offset", type=int, default=0)
    a = p.parse_args()
    if a.cmd == "root":
        make_root(a.dir)
    else:
        json.dump(sign(a.dir, a.payload, a.identity, a.issuer, a.time, a.log_index,
                       a.forge_set, a.forge_sct, a.cert_offset), sys.stdout)


if __name__ == "__main__":
    main()
