"""Ingest from the shop's own database: PostgreSQL (ADBC, Arrow-native) or MySQL / MariaDB
(SQLAlchemy + PyMySQL), a table or a query at a time.

Rows arrive as Arrow batches, are copied into DuckDB in the order read, and then go through
the same engine as a file: columns matched by name or ``--map``, every row validated, bad rows
quarantined with a reason (``line`` is the row's position in this read, ``raw`` the row as
JSON), content keys making a re-read add nothing.

Incremental reads: with a watermark column (``updated_at``, a serial id...) only rows whose
value is above the highest one already read are fetched, so a nightly job costs only the new
rows. That highest value is kept in ``ingest_log`` (``watermark_column``, ``watermark``) per
source (database + table or query). A row written later with a watermark equal to or below
one already read is not seen by the next incremental run; ``full=True`` re-reads everything
(still idempotent).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit, urlunsplit

import duckdb
import pyarrow as pa

from shopsight.data.formats import ReadOptions
from shopsight.data.formats.generic import (
    check_required,
    guess_target,
    resolve_columns,
    staging_select,
)
from shopsight.data.ingest import FileReport, IngestReport, _safe_cleanup, ingest_staged
from shopsight.data.staging import FormatError, StagedSource
from shopsight.data.store import Store, fetch_one
from shopsight.errors import InputError

if TYPE_CHECKING:
    from shopsight.data.pseudonym import Pseudonymizer

__all__ = ["DatabaseError", "DatabaseSource", "ingest_database", "parse_database_url"]

_counter = itertools.count()
BATCH_ROWS = 50_000
_POSTGRES = ("postgresql", "postgres")
_MYSQL = ("mysql", "mariadb", "mysql+pymysql", "mariadb+pymysql")


class DatabaseError(InputError):
    """The database URL, driver or connection is unusable (one line, no secrets)."""


@dataclass(frozen=True)
class DatabaseSource:
    """Where to read: ``url`` (``postgresql://...`` or ``mysql://...``) and a table or query."""

    url: str
    table: str | None = None
    query: str | None = None
    watermark: str | None = None

    def __post_init__(self) -> None:
        if (self.table is None) == (self.query is None):
            raise DatabaseError("give exactly one of a table or a query to read from")

    @property
    def dialect(self) -> str:
        return parse_database_url(self.url)[0]

    @property
    def label(self) -> str:
        """The source as logged: the URL without its password, and the table or query."""
        base = parse_database_url(self.url)[1]
        if self.table is not None:
            return f"{base}#{self.table}"
        assert self.query is not None
        digest = hashlib.sha256(self.query.strip().encode()).hexdigest()[:12]
        return f"{base}#query:{digest}"

    @property
    def name(self) -> str:
        """What guesses the target table (like a file name): the table, else ``query``."""
        return self.table.rsplit(".", 1)[-1] if self.table else "query"


def parse_database_url(url: str) -> tuple[str, str]:
    """(dialect ``postgresql`` | ``mysql``, the URL with password and query string removed)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in _POSTGRES:
        dialect = "postgresql"
    elif scheme in _MYSQL:
        dialect = "mysql"
    else:
        raise DatabaseError(
            f"--from {scheme or url[:20]!r}: expected a postgresql://... or mysql://... URL"
        )
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username}@{host}" if parts.username else host
    return dialect, urlunsplit((scheme, netloc, parts.path, "", ""))


# ------------------------------------------------------------------------------------- reading
def _quote_ident(name: str, dialect: str) -> str:
    q = "`" if dialect == "mysql" else '"'
    return ".".join(q + part.replace(q, q + q) + q for part in name.split("."))


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def source_query(src: DatabaseSource, since: str | None) -> tuple[str, dict[str, Any]]:
    """The SQL sent to the database (and its parameters) for one read."""
    d = src.dialect
    if src.table is not None:
        base = f"SELECT * FROM {_quote_ident(src.table, d)}"
    else:
        assert src.query is not None
        base = src.query.strip().rstrip(";")
    if src.watermark is None:
        return base, {}
    wm = _quote_ident(src.watermark, d)
    sql = f"SELECT * FROM ({base}) AS shopsight_src"
    params: dict[str, Any] = {}
    if since is not None:
        if d == "mysql":
            sql += f" WHERE {wm} > :since"
            params["since"] = since
        else:
            # An untyped literal takes the column's type in PostgreSQL (a bound text would not).
            sql += f" WHERE {wm} > {_literal(since)}"
    return sql + f" ORDER BY {wm}", params


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _plain_schema(schema: pa.Schema) -> pa.Schema:
    """Extension types (PostgreSQL numeric, json...) as their storage type, which DuckDB reads."""
    fields = []
    for f in schema:
        t = f.type
        if isinstance(t, pa.ExtensionType):
            t = t.storage_type
        fields.append(pa.field(f.name, t))
    return pa.schema(fields)


def _plain_reader(reader: pa.RecordBatchReader) -> pa.RecordBatchReader:
    schema = _plain_schema(reader.schema)
    if schema.equals(reader.schema, check_metadata=False):
        return reader

    def batches() -> Iterator[pa.RecordBatch]:
        for b in reader:
            cols = [c.storage if isinstance(c, pa.ExtensionArray) else c for c in b.columns]
            yield pa.RecordBatch.from_arrays(cols, schema=schema)

    return pa.RecordBatchReader.from_batches(schema, batches())


class _Reader:
    """An open read: ``reader`` streams the rows; ``close`` releases the connection."""

    def __init__(self, reader: pa.RecordBatchReader, closers: Sequence[Any]) -> None:
        self.reader = reader
        self._closers = closers

    def close(self) -> None:
        for c in self._closers:
            with contextlib.suppress(Exception):  # closing a broken connection may fail too
                c.close()


def _open_postgres(src: DatabaseSource, sql: str) -> _Reader:
    try:
        import adbc_driver_postgresql.dbapi as pg
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise DatabaseError("reading PostgreSQL needs adbc-driver-postgresql installed") from exc
    label = parse_database_url(src.url)[1]
    try:
        conn = pg.connect(src.url)
    except Exception as exc:
        raise DatabaseError(f"{label}: cannot connect: {_first_line(exc)}") from None
    cur = conn.cursor()
    try:
        cur.execute(sql)
        reader = cur.fetch_record_batch()
    except Exception as exc:
        _Reader(pa.RecordBatchReader.from_batches(pa.schema([]), iter(())), [cur, conn]).close()
        raise FormatError(f"{src.label}: query failed: {_first_line(exc)}") from None
    return _Reader(_plain_reader(reader), [cur, conn])


def _mysql_arrow_type(type_code: int) -> pa.DataType:
    from pymysql.constants import FIELD_TYPE as F

    if type_code in (F.TINY, F.SHORT, F.LONG, F.LONGLONG, F.INT24, F.YEAR):
        return pa.int64()
    if type_code in (F.FLOAT, F.DOUBLE):
        return pa.float64()
    if type_code in (F.TIMESTAMP, F.DATETIME):
        return pa.timestamp("us")
    if type_code in (F.DATE, F.NEWDATE):
        return pa.date32()
    return pa.string()  # decimals exact as text; the ingest parses them like a file's


def _mysql_value(v: Any, t: pa.DataType) -> Any:
    if v is None or not pa.types.is_string(t):
        return v
    if isinstance(v, bytes | bytearray):
        return bytes(v).decode("utf-8", errors="replace")
    return str(v)


def _open_mysql(src: DatabaseSource, sql: str, params: dict[str, Any]) -> _Reader:
    try:
        import sqlalchemy as sa
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise DatabaseError("reading MySQL needs sqlalchemy and pymysql installed") from exc
    parts = urlsplit(src.url)
    url = urlunsplit(("mysql+pymysql", *parts[1:]))
    label = parse_database_url(src.url)[1]
    try:
        engine = sa.create_engine(url, connect_args={"charset": "utf8mb4"}, poolclass=sa.NullPool)
        conn = engine.connect()
        # DATETIME has no zone and TIMESTAMP converts to the session's: read both as UTC.
        conn.exec_driver_sql("SET time_zone = '+00:00'")
    except Exception as exc:
        raise DatabaseError(f"{label}: cannot connect: {_first_line(exc)}") from None
    try:
        result = conn.execution_options(stream_results=True).execute(sa.text(sql), params)
    except Exception as exc:
        conn.close()
        engine.dispose()
        raise FormatError(f"{src.label}: query failed: {_first_line(exc)}") from None
    desc = result.cursor.description
    schema = pa.schema([pa.field(d[0], _mysql_arrow_type(cast(int, d[1]))) for d in desc])

    def batches() -> Iterator[pa.RecordBatch]:
        for part in result.partitions(BATCH_ROWS):
            cols = list(zip(*part, strict=True)) if part else [() for _ in schema]
            arrays = [
                pa.array([_mysql_value(v, f.type) for v in col], type=f.type)
                for col, f in zip(cols, schema, strict=True)
            ]
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)

    return _Reader(pa.RecordBatchReader.from_batches(schema, batches()), [result, conn, engine])


def open_source(src: DatabaseSource, since: str | None) -> _Reader:
    sql, params = source_query(src, since)
    if src.dialect == "mysql":
        return _open_mysql(src, sql, params)
    return _open_postgres(src, sql)


# ------------------------------------------------------------------------------------- ingest
def last_watermark(store: Store, source: str, column: str) -> str | None:
    """The highest watermark value an earlier ingest of ``source`` read, if any."""
    row = fetch_one(
        store.conn,
        """SELECT watermark FROM ingest_log WHERE source = ? AND watermark_column = ?
        AND watermark IS NOT NULL ORDER BY ingest_id DESC LIMIT 1""",
        [source, column],
    )
    return None if row is None else str(row[0])


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# DuckDB types a watermark may have (prefixes): times and plain numbers, not text or decimals.
_WATERMARK_TYPES: tuple[str, ...] = ("TIMESTAMP", "DATE", "INT", "BIGINT", "SMALLINT", "TINYINT")
_WATERMARK_TYPES += ("HUGEINT", "UBIGINT", "UINTEGER", "USMALLINT", "UTINYINT", "DOUBLE", "FLOAT")


def _materialise(
    conn: duckdb.DuckDBPyConnection, reader: pa.RecordBatchReader, table: str
) -> tuple[list[str], int, int]:
    """Copy the read into a temp table in the order read: (columns, rowid base, rows)."""
    view = f"{table}_src"
    conn.register(view, reader)
    try:
        conn.execute(f"CREATE TEMP TABLE {table} AS SELECT * FROM {view}")
    finally:
        conn.unregister(view)
    cols = [str(r[0]) for r in conn.execute(f"DESCRIBE {table}").fetchall()]
    row = fetch_one(conn, f"SELECT min(rowid), max(rowid), count(*) FROM {table}")
    assert row is not None
    base, top, n = row
    if n and top - base + 1 != n:
        raise RuntimeError(f"{table}: rows read are not numbered contiguously")
    return cols, int(base or 0), int(n)


def _watermark_of(
    conn: duckdb.DuckDBPyConnection, table: str, src: DatabaseSource, cols: list[str]
) -> str | None:
    assert src.watermark is not None
    if src.watermark not in cols:
        raise FormatError(
            f"{src.label}: watermark column {src.watermark!r} is not in the result "
            f"(columns: {', '.join(cols)})"
        )
    kind = str(
        conn.execute(
            f"SELECT column_type FROM (DESCRIBE {table}) WHERE column_name = ?", [src.watermark]
        ).fetchall()[0][0]
    )
    if not kind.startswith(_WATERMARK_TYPES):
        raise FormatError(
            f"{src.label}: watermark column {src.watermark!r} is {kind}; expected a timestamp, "
            "date or integer column (e.g. updated_at or a serial id)"
        )
    row = fetch_one(conn, f"SELECT CAST(max({_ident(src.watermark)}) AS VARCHAR) FROM {table}")
    return None if row is None or row[0] is None else str(row[0])


def ingest_source(
    store: Store,
    src: DatabaseSource,
    options: ReadOptions | None = None,
    *,
    full: bool = False,
    pseudonymizer: Pseudonymizer | None = None,
) -> FileReport:
    """Read one table or query and ingest its rows in one transaction (see the module doc).

    A source that cannot be read (connection, query, columns) sets ``error`` and leaves the
    store untouched; bad rows inside it go to quarantine.
    """
    from shopsight.data.pseudonym import store_pseudonymizer

    options = options or ReadOptions()
    pz = store_pseudonymizer(store, pseudonymizer)
    report = FileReport(source=src.label, format=src.dialect)
    t0 = time.perf_counter()
    conn = store.conn
    since = None
    if src.watermark is not None and not full:
        since = last_watermark(store, src.label, src.watermark)
    table = f"_dbrows_{next(_counter)}"
    opened: _Reader | None = None
    try:
        opened = open_source(src, since)
        cols, base, _ = _materialise(conn, opened.reader, table)
        opened.close()
        opened = None
        watermark = None
        if src.watermark is not None:
            high = _watermark_of(conn, table, src, cols)
            watermark = (src.watermark, high if high is not None else since)
            report.watermark = {"column": src.watermark, "from": since, "to": watermark[1]}
        mapping = resolve_columns(cols, options)
        name = PurePosixPath(src.name)
        target = guess_target(name, mapping, options)
        check_required(name, target, mapping, options)
        fields = ", ".join(f"{_literal(c)}: {_ident(c)}" for c in cols)
        raw_sql = f"CAST(to_json({{{fields}}}) AS VARCHAR)" if cols else "'{}'"
        select = staging_select(
            target, mapping, options, raw_sql, line_sql="CAST(_ordinal + 1 AS BIGINT)"
        )
        sql = f"SELECT {select} FROM (SELECT rowid - {base} AS _ordinal, * FROM {table})"
        # One fingerprint per source: a quarantined row read again is known by its raw record.
        fingerprint = hashlib.sha256(src.label.encode()).hexdigest()
        staged = [StagedSource(target=target, sql=sql)]
        ingest_staged(store, report, fingerprint, staged, pz, watermark, match_raw=True)
    except FormatError as exc:
        report.error = str(exc)
    except duckdb.Error as exc:
        report.error = f"{src.label}: cannot copy the rows read: {_first_line(exc)}"
    finally:
        if opened is not None:
            opened.close()
        _safe_cleanup(conn)
    report.seconds = time.perf_counter() - t0
    return report


def ingest_database(
    store: Store,
    url: str,
    *,
    tables: Sequence[str] = (),
    query: str | None = None,
    watermark: str | None = None,
    full: bool = False,
    options: ReadOptions | None = None,
    pseudonymizer: Pseudonymizer | None = None,
) -> IngestReport:
    """Ingest ``tables`` (each in its own transaction) or one ``query`` from the database at
    ``url``; incremental by ``watermark`` unless ``full``. Raises :class:`DatabaseError` when
    the URL is unusable; a table or query that fails is reported in its ``error``."""
    parse_database_url(url)
    if bool(tables) == (query is not None):
        raise DatabaseError("--from needs --table NAME (repeatable) or --query SQL, not both")
    sources = [DatabaseSource(url, table=t, watermark=watermark) for t in tables] or [
        DatabaseSource(url, query=query, watermark=watermark)
    ]
    report = IngestReport()
    for src in sources:
        report.files.append(
            ingest_source(store, src, options, full=full, pseudonymizer=pseudonymizer)
        )
    return report
