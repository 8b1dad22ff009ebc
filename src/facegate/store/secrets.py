"""Access-key secrets are encrypted at rest under a master key kept beside the database.

SigV4 verification needs the plaintext secret (the signature is an HMAC keyed by it),
so secrets cannot be hashed like passwords; encrypting them means a copied database
alone reveals nothing. The master key file is created with mode 0600 atomically
(``O_CREAT | O_EXCL``), never chmod-ed after the fact.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet

MASTER_KEY_FILE = "master.key"


class SecretBox:
    """Encrypts and decrypts access-key secrets with the data directory's master key."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> "SecretBox":
        path = data_dir / MASTER_KEY_FILE
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return cls(path.read_bytes().strip())
        key = Fernet.generate_key()
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(key)
        return cls(key)

    def encrypt(self, secret: str) -> bytes:
        return self._fernet.encrypt(secret.encode())

    def decrypt(self, ciphertext: bytes) -> str:
        return self._fernet.decrypt(ciphertext).decode()
