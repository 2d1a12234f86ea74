"""Throw-away PKI for a test control plane, made with the ``openssl`` command line tool.

One CA signs the API server's serving certificate and the admin client certificate (group
``system:masters``); a separate RSA key pair signs and verifies service-account tokens.
Everything is valid for two days and lives in the cluster's temporary directory.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

VALID_DAYS = 2


@dataclass(frozen=True)
class Pki:
    """Paths of the files that :func:`create_pki` writes."""

    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    service_account_key: Path
    service_account_pub: Path


def create_pki(directory: Path, *, service_ip: str) -> Pki:
    """Create the CA, serving, admin and service-account key material in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(
        ca_cert=directory / "ca.crt",
        ca_key=directory / "ca.key",
        serving_cert=directory / "apiserver.crt",
        serving_key=directory / "apiserver.key",
        admin_cert=directory / "admin.crt",
        admin_key=directory / "admin.key",
        service_account_key=directory / "sa.key",
        service_account_pub=directory / "sa.pub",
    )
    _self_signed_ca(pki.ca_cert, pki.ca_key)
    names = [
        "DNS:localhost",
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster.local",
        "IP:127.0.0.1",
        f"IP:{service_ip}",
    ]
    _signed_cert(
        pki,
        pki.serving_cert,
        pki.serving_key,
        subject="/CN=kube-apiserver",
        extensions=["extendedKeyUsage=serverAuth", f"subjectAltName={','.join(names)}"],
    )
    _signed_cert(
        pki,
        pki.admin_cert,
        pki.admin_key,
        subject="/O=system:masters/CN=runnerq-e2e-admin",
        extensions=["extendedKeyUsage=clientAuth"],
    )
    _openssl(
        "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
        "-out", str(pki.service_account_key),
    )  # fmt: skip
    _openssl(
        "pkey", "-in", str(pki.service_account_key), "-pubout", "-out", str(pki.service_account_pub)
    )
    return pki


def _self_signed_ca(cert: Path, key: Path) -> None:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(cert), "-days", str(VALID_DAYS),
        "-subj", "/CN=runnerq-e2e-ca",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip


def _signed_cert(pki: Pki, cert: Path, key: Path, *, subject: str, extensions: list[str]) -> None:
    csr = cert.with_suffix(".csr")
    extfile = cert.with_suffix(".ext")
    lines = [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        *extensions,
    ]
    extfile.write_text("\n".join(lines) + "\n")
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(csr), "-subj", subject,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(pki.ca_cert), "-CAkey", str(pki.ca_key),
        "-CAcreateserial", "-days", str(VALID_DAYS), "-extfile", str(extfile), "-out", str(cert),
    )  # fmt: skip
    csr.unlink()
    extfile.unlink()


def _openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()}")
