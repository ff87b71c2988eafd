"""go-plugin's AutoMTLS, plugin side: the daemon passes its client
certificate in PLUGIN_CLIENT_CERT (PEM); the plugin answers with a
certificate of its own, made fresh at each start, whose DER goes
base64-encoded (without padding) in the handshake line. Each side then
trusts exactly the other's certificate."""

from __future__ import annotations

import base64
import datetime
import secrets

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


class ServerCert:
    """A self-signed certificate for "localhost", as go-plugin makes it."""

    def __init__(self):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, "localhost"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "backend plugin"),
        ])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1 or 1)
            .not_valid_before(now - datetime.timedelta(seconds=30))
            # go-plugin's lifetime (30 years): the process may run for long.
            .not_valid_after(now + datetime.timedelta(hours=262980))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=True,
                data_encipherment=False, key_agreement=True, key_cert_sign=True, crl_sign=False,
                encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(key, hashes.SHA256())
        )
        self.cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        self.key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        # The handshake carries the raw DER, base64 without padding
        # (Go's base64.RawStdEncoding): the line cannot hold newlines.
        self.handshake = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii").rstrip("=")


def check_client_cert(pem: str) -> bytes:
    """Returns the daemon's certificate (PEM bytes) or raises ValueError."""
    data = pem.encode("ascii", "strict") if isinstance(pem, str) else pem
    try:
        x509.load_pem_x509_certificate(data)
    except Exception as e:
        raise ValueError("PLUGIN_CLIENT_CERT is not a PEM certificate: %s" % e) from None
    return data
