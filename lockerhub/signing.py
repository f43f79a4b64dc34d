"""The server's Ed25519 key that signs the access snapshots banks decide from.

``LOCKERHUB_SNAPSHOT_SIGNING_KEY`` (or ``…_FILE``) may set it: base64 of the 32-byte private
seed (``signing.new_key_text()`` makes one). Without it the key is derived from ``SECRET_KEY``,
which every server process already shares. Banks hold the public half, which ``create_bank``
prints beside the token; changing either key means giving every bank the new public key.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from access import core


def _seed_text(key: Ed25519PrivateKey) -> str:
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return base64.b64encode(raw).decode()


@functools.cache
def private_key() -> Ed25519PrivateKey:
    """The signing key (read once per process)."""
    text = settings.SNAPSHOT_SIGNING_KEY.strip()
    if not text:
        seed = hashlib.sha256(f"lockerhub-snapshot-signing:{settings.SECRET_KEY}".encode())
        return Ed25519PrivateKey.from_private_bytes(seed.digest())
    try:
        return Ed25519PrivateKey.from_private_bytes(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise ImproperlyConfigured(
            f"LOCKERHUB_SNAPSHOT_SIGNING_KEY is not a base64 Ed25519 seed: {exc}"
        ) from None


def private_key_text() -> str:
    """This server's private seed, base64 (to give another server process the same key)."""
    return _seed_text(private_key())


def new_key_text() -> str:
    """A fresh private seed, base64, for an operator setting up production."""
    return _seed_text(Ed25519PrivateKey.generate())


def public_key_text() -> str:
    """The public half banks verify with (base64 of the 32 raw bytes)."""
    return core.public_key_text(private_key())


def sign_data(data: dict) -> dict[str, str]:
    """``{"data": canonical text, "sig": signature}`` of snapshot or delta data."""
    text = core.canonical(data)
    return {"data": text, "sig": core.sign(private_key(), text)}


def uid_key(bank_code: str) -> bytes:
    """The key a bank's snapshot hashes badge UIDs with: stable per bank, derived, not stored."""
    secret = private_key().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return hmac.new(secret, f"uid-key:{bank_code}".encode(), hashlib.sha256).digest()[:16]
