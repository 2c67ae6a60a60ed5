#!/usr/bin/env python3
"""The boot test's secure registry parts (test use only, 127.0.0.1 only).

  token-server.py certs DIR
      A test CA valid from 2020 (before any build time: a guest whose clock
      reads 1970 judges certificates at minipull's build time), a server
      certificate it signs for 10.0.2.100 and 127.0.0.1, and a self-signed
      token-signing certificate for the registry's rootcertbundle.
  token-server.py serve DIR PORT USER PASSWORD ISSUER SERVICE
      An HTTPS token server (Docker token auth): GET /token with Basic
      USER:PASSWORD gets a JWT allowing pull of the scope's repository;
      anything else gets 401. Each request is logged to DIR/token.log
      (user name and scope only, never a password).
"""
import base64
import datetime
import http.server
import json
import ssl
import sys
import time
import urllib.parse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
import ipaddress


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def certs(d):
    start = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    end = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=3650)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("minipull boot test CA"))
        .issuer_name(_name("minipull boot test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    san = [x509.IPAddress(ipaddress.ip_address(a)) for a in ("10.0.2.100", "127.0.0.1")]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("10.0.2.100"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    sign_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sign_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("token signer"))
        .issuer_name(_name("token signer"))
        .public_key(sign_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .sign(sign_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    pkcs8 = dict(
        encoding=pem,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )
    _write(f"{d}/ca.pem", ca.public_bytes(pem))
    _write(f"{d}/server.pem", cert.public_bytes(pem))
    _write(f"{d}/server.key", key.private_bytes(**pkcs8))
    _write(f"{d}/sign.pem", sign_cert.public_bytes(pem))
    _write(f"{d}/sign.key", sign_key.private_bytes(**pkcs8))


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def serve(d, port, user, password, issuer, service):
    sign_key = serialization.load_pem_private_key(open(f"{d}/sign.key", "rb").read(), None)
    sign_der = x509.load_pem_x509_certificate(open(f"{d}/sign.pem", "rb").read()).public_bytes(
        serialization.Encoding.DER
    )
    x5c = base64.b64encode(sign_der).decode()
    good = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    class Token(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            url = urllib.parse.urlparse(self.path)
            q = urllib.parse.parse_qs(url.query)
            scope = q.get("scope", [""])[0]
            given = self.headers.get("Authorization", "")
            who = "anonymous"
            if given.startswith("Basic "):
                try:
                    who = base64.b64decode(given[6:]).decode().split(":", 1)[0]
                except Exception:
                    who = "unreadable"
            ok = url.path == "/token" and given == good
            with open(f"{d}/token.log", "a") as log:
                log.write(f"GET {url.path} user={who} scope={scope} -> {200 if ok else 401}\n")
            if not ok:
                self.send_response(401)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            now = int(time.time())
            repo = scope.split(":")[1] if scope.count(":") >= 2 else ""
            access = [{"type": "repository", "name": repo, "actions": ["pull"]}] if repo else []
            header = {"typ": "JWT", "alg": "RS256", "x5c": [x5c]}
            claims = {
                "iss": issuer, "sub": user, "aud": service, "exp": now + 300, "nbf": now - 10,
                "iat": now, "jti": f"{now}-{repo}", "access": access,
            }
            signing_input = (b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())).encode()
            sig = sign_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
            body = json.dumps({"token": signing_input.decode() + "." + b64url(sig), "expires_in": 300}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), Token)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(f"{d}/server.pem", f"{d}/server.key")
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    httpd.serve_forever()


if __name__ == "__main__":
    if sys.argv[1:2] == ["certs"]:
        certs(sys.argv[2])
    elif sys.argv[1:2] == ["serve"]:
        serve(*sys.argv[2:8])
    else:
        sys.exit(__doc__)
