"""A content-addressed feature cache beside the store: compute each vector once.

Layout: ``<store>.features/<encoder name>/<encoder version>/shard-*.safetensors``. Each shard
holds ``keys`` (``(n, 32)`` uint8: sha256 of encoder name, version and the input's content
bytes) and ``vectors`` (``(n, dim)`` float32). A run looks every input's key up, encodes only
the misses (deduplicated), and appends them as one new shard, so a rerun after editing one
item's title encodes exactly one text. Shards are written to a temporary file and renamed, so a
killed run leaves no half-written shard, and concurrent writers never clobber each other.
Safetensors only (never pickle): loading a cache cannot execute code.

Inputs whose encoder result is masked out (empty text, missing or corrupt image) are never
cached: an image that appears later is picked up by the next run.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shopsight.features.base import Encoded, Encoder

log = logging.getLogger("shopsight.features.cache")

_SAFE = re.compile(r"[^A-Za-z0-9._+-]+")


@dataclass
class CachedEncoded(Encoded):
    """An :class:`Encoded` plus how many rows were computed now and how many came from cache."""

    computed: int = 0
    reused: int = 0
    pending: list[int] = field(default_factory=list)  # rows another worker encodes (sharded)


def _safe(part: str) -> str:
    cleaned = _SAFE.sub("_", part).strip("._")
    return cleaned or "_"


class FeatureCache:
    """Vectors keyed by encoder name + version + sha256 of each input's content.

    ``FeatureCache.for_store(path)`` puts the cache in ``<path>.features/`` beside a store.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        # (dir) -> (shard names, key -> row, matrix); reloaded when the shard list changes.
        self._index: dict[Path, tuple[tuple[str, ...], dict[bytes, int], np.ndarray]] = {}

    @classmethod
    def for_store(cls, store_path: str | Path) -> FeatureCache:
        p = Path(store_path)
        return cls(p.with_name(p.name + ".features"))

    def directory(self, encoder: Encoder) -> Path:
        return self.root / _safe(encoder.name) / _safe(encoder.version)

    @staticmethod
    def key(encoder: Encoder, content: bytes) -> bytes:
        h = hashlib.sha256()
        for part in (encoder.name.encode(), encoder.version.encode()):
            h.update(len(part).to_bytes(4, "little"))
            h.update(part)
        h.update(content)
        return h.digest()

    # -- reading ------------------------------------------------------------------------
    def _shards(self, directory: Path) -> tuple[str, ...]:
        if not directory.is_dir():
            return ()
        return tuple(sorted(p.name for p in directory.glob("shard-*.safetensors")))

    def _load(self, directory: Path, dim: int) -> tuple[dict[bytes, int], np.ndarray]:
        shards = self._shards(directory)
        cached = self._index.get(directory)
        if cached is not None and cached[0] == shards:
            return cached[1], cached[2]
        from safetensors.numpy import load_file

        lookup: dict[bytes, int] = {}
        blocks: list[np.ndarray] = []
        offset = 0
        for name in shards:
            path = directory / name
            try:
                data = load_file(str(path))
                keys, vecs = data["keys"], data["vectors"]
            except Exception as exc:  # a damaged shard costs a recompute, never a crash
                log.warning("feature cache: ignoring unreadable shard %s (%s)", path, exc)
                continue
            if vecs.ndim != 2 or vecs.shape[1] != dim or keys.shape != (vecs.shape[0], 32):
                log.warning(
                    "feature cache: ignoring shard %s with shape %s (expected (n, %d))",
                    path,
                    vecs.shape,
                    dim,
                )
                continue
            for r, k in enumerate(keys):
                lookup.setdefault(k.tobytes(), offset + r)
            blocks.append(vecs.astype(np.float32, copy=False))
            offset += vecs.shape[0]
        matrix = np.concatenate(blocks) if blocks else np.zeros((0, dim), np.float32)
        self._index[directory] = (shards, lookup, matrix)
        return lookup, matrix

    def size(self, encoder: Encoder) -> int:
        """Number of cached vectors for this encoder and version."""
        lookup, _ = self._load(self.directory(encoder), encoder.dim)
        return len(lookup)

    # -- writing ------------------------------------------------------------------------
    def _write_shard(
        self,
        directory: Path,
        keys: list[bytes],
        vectors: np.ndarray,
        encoder: Encoder | None = None,
    ) -> None:
        from safetensors.numpy import save_file

        directory.mkdir(parents=True, exist_ok=True)
        key_arr = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 32)
        name = f"shard-{time.time_ns():020d}-{os.getpid()}.safetensors"
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=directory)
        os.close(fd)
        try:
            save_file(
                {"keys": np.ascontiguousarray(key_arr), "vectors": np.ascontiguousarray(vectors)},
                tmp,
                metadata={
                    "created": str(time.time()),
                    # what the keys were made with: lets forget() rebuild a key from content
                    **({"encoder": encoder.name, "version": encoder.version} if encoder else {}),
                },
            )
            os.replace(tmp, directory / name)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def compact(self, encoder: Encoder) -> int:
        """Merge this encoder's shards into one (fewer files to open); returns vectors kept."""
        directory = self.directory(encoder)
        old = self._shards(directory)
        if len(old) <= 1:
            return self.size(encoder)
        lookup, matrix = self._load(directory, encoder.dim)
        keys = list(lookup)
        rows = np.fromiter(lookup.values(), dtype=np.int64, count=len(keys))
        self._write_shard(directory, keys, matrix[rows], encoder)
        for name in old:
            (directory / name).unlink(missing_ok=True)
        return len(keys)

    def _identity(self, directory: Path) -> set[tuple[str, str]]:
        """The (encoder name, version) pairs a folder's keys were made with: from the shards'
        metadata, and the folder names (equal to them unless they needed escaping)."""
        from safetensors import safe_open

        found = {(directory.parent.name, directory.name)}
        for name in self._shards(directory):
            with contextlib.suppress(Exception):
                with safe_open(str(directory / name), framework="numpy") as fh:
                    meta = fh.metadata() or {}
                if "encoder" in meta and "version" in meta:
                    found.add((meta["encoder"], meta["version"]))
        return found

    def forget(self, contents: Iterable[bytes]) -> int:
        """Remove the vectors of these inputs' content bytes (e.g. texts a forgotten user
        wrote), under every encoder and version; returns how many were removed.

        Each shard holding one is rewritten without it (kept, if empty, as an empty shard:
        never deleted), to a temporary file renamed over it, with its mode.
        """
        from safetensors.numpy import load_file, save_file

        wanted = set(contents)
        removed = 0
        if not wanted or not self.root.is_dir():
            return 0
        for directory in sorted({p.parent for p in self.root.rglob("shard-*.safetensors")}):
            keys: set[bytes] = set()
            for name, version in self._identity(directory):
                for c in wanted:
                    h = hashlib.sha256()
                    for part in (name.encode(), version.encode()):
                        h.update(len(part).to_bytes(4, "little"))
                        h.update(part)
                    h.update(c)
                    keys.add(h.digest())
            for shard in (directory / n for n in self._shards(directory)):
                data = load_file(str(shard))
                hit = np.array([k.tobytes() in keys for k in data["keys"]], dtype=bool)
                if not hit.any():
                    continue
                removed += int(hit.sum())
                mode = shard.stat().st_mode & 0o7777
                fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=directory)
                os.close(fd)
                try:
                    kept = {k: np.ascontiguousarray(v[~hit]) for k, v in data.items()}
                    save_file(kept, tmp, metadata=self._metadata(shard))
                    os.chmod(tmp, mode)
                    os.replace(tmp, shard)
                finally:
                    Path(tmp).unlink(missing_ok=True)
            self._index.pop(directory, None)
        return removed

    @staticmethod
    def _metadata(shard: Path) -> dict[str, str]:
        from safetensors import safe_open

        with safe_open(str(shard), framework="numpy") as fh:
            return dict(fh.metadata() or {})

    # -- the one call most code needs ---------------------------------------------------
    def encode(
        self,
        encoder: Encoder,
        inputs: Sequence[Any],
        *,
        shard: tuple[int, int] | None = None,
        sync: Any = None,
    ) -> CachedEncoded:
        """Vectors for ``inputs``: cached ones reused, the rest encoded once and stored.

        Inputs are whatever ``encoder.encode`` takes (texts; image paths or ``(ref, item_id)``
        tuples). ``computed`` counts distinct contents encoded now, ``reused`` inputs served
        from the cache; inputs without content (empty text, no image file) count in neither.

        ``shard=(rank, world)``: one worker of a data-parallel run. It encodes only the missing
        contents whose key hash falls to its rank (rank 0 also takes the rows without content)
        and writes them as its own shard; the other rows stay unfilled (listed in
        ``pending``) until :meth:`fill` reads the other workers' shards. ``sync()`` runs after
        the cache lookup (a barrier), so no worker counts another's new vectors as reused.
        """
        inputs = list(inputs)
        n, dim = len(inputs), encoder.dim
        directory = self.directory(encoder)
        lookup, matrix = self._load(directory, dim)

        vectors = np.zeros((n, dim), dtype=np.float32)
        mask = np.zeros(n, dtype=bool)
        keys: list[bytes | None] = []
        for x in inputs:
            content = encoder.content_key(x)
            keys.append(None if content is None else self.key(encoder, content))

        reused = 0
        todo: dict[bytes, list[int]] = {}  # key -> rows needing it (identical contents once)
        no_content: list[int] = []
        for i, k in enumerate(keys):
            if k is None:
                no_content.append(i)
            elif k in lookup:
                vectors[i] = matrix[lookup[k]]
                mask[i] = True
                reused += 1
            else:
                todo.setdefault(k, []).append(i)
        if sync is not None:
            sync()
        pending: list[int] = []
        if shard is not None:
            rank, world = shard
            mine = {k: rows for k, rows in todo.items() if _owner(k, world) == rank}
            pending = sorted(i for k, rows in todo.items() if k not in mine for i in rows)
            todo = mine
            if rank != 0:
                no_content = []

        stats: dict[str, int] = {}
        issues: dict[int, str] = {}
        # Rows without content still go through the encoder so it reports them its own way
        # (a warning per missing image, the missing/corrupt counts).
        first_rows = [rows[0] for rows in todo.values()]
        run_rows = first_rows + no_content
        computed = 0
        if run_rows:
            result = encoder.encode([inputs[i] for i in run_rows])
            stats = dict(result.stats)
            new_keys: list[bytes] = []
            new_vecs: list[np.ndarray] = []
            for r, i in enumerate(run_rows):
                if r in result.issues:
                    issues[i] = result.issues[r]
                if not result.mask[r]:
                    continue
                if r < len(first_rows):
                    k = keys[i]
                    assert k is not None
                    for j in todo[k]:
                        vectors[j] = result.vectors[r]
                        mask[j] = True
                    new_keys.append(k)
                    new_vecs.append(result.vectors[r])
                    computed += 1
                else:  # encoder found content the key function could not see: keep, no cache
                    vectors[i] = result.vectors[r]
                    mask[i] = True
            if new_keys:
                self._write_shard(
                    directory, new_keys, np.stack(new_vecs).astype(np.float32), encoder
                )
        stats["encoded"] = int(mask.sum())
        out = CachedEncoded(
            vectors, mask, stats=stats, issues=issues, computed=computed, reused=reused
        )
        out.pending = pending
        return out

    def fill(self, encoder: Encoder, inputs: Sequence[Any], part: CachedEncoded) -> None:
        """Fill ``part``'s pending rows from the cache (after the other workers wrote theirs)."""
        lookup, matrix = self._load(self.directory(encoder), encoder.dim)
        for i in part.pending:
            content = encoder.content_key(inputs[i])
            k = None if content is None else self.key(encoder, content)
            if k is not None and k in lookup:
                part.vectors[i] = matrix[lookup[k]]
                part.mask[i] = True
        part.pending = []
        part.stats["encoded"] = int(part.mask.sum())


def _owner(key: bytes, world: int) -> int:
    """The worker that encodes a content: by its hash, so any world size splits it evenly."""
    return int.from_bytes(key[:8], "big") % world
