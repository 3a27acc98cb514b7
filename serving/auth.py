"""API keys: configured by environment or file, kept only as SHA-256 hashes.

A key is sent as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. Keys are long
random tokens (``pvwind serve --new-key`` makes one), so an unsalted SHA-256 is enough to
keep a leaked settings file or memory dump from revealing them; comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

_HASH_RE = re.compile(r"^sha256:([0-9a-fA-F]{64})$")
KEY_PREFIX = "pvw_"


class KeyConfigError(ValueError):
    """The configured keys cannot be read."""


def hash_key(key: str) -> str:
    """The stored form of a key: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh random API key (256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _parse_entry(entry: str, origin: str) -> bytes:
    m = _HASH_RE.match(entry)
    if m:
        return bytes.fromhex(m.group(1))
    if entry.startswith("sha256:"):
        raise KeyConfigError(f"{origin}: malformed hash (expected sha256: and 64 hex digits)")
    if len(entry) < 16:
        raise KeyConfigError(f"{origin}: API key shorter than 16 characters; make one with `pvwind serve --new-key`")
    return hashlib.sha256(entry.encode()).digest()


@dataclass(frozen=True)
class KeyStore:
    """The set of accepted key hashes. Empty means: no authentication (loopback only)."""

    hashes: tuple[bytes, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.hashes)

    def check(self, key: str | None) -> bool:
        if not key:
            return False
        digest = hashlib.sha256(key.encode()).digest()
        ok = False
        for h in self.hashes:  # no early exit: the time does not depend on which key matched
            ok |= hmac.compare_digest(digest, h)
        return ok

    @classmethod
    def load(cls, keys: str = "", keys_file: Path | None = None) -> KeyStore:
        """Keys from a comma-separated string and/or a file with one key or hash per line."""
        hashes: list[bytes] = []
        for i, entry in enumerate(e.strip() for e in keys.split(",")):
            if entry:
                hashes.append(_parse_entry(entry, f"PVWIND_API_KEYS entry {i + 1}"))
        if keys_file is not None:
            try:
                lines = Path(keys_file).read_text().splitlines()
            except OSError as e:
                raise KeyConfigError(f"cannot read API key file {keys_file}: {e.strerror}") from None
            for n, line in enumerate(lines, 1):
                entry = line.split("#", 1)[0].strip()
                if entry:
                    hashes.append(_parse_entry(entry, f"{keys_file}:{n}"))
            if not hashes:
                raise KeyConfigError(f"API key file {keys_file} holds no keys")
        return cls(tuple(dict.fromkeys(hashes)))


def key_from_headers(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key a request carries, if any."""
    if x_api_key:
        return x_api_key.strip()
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return None
