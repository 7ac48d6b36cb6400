"""Pseudonymous ids: a keyed HMAC of each raw id, with the key kept outside the store.

The same key always maps a raw id to the same pseudonym, so joins and per-user state keep
working on pseudonyms; without the key, a pseudonym cannot be linked to a raw id (HMAC-SHA256
is one-way and, unlike a plain hash, cannot be brute-forced over a guessable id space without
the key). With the key, a raw id is recovered by recomputing pseudonyms of the shop's own
candidate ids (:meth:`Pseudonymizer.recover`).

The key comes from ``SHOPSIGHT_PSEUDONYM_KEY`` (hex or text), else from the file named by
``SHOPSIGHT_PSEUDONYM_KEY_FILE``, else from ``~/.config/shopsight/pseudonym.key`` (created with
a random key, mode 0600, on first use). It is never written into the store.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from shopsight.errors import InputError

if TYPE_CHECKING:
    from shopsight.data.store import Store

__all__ = [
    "PSEUDONYM_PREFIX",
    "PseudonymKeyError",
    "Pseudonymizer",
    "default_key_path",
    "is_pseudonym",
    "keys_are_pseudonymised",
    "load_key",
    "mark_store_pseudonymized",
    "redact_id",
    "store_pseudonymizer",
]

PSEUDONYM_PREFIX = "p_"
_DIGEST_HEX = 24  # 96 bits: collisions are negligible below billions of ids


class PseudonymKeyError(InputError):
    """The pseudonymisation key is missing or unusable."""


def default_key_path() -> Path:
    return (
        Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
        / "shopsight"
        / "pseudonym.key"
    )


def _parse_key(text: str, where: str) -> bytes:
    text = text.strip()
    if len(text) < 16:
        raise PseudonymKeyError(
            f"{where}: pseudonym key must be at least 16 characters (got {len(text)})"
        )
    try:
        return bytes.fromhex(text)
    except ValueError:
        return text.encode()


def load_key(path: str | Path | None = None, *, create: bool = True) -> bytes:
    """The pseudonymisation key: argument path, env var, env file, or the default file."""
    if path is None and (env := os.environ.get("SHOPSIGHT_PSEUDONYM_KEY")):
        return _parse_key(env, "SHOPSIGHT_PSEUDONYM_KEY")
    if path is None and (env_file := os.environ.get("SHOPSIGHT_PSEUDONYM_KEY_FILE")):
        path = env_file
    explicit = path is not None
    p = Path(path) if path is not None else default_key_path()
    if p.exists():
        return _parse_key(p.read_text(), str(p))
    if explicit or not create:
        raise PseudonymKeyError(f"{p}: pseudonym key file not found")
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32) + "\n")
    return _parse_key(p.read_text(), str(p))


class Pseudonymizer:
    """Maps raw ids to stable pseudonyms ``p_<24 hex>`` with HMAC-SHA256 under a secret key."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else load_key()
        if len(self._key) < 16:
            raise PseudonymKeyError("pseudonym key must be at least 16 bytes")

    def __call__(self, raw_id: str) -> str:
        return self.pseudonymize(raw_id)

    def pseudonymize(self, raw_id: str) -> str:
        if is_pseudonym(raw_id):  # idempotent: never pseudonymise twice
            return raw_id
        mac = hmac.new(self._key, str(raw_id).encode(), hashlib.sha256).hexdigest()
        return PSEUDONYM_PREFIX + mac[:_DIGEST_HEX]

    def many(self, raw_ids: Iterable[str]) -> list[str]:
        return [self.pseudonymize(r) for r in raw_ids]

    def matches(self, raw_id: str, pseudonym: str) -> bool:
        """Constant-time check that ``pseudonym`` belongs to ``raw_id``."""
        return hmac.compare_digest(self.pseudonymize(raw_id), pseudonym)

    def recover(self, pseudonyms: Iterable[str], candidates: Iterable[str]) -> dict[str, str]:
        """Raw ids behind ``pseudonyms`` among ``candidates`` (needs the key)."""
        wanted = set(pseudonyms)
        return {p: raw for raw in candidates if (p := self.pseudonymize(raw)) in wanted}

    def keyed_u64(self, values: Iterable[int | None], context: str) -> list[int | None]:
        """A keyed 64-bit hash of each value (None stays None): stable under one key, equal
        inputs map to equal outputs (joins survive), and it cannot be recomputed without the key.
        Used to re-key content keys that were hashed over raw ids before they leave the store."""
        person = hashlib.sha256(context.encode()).digest()[:16]
        key = hashlib.sha256(self._key).digest()
        out: list[int | None] = []
        for v in values:
            if v is None:
                out.append(None)
                continue
            h = hashlib.blake2b(int(v).to_bytes(8, "little"), digest_size=8, key=key, person=person)
            out.append(int.from_bytes(h.digest(), "little"))
        return out

    @property
    def key_id(self) -> str:
        """A public fingerprint of the key: tells keys apart, reveals nothing about ids."""
        return hmac.new(self._key, _KEY_CHECK, hashlib.sha256).hexdigest()[:16]


_KEY_CHECK = b"shopsight-pseudonym-key-check"
META_KEY = "pseudonym_key_id"
# Set once the store's content keys are computed over pseudonyms (ingest with a pseudonymiser,
# or a conversion that rekeyed): a store converted before keys were rekeyed lacks it.
KEYS_META = "content_keys_pseudonymised"


def store_pseudonymizer(
    store: Store, pseudonymizer: Pseudonymizer | None = None
) -> Pseudonymizer | None:
    """The pseudonymiser an ingest into ``store`` must use, or None for a raw-id store.

    A store records the fingerprint of its key (``meta.pseudonym_key_id``) once pseudonymised;
    every later ingest then pseudonymises too, with the same key, so raw ids and pseudonyms (or
    pseudonyms under two keys) never mix. Asking to pseudonymise into a store that already holds
    raw ids is refused: convert it first (:func:`shopsight.privacy.exports.pseudonymize_store`).
    """
    recorded = store.get_meta(META_KEY)
    if recorded is None:
        if pseudonymizer is None:
            return None
        if _holds_user_rows(store):
            raise PseudonymKeyError(
                f"{store.path}: store already holds raw user ids; pseudonymise it first "
                f"(`shopsight pseudonymize --store {store.path}`)"
            )
        return pseudonymizer
    pz = pseudonymizer if pseudonymizer is not None else Pseudonymizer(load_key(create=False))
    if pz.key_id != recorded:
        raise PseudonymKeyError(
            f"{store.path}: pseudonymised with another key (key id {recorded}, "
            f"this key {pz.key_id}); set SHOPSIGHT_PSEUDONYM_KEY(_FILE) to the store's key"
        )
    return pz


def mark_store_pseudonymized(
    store: Store, pseudonymizer: Pseudonymizer, *, rekeyed: bool = False
) -> None:
    """Record the key's fingerprint. A store marked for the first time (by an ingest: its rows
    are keyed over pseudonyms) or just ``rekeyed`` (a conversion) also records that no content
    key is a hash of a raw id; an old conversion that kept raw-id keys stays unmarked for that
    until converted again."""
    fresh = store.get_meta(META_KEY) is None
    store.set_meta(META_KEY, pseudonymizer.key_id)
    if fresh or rekeyed:
        store.set_meta(KEYS_META, "1")


def keys_are_pseudonymised(store: Store) -> bool:
    """Whether no content key of ``store`` is a hash over a raw user id."""
    return store.get_meta(META_KEY) is not None and store.get_meta(KEYS_META) == "1"


def _holds_user_rows(store: Store) -> bool:
    from shopsight.data.store import fetch_one

    for table in ("events", "reviews", "users"):
        if store.has_table(table) and fetch_one(store.conn, f'SELECT 1 FROM "{table}" LIMIT 1'):
            return True
    return False


_ID_CHARS = r"A-Za-z0-9_\-"


def id_pattern(raw_id: str) -> re.Pattern[str]:
    """``raw_id`` as a whole token (not inside a longer id: ``u1`` does not match ``u12``)."""
    return re.compile(rf"(?<![{_ID_CHARS}]){re.escape(raw_id)}(?![{_ID_CHARS}])")


def redact_id(text: str | None, raw_id: str | None, replacement: str) -> str | None:
    """``text`` with every whole-token occurrence of ``raw_id`` replaced (e.g. a raw record)."""
    if text is None or not raw_id:
        return text
    return id_pattern(raw_id).sub(replacement, text)


def is_pseudonym(value: str) -> bool:
    s = str(value)
    if len(s) != len(PSEUDONYM_PREFIX) + _DIGEST_HEX or not s.startswith(PSEUDONYM_PREFIX):
        return False
    return all(c in "0123456789abcdef" for c in s[len(PSEUDONYM_PREFIX) :])
