"""Key pairs for the sandbox SSH host: its host key and the client key it authorizes."""

from __future__ import annotations

import io
from dataclasses import dataclass

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519


@dataclass(frozen=True)
class KeyMaterial:
    pkey: paramiko.PKey
    private_text: str  # OpenSSH/PEM private key text, for write_client_key


def generate_key(key_type: str = "ed25519") -> KeyMaterial:
    """A fresh key pair. paramiko cannot generate Ed25519 keys, so cryptography does."""
    if key_type == "ed25519":
        private = ed25519.Ed25519PrivateKey.generate()
        text = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        ).decode()
        return KeyMaterial(paramiko.Ed25519Key(file_obj=io.StringIO(text)), text)
    if key_type == "rsa":
        key = paramiko.RSAKey.generate(2048)
        buf = io.StringIO()
        key.write_private_key(buf)
        return KeyMaterial(key, buf.getvalue())
    raise ValueError(f"unsupported key type {key_type!r} (ed25519 or rsa)")
