"""The impression log: every list the API serves, written to the store off the hot path.

A request only appends one small tuple (time, user key, variant, deployment, ranked item
indices) to an in-memory buffer; a background thread turns the buffer into rows every
``flush_seconds`` and appends them in one batched insert, under the store lock, to the
``impressions`` table (one row per served item and position). User ids are stored as keyed
pseudonyms (HMAC, ``shopsight.data.pseudonym``; a pseudonymised store's ids already are),
computed on the writer thread too. A read-only store (several workers) cannot be written: the
writer then appends Parquet files to the store's private spool folder
(``<store>.spool/impressions/``), which ``shopsight online-report`` reads beside the table.

``shopsight.evaluation.online`` joins these rows with later events.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from shopsight.data.store import Store

log = logging.getLogger("shopsight.serving")

TABLE = "impressions"
SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("served_at", pa.timestamp("us"), nullable=False),  # UTC
        pa.field("user_id", pa.string()),  # keyed pseudonym; NULL for sessions / similar items
        pa.field("surface", pa.string(), nullable=False),  # user | session | similar
        pa.field("variant", pa.string()),  # A/B variant name; NULL without an experiment
        pa.field("model", pa.string(), nullable=False),  # registered model name
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("source", pa.string()),  # model | live | ann | fallback
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("position", pa.int32(), nullable=False),  # 1-based rank in the list
    ]
)
_DDL = f"""CREATE TABLE IF NOT EXISTS {TABLE} (
    request_id VARCHAR NOT NULL, served_at TIMESTAMP NOT NULL, user_id VARCHAR,
    surface VARCHAR NOT NULL, variant VARCHAR, model VARCHAR NOT NULL,
    model_version VARCHAR NOT NULL, source VARCHAR, item_id VARCHAR NOT NULL,
    position INTEGER NOT NULL)"""


def ensure_table(store: Store) -> None:
    store.conn.execute(_DDL)


def spool_folder(store_path: str | Path) -> Path:
    """Where a read-only server's impressions wait (``<store>.spool/impressions``)."""
    from shopsight.data.spool import spool_dir

    folder = spool_dir(store_path) / "impressions"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


# One served list, as queued by a request: (unix time, user key, surface, variant, model,
# version, source, the deployment's item id array, ranked indices into it). A plain tuple:
# the cheapest thing to build on the request's thread.
_Served = tuple[float, str | None, str, str | None, str, str, str | None, np.ndarray, np.ndarray]


class ImpressionLog:
    """Buffered, batched impression writer (see the module doc). ``close`` flushes."""

    def __init__(
        self,
        store: Store,
        store_lock: threading.Lock,
        store_path: Path,
        *,
        read_only: bool = False,
        pseudonymize: Callable[[str], str] | None = None,
        flush_seconds: float = 1.0,
        max_pending: int = 200_000,
    ) -> None:
        self.store = store
        self.lock = store_lock
        self.read_only = read_only
        self.flush_seconds = flush_seconds
        self.max_pending = max_pending
        self._pz = pseudonymize if pseudonymize is not None else _default_pseudonymizer()
        self._buf: list[_Served] = []
        self._buf_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._boot = secrets.token_hex(4)
        self._seq = itertools.count(1)
        self._pz_cache: dict[str, str] = {}
        self.written = 0
        self.dropped = 0
        self._spool: Path | None = spool_folder(store_path) if read_only else None
        if not read_only:
            with store_lock:
                ensure_table(store)
        self._thread = threading.Thread(target=self._run, name="shopsight-impressions", daemon=True)
        self._thread.start()

    # -- hot path ----------------------------------------------------------------------------
    def add(
        self,
        surface: str,
        user: str | None,
        variant: str | None,
        model: str,
        version: str,
        source: str | None,
        item_ids: np.ndarray,
        items: np.ndarray,
    ) -> None:
        """Queue one served list (ranked indices into ``item_ids``); never blocks on the store."""
        served: _Served = (
            time.time(),
            user,
            surface,
            variant,
            model,
            version,
            source,
            item_ids,
            items,
        )
        with self._buf_lock:
            if len(self._buf) >= self.max_pending:
                self.dropped += 1
                return
            self._buf.append(served)

    # -- writer thread -----------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # a failed batch must not end logging for the server's lifetime
                log.exception("impression log: a batch could not be written")

    def flush(self) -> int:
        """Write everything queued so far; returns the rows written."""
        with self._buf_lock:
            batch, self._buf = self._buf, []
        if not batch:
            return 0
        table = self._rows(batch)
        if self._spool is not None:
            import pyarrow.parquet as pq

            name = f"{os.getpid()}-{self._boot}-{next(self._seq)}.parquet"
            tmp = self._spool / f".{name}.tmp"
            pq.write_table(table, tmp)
            tmp.replace(self._spool / name)  # readers never see a half-written file
        else:
            with self.lock:
                self.store.conn.register("_impressions_batch", table)
                try:
                    self.store.conn.execute(f"INSERT INTO {TABLE} SELECT * FROM _impressions_batch")
                finally:
                    self.store.conn.unregister("_impressions_batch")
        self.written += table.num_rows
        return table.num_rows

    def _pseudonym(self, user: str) -> str:
        p = self._pz_cache.get(user)
        if p is None:
            if len(self._pz_cache) > 100_000:
                self._pz_cache.clear()
            p = self._pz_cache[user] = self._pz(user)
        return p

    def _rows(self, batch: Sequence[_Served]) -> pa.Table:
        """Long-format rows, built column-wise (numpy / Arrow, no per-row Python): the writer
        shares the interpreter with the request threads and must hold it briefly."""
        batch = [s for s in batch if len(s[8])]
        if not batch:
            return SCHEMA.empty_table()
        counts = np.array([len(s[8]) for s in batch], np.int64)
        first = np.repeat(np.cumsum(counts) - counts, counts)
        position = np.arange(int(counts.sum()), dtype=np.int64) - first + 1
        rids = [f"{self._boot}-{next(self._seq)}" for _ in batch]
        users = [None if s[1] is None else self._pseudonym(s[1]) for s in batch]

        def per_list(values: list[Any], type_: pa.DataType) -> pa.Array:
            # Each list's value repeated over its items, by index: Arrow's take does the copy.
            return pa.array(values, type_).take(pa.array(np.repeat(np.arange(len(batch)), counts)))

        items = np.concatenate([s[7][s[8]] for s in batch])
        when = [datetime.fromtimestamp(s[0], UTC).replace(tzinfo=None) for s in batch]
        return pa.Table.from_arrays(
            [
                per_list(rids, pa.string()),
                per_list(when, pa.timestamp("us")),
                per_list(users, pa.string()),
                per_list([s[2] for s in batch], pa.string()),
                per_list([s[3] for s in batch], pa.string()),
                per_list([s[4] for s in batch], pa.string()),
                per_list([s[5] for s in batch], pa.string()),
                per_list([s[6] for s in batch], pa.string()),
                pa.array(items.astype(str) if items.dtype != object else items, pa.string()),
                pa.array(position, pa.int32()),
            ],
            schema=SCHEMA,
        )

    def close(self) -> None:
        """Stop the writer and write what is still queued."""
        self._stop = True
        self._wake.set()
        self._thread.join(timeout=30)
        self.flush()


def _default_pseudonymizer() -> Callable[[str], str]:
    from shopsight.data.pseudonym import Pseudonymizer

    return Pseudonymizer().pseudonymize
