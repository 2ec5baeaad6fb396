"""Throwaway PKI for OpenADR on loopback: a CA, a VTN server certificate and one certificate per VEN.

OpenADR 2.0b authenticates both ends with X.509 certificates: mutual TLS on the transport and an
XML signature on every message, and the VTN knows each VEN by its certificate fingerprint. Tests
and local demos need that whole chain without a real CA, so this module mints short-lived EC P-256
certificates into a directory (keys written owner-only, 0600). Test use only: nothing here is a
production key-management scheme.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from openleadr.utils import certificate_fingerprint


@dataclass(frozen=True)
class CertPair:
    """A PEM certificate and its private key on disk."""

    cert_path: Path
    key_path: Path

    def fingerprint(self) -> str:
        """The OpenADR fingerprint (openleadr's truncated SHA-256) the other side pins."""
        return certificate_fingerprint(self.cert_path.read_text())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey, passphrase: str | None = None) -> None:
    encryption = (serialization.BestAvailableEncryption(passphrase.encode()) if passphrase
                  else serialization.NoEncryption())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)


class TestPki:
    """A CA in ``directory`` that issues the VTN's and the VENs' certificates (valid for two days)."""

    __test__ = False  # not a pytest test class despite the name

    def __init__(self, directory: Path | str, host: str = "127.0.0.1") -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._ca_key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.timezone.utc)
        self._not_before, self._not_after = now - dt.timedelta(hours=1), now + dt.timedelta(days=2)
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(_name("vpprl test CA")).issuer_name(_name("vpprl test CA"))
            .public_key(self._ca_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(self._not_before).not_valid_after(self._not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(self._ca_key, hashes.SHA256())
        )
        self._ca_cert = ca_cert
        self.ca_path = self.directory / "ca.pem"
        self.ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        self.vtn = self.issue("vtn", host=host)

    def issue(self, name: str, host: str | None = None, self_signed: bool = False,
              passphrase: str | None = None) -> CertPair:
        """A new key and certificate named ``name``; ``host`` adds it as a SAN (a server),
        ``self_signed`` makes one the CA never signed (a stranger), ``passphrase`` encrypts the key."""
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(name)).issuer_name(_name(name) if self_signed else self._ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(self._not_before).not_valid_after(self._not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if host is not None:
            try:
                san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
            except ValueError:
                san = x509.DNSName(host)
            builder = builder.add_extension(x509.SubjectAlternativeName([san]), critical=False)
        cert = builder.sign(key if self_signed else self._ca_key, hashes.SHA256())
        pair = CertPair(self.directory / f"{name}.crt", self.directory / f"{name}.key")
        pair.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(pair.key_path, key, passphrase)
        return pair
