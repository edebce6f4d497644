"""Test certificates made on the fly with the `cryptography` package (test extra).

`make_certs(dir)` writes a small PKI for loopback TLS tests and returns the
paths: a CA, a server certificate for 127.0.0.1/localhost signed by it, a
client certificate (CN `client-one`) signed by it, and a self-signed
`rogue` client certificate no CA vouches for.  EC P-256 keys: fast to make.
"""
from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from typing import Dict, Optional

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CLIENT_CN = "client-one"
ROGUE_CN = "rogue"


def _write(path: str, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
    return path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key, issuer: str, signer, server: bool = False, ca: bool = False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=7)))
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
    elif server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(signer, hashes.SHA256())


def make_certs(directory: str) -> Dict[str, str]:
    """Write ca/server/client/rogue PEM files into directory; return name -> path."""
    def key():
        return ec.generate_private_key(ec.SECP256R1())

    def key_pem(k) -> bytes:
        return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                               serialization.NoEncryption())

    def cert_pem(c) -> bytes:
        return c.public_bytes(serialization.Encoding.PEM)

    paths: Dict[str, str] = {}
    ca_key = key()
    ca = _cert("nsq-sync test CA", ca_key, "nsq-sync test CA", ca_key, ca=True)
    paths["ca"] = _write(os.path.join(directory, "ca.pem"), cert_pem(ca))
    for name, cn, server in (("server", "127.0.0.1", True), ("client", CLIENT_CN, False)):
        k = key()
        paths[name] = _write(os.path.join(directory, name + ".pem"),
                             cert_pem(_cert(cn, k, "nsq-sync test CA", ca_key, server=server)))
        paths[name + "_key"] = _write(os.path.join(directory, name + ".key"), key_pem(k))
    rogue_key = key()
    paths["rogue"] = _write(os.path.join(directory, "rogue.pem"),
                            cert_pem(_cert(ROGUE_CN, rogue_key, ROGUE_CN, rogue_key)))
    paths["rogue_key"] = _write(os.path.join(directory, "rogue.key"), key_pem(rogue_key))
    return paths


def client_context(certs: Dict[str, str], cert: Optional[str] = None, verify: bool = True,
                   maximum: Optional[ssl.TLSVersion] = None) -> ssl.SSLContext:
    """A client SSLContext trusting the test CA (checking the server's 127.0.0.1 name), with an
    optional client certificate ('client' or 'rogue')."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        ctx.load_verify_locations(certs["ca"])
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(certs[cert], certs[cert + "_key"])
    if maximum is not None:
        ctx.maximum_version = maximum
    return ctx
