"""Ed25519 signatures of published adapters: the trainer signs, crlhf-lsp verifies.

The store only carries the signature (form field ``signature`` of the upload, ``signature``
of :class:`~crlhf_contract.schemas.AdapterOut`): whoever controls the store, or the network
path to a plain-http one, can replace an adapter's files and digests, but cannot sign them.

What is signed is this text (UTF-8, one field a line)::

    crlhf-adapter-signature-v1
    version <version>
    sha256 <folder digest of the PEFT files>
    gguf_sha256 <sha256 of the GGUF artifact, or ->

The version is in it so that an old signed adapter cannot be replayed as a newer one; the
GGUF digest so that what the llamacpp backend loads is covered too. The files themselves
are then checked against these digests (:mod:`crlhf_contract.digest`).

Keys: ``crlhf-train keygen --out DIR`` writes ``DIR/crlhf-signing.key`` (PKCS#8 PEM, mode
0600, stays with the trainer) and ``DIR/crlhf-signing.pub``: one line, the base64 of the
32-byte public key, which is what the editors' ``adapterPublicKey`` setting takes (the line
itself, or the path of that file, or of a PEM public key).

``cryptography`` is imported inside the functions: importing the contract stays light.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

PRIVATE_NAME = "crlhf-signing.key"
PUBLIC_NAME = "crlhf-signing.pub"
HEADER = "crlhf-adapter-signature-v1"


class SigningError(ValueError):
    """A key that cannot be read, or a signature that is missing or does not match."""


def adapter_message(version: str, sha256: str, gguf_sha256: str | None) -> bytes:
    """The bytes signed for an adapter (see the module docstring)."""
    lines = [HEADER, f"version {version}", f"sha256 {sha256}", f"gguf_sha256 {gguf_sha256 or '-'}"]
    return ("\n".join(lines) + "\n").encode()


# --- keys -----------------------------------------------------------------------------------


def generate_keypair(out_dir: Path) -> tuple[Path, Path]:
    """Write a new key pair into ``out_dir``; (private key file, public key file).

    Refuses to overwrite a private key: editors that trust its public key would refuse
    every adapter signed by a new one."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    private, public = out_dir / PRIVATE_NAME, out_dir / PUBLIC_NAME
    if private.exists():
        raise SigningError(
            f"{private} exists; keep it (editors trust its public key) or move it away first"
        )
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # O_EXCL and 0600 from the start: the key is never readable by others, not even briefly.
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public.write_text(public_key_text(key.public_key()) + "\n")
    return private, public


def public_key_text(key: Ed25519PublicKey) -> str:
    """The one-line form of a public key: base64 of its 32 raw bytes."""
    from cryptography.hazmat.primitives import serialization

    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def load_private_key(path: Path) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise SigningError(
            f"signing key {path}: not readable as an unencrypted PEM private key ({exc}); "
            "make one with `crlhf-train keygen --out DIR`"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningError(f"signing key {path} is not an Ed25519 key; use crlhf-train keygen")
    return key


def load_public_key(value: str) -> Ed25519PublicKey:
    """A public key from a setting: the base64 line itself, or the path of a file holding
    it, or of a PEM public key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    text = value.strip()
    raw = _b64_key(text)
    if raw is None:
        path = Path(text).expanduser()
        try:
            text = path.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise SigningError(
                f"adapter public key {value!r}: neither the base64 of a 32-byte Ed25519 key "
                f"nor a readable file ({exc}); use the line of crlhf-signing.pub"
            ) from exc
        if text.startswith("-----BEGIN"):
            return _pem_public_key(text, path)
        raw = _b64_key(text)
        if raw is None:
            raise SigningError(
                f"adapter public key file {path}: expected one base64 line (crlhf-signing.pub)"
            )
    return Ed25519PublicKey.from_public_bytes(raw)


def _b64_key(text: str) -> bytes | None:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 32 else None


def _pem_public_key(text: str, path: Path) -> Ed25519PublicKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(text.encode())
    except ValueError as exc:
        raise SigningError(f"adapter public key file {path}: not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise SigningError(f"adapter public key file {path} is not an Ed25519 key")
    return key


# --- sign and verify ------------------------------------------------------------------------


def sign_adapter(
    private_key: Path | Ed25519PrivateKey, *, version: str, sha256: str, gguf_sha256: str | None
) -> str:
    """The base64 signature of an adapter (what the upload's ``signature`` field carries)."""
    key = load_private_key(private_key) if isinstance(private_key, str | Path) else private_key
    signature = key.sign(adapter_message(version, sha256, gguf_sha256))
    return base64.b64encode(signature).decode()


def verify_adapter(
    public_key: str | Ed25519PublicKey,
    signature: str | None,
    *,
    version: str,
    sha256: str,
    gguf_sha256: str | None,
) -> None:
    """Raise :class:`SigningError` unless ``signature`` signs this adapter with the key."""
    from cryptography.exceptions import InvalidSignature

    key = load_public_key(public_key) if isinstance(public_key, str) else public_key
    if not signature:
        raise SigningError(
            f"adapter {version} is not signed, and adapterPublicKey asks for signed adapters "
            "(publish with crlhf-train --signing-key)"
        )
    try:
        raw = base64.b64decode(signature, validate=True)
        key.verify(raw, adapter_message(version, sha256, gguf_sha256))
    except (InvalidSignature, binascii.Error, ValueError) as exc:
        raise SigningError(
            f"adapter {version}: its signature does not match adapterPublicKey (signed by "
            "another key, or its files or version were changed after signing)"
        ) from exc
