"""The embedded DuckDB store: the single source of truth for raw and clean shop data."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb
import pyarrow as pa

from shopsight.data import schema
from shopsight.errors import MissingFileError, ShopsightError

DEFAULT_STORE = "shopsight.duckdb"


def fetch_one(
    conn: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None
) -> tuple[Any, ...] | None:
    """First row of a query, reading the whole (small) result.

    DuckDB 2 keeps a half-read result pending on the connection, which then refuses the next
    ``register``; ``fetchone`` therefore never appears in this package.
    """
    rows = conn.execute(sql, params or []).fetchall()
    return tuple(rows[0]) if rows else None


class StoreError(ShopsightError):
    """The store cannot be opened or used (one-line message, shown without a traceback)."""


class MissingStoreError(StoreError, MissingFileError):
    """The store file named does not exist (and opening it was not meant to create it)."""


class Store:
    """A DuckDB file holding the canonical tables plus quarantine and ingest log.

    Open it as a context manager. Tables are created on first open; raw tables are only ever
    appended to, so every cleaning step can be redone from them.
    """

    def __init__(
        self, path: str | Path = DEFAULT_STORE, read_only: bool = False, create: bool | None = None
    ) -> None:
        """``create`` (default: not ``read_only``) makes a new, empty store when ``path`` does
        not exist; otherwise a missing store raises :class:`MissingStoreError`."""
        self.path = Path(path)
        self.read_only = read_only
        if create is None:
            create = not read_only
        if (read_only or not create) and not self.path.exists():
            raise MissingStoreError(
                f"{self.path}: no such store (run `shopsight ingest --store {self.path} FILE...`)"
            )
        self.conn = self._connect()
        if not read_only:
            self._create_tables()
            self._check_key_function()

    def _connect(self) -> duckdb.DuckDBPyConnection:
        try:
            conn = duckdb.connect(str(self.path), read_only=self.read_only)
        except duckdb.Error as exc:
            msg = str(exc).splitlines()[0]
            raise StoreError(f"{self.path}: cannot open store: {msg}") from exc
        # Naive timestamps mean UTC everywhere; bound DuckDB's memory so big ingests spill to disk.
        conn.execute("SET TimeZone = 'UTC'")
        # DuckDB's default, stated because ingest numbers CSV lines by insertion order.
        conn.execute("SET preserve_insertion_order = true")
        conn.execute(f"SET memory_limit = '{os.environ.get('SHOPSIGHT_DUCKDB_MEMORY', '1500MB')}'")
        # DuckDB draws its own progress bar on stdout for long queries: it would break --json.
        conn.execute("SET enable_progress_bar = false")
        return conn

    def reopen(self) -> None:
        """Close and reconnect (after the file was replaced, e.g. by a privacy rewrite)."""
        self.conn.close()
        self.conn = self._connect()

    def _create_tables(self) -> None:
        for name, sch in schema.TABLES.items():
            self.conn.execute(schema.create_table_sql(name, sch))
        # Stores made before incremental database reads lack the watermark columns.
        for col in ("watermark_column", "watermark"):
            self.conn.execute(f"ALTER TABLE ingest_log ADD COLUMN IF NOT EXISTS {col} VARCHAR")
        self.conn.execute("CREATE SEQUENCE IF NOT EXISTS ingest_id_seq START 1")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)"
        )

    def _check_key_function(self) -> None:
        """Content keys use DuckDB's ``hash``, which a DuckDB upgrade may change: rekey then."""
        from shopsight.data.keys import KEY_FUNCTION, rekey_store

        current = self.get_meta("key_function")
        if current == KEY_FUNCTION:
            return
        if current is not None:
            with self.transaction():
                rekey_store(self.conn)
        self.set_meta("key_function", KEY_FUNCTION)

    # -- context management -------------------------------------------------------------
    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """All-or-nothing: on any exception (or a killed process) nothing inside is kept."""
        self.conn.execute("BEGIN TRANSACTION")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    # -- reading ------------------------------------------------------------------------
    def has_table(self, name: str) -> bool:
        row = fetch_one(
            self.conn, "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
        )
        return bool(row and row[0])

    def count(self, table: str) -> int:
        row = fetch_one(self.conn, f'SELECT count(*) FROM "{table}"')
        return int(row[0]) if row else 0

    def counts(self) -> dict[str, int]:
        return {name: self.count(name) for name in schema.TABLES}

    def arrow(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        """Run a query and return an Arrow table."""
        return self.conn.sql(sql, params=params or None).to_arrow_table()

    def table(self, name: str) -> pa.Table:
        return self.arrow(f'SELECT * FROM "{name}"')

    def get_meta(self, key: str) -> str | None:
        if not self.has_table("meta"):
            return None
        row = fetch_one(self.conn, "SELECT value FROM meta WHERE key = ?", [key])
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute(
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [key, value],
        )

    def fingerprint(self) -> str:
        """A short content fingerprint of the data tables, saved beside trained models."""
        parts = []
        for name in schema.DATA_TABLES:
            key = schema.KEY_COLUMN[name]
            row = fetch_one(
                self.conn, f'SELECT count(*), coalesce(bit_xor(hash("{key}")), 0) FROM "{name}"'
            )
            parts.append(f"{name}:{row[0] if row else 0}:{row[1] if row else 0}")
        import hashlib

        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
