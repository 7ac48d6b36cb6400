"""The ingest engine: staged rows -> validated, deduplicated, appended; bad rows -> quarantine.

One transaction per file: a crash, a kill or an exception mid-file leaves the store exactly as it
was before that file. Validation, content keys and deduplication all run inside DuckDB, so a
file is streamed through once and no per-row Python work happens on the fast (SQL) path.

Counts always add up per file: ``read = stored + duplicates + quarantined``, where ``read`` counts
the file's records (its primary staged rows plus lines rejected for their structure).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from shopsight.data import schema
from shopsight.data.formats import ReadOptions, detect_format, get_format
from shopsight.data.keys import CONTENT_COLUMNS, key_sql
from shopsight.data.staging import STAGING, FormatError, StagedSource
from shopsight.data.store import Store, fetch_one
from shopsight.data.validate import (
    event_reason_sql,
    item_reason_sql,
    normalise_event_type_sql,
    review_reason_sql,
    trimmed_id_sql,
    user_reason_sql,
)

if TYPE_CHECKING:
    from shopsight.data.pseudonym import Pseudonymizer

_counter = itertools.count()

# DuckDB functions registered while a pseudonymising ingest runs (see _register_pseudonymizer).
_PSEUDONYM_FN = "_shopsight_pseudonym"
_REDACT_FN = "_shopsight_redact_id"


@dataclass
class TableCounts:
    read: int = 0
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0

    def add(self, other: TableCounts) -> None:
        self.read += other.read
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.quarantined += other.quarantined


@dataclass
class FileReport:
    source: str
    format: str | None = None
    read: int = 0
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    tables: dict[str, TableCounts] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    ingest_id: int | None = None
    # Incremental database reads: {"column", "from" (exclusive), "to" (highest value read)}.
    watermark: dict[str, str | None] | None = None
    # rows made from other rows (reviews -> review events): how many in, how many merged
    derived: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tables"] = {k: asdict(v) for k, v in self.tables.items()}
        return d


@dataclass
class IngestReport:
    files: list[FileReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(f.error is None for f in self.files)

    def totals(self) -> dict[str, int]:
        keys = ("read", "stored", "duplicates", "quarantined")
        return {k: sum(getattr(f, k) for f in self.files) for k in keys}

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "total": self.totals(), "files": [f.to_dict() for f in self.files]}


def file_fingerprint(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _reason_sql(target: str, src: StagedSource, now_sql: str) -> str:
    lo, hi = src.rating_range
    if target == "events":
        return event_reason_sql(now_sql, lo, hi)
    if target == "items":
        return item_reason_sql()
    if target == "reviews":
        return review_reason_sql(now_sql, lo, hi)
    return user_reason_sql(now_sql)


def _normalised_select(target: str, pseudonymize: bool = False) -> str:
    """Staging columns with ids trimmed and event types mapped to their canonical names.

    With ``pseudonymize`` the user id is replaced by its pseudonym, and the trimmed raw id is
    kept as ``_raw_user_id`` only to redact quarantined raw text (it is never stored).
    """
    cols = []
    for name in STAGING[target].names:
        if name == "user_id" and pseudonymize:
            cols.append(f"{_PSEUDONYM_FN}({trimmed_id_sql(name)}) AS user_id")
            cols.append(f"{trimmed_id_sql(name)} AS _raw_user_id")
        elif name in ("user_id", "item_id", "session_id"):
            cols.append(f"{trimmed_id_sql(name)} AS {name}")
        elif name == "event_type":
            cols.append(f"{normalise_event_type_sql('event_type')} AS event_type")
        else:
            cols.append(name)
    return ", ".join(cols)


class _FileIngest:
    """Moves one file's staged sources into the store, inside the caller's transaction."""

    def __init__(
        self,
        conn: duckdb.DuckDBPyConnection,
        ingest_id: int,
        source: str,
        fingerprint: str,
        pseudonymize: bool = False,
        match_raw: bool = False,
    ) -> None:
        self.conn = conn
        self.pseudonymize = pseudonymize
        # Quarantine rows already recorded for this exact file are not recorded twice. A file
        # is the same when its bytes are (same fingerprint), and a row by its line; a database
        # source keeps one fingerprint and its rows move between reads, so ``match_raw``
        # recognises a row by its raw record instead.
        self.same_row = "s.raw IS NOT DISTINCT FROM c.raw" if match_raw else "s.line = c.line"
        conn.execute(
            """CREATE OR REPLACE TEMP TABLE _seen_q AS SELECT q.target, q.line, q.reason, q.raw
            FROM quarantine q JOIN ingest_log l USING (ingest_id) WHERE l.fingerprint = ?""",
            [fingerprint],
        )
        self.ingest_id = ingest_id
        self.source = source
        self.now_sql = "(now()::TIMESTAMP + INTERVAL 1 DAY)"
        self.derived: dict[str, dict[str, int]] = {}

    def _stage(self, src: StagedSource, chk: str) -> str | None:
        """Materialise staged rows + reason + key into temp table ``chk``; returns rejects table."""
        target = src.target
        cols = ", ".join(STAGING[target].names)
        rejects_table = None
        scan_table = None
        if src.sql is not None:
            names: dict[str, str] = {}
            if src.rejects:
                n = next(_counter)
                rejects_table = f"_rej_{n}"
                names = {"{rejects_table}": rejects_table, "{rejects_scan}": f"_rejscan_{n}"}

            def fill(text: str) -> str:
                for placeholder, name in names.items():
                    text = text.replace(placeholder, name)
                return text

            if src.scan is not None:
                scan_table = f"_scan_{next(_counter)}"
                names["{scan}"] = self._materialise_scan(fill(src.scan), scan_table)
            sql = fill(src.sql)
            inner = f"SELECT {cols} FROM ({sql})"
        else:
            stg = f"_stg_{next(_counter)}"
            self.conn.execute(f"CREATE TEMP TABLE {stg} AS SELECT {cols} FROM _empty_{target}")
            assert src.batches is not None
            for batch in src.batches:
                self.conn.register("_batch", batch)
                self.conn.execute(f"INSERT INTO {stg} SELECT {cols} FROM _batch")
                self.conn.unregister("_batch")
            inner = f"SELECT {cols} FROM {stg}"
        pseudo = self.pseudonymize and "user_id" in STAGING[target].names
        norm = f"SELECT {_normalised_select(target, pseudo)} FROM ({inner})"
        reason = _reason_sql(target, src, self.now_sql)
        key = key_sql(target)
        # Raw text (the record and the *_raw twins) is only kept for quarantined rows: it is
        # large and useless for good ones, and a narrower table does not spill to disk.
        raw_cols = [c for c in STAGING[target].names if c == "raw" or c.endswith("_raw")]
        keep_raw = ", ".join(
            f"CASE WHEN _reason IS NULL THEN NULL ELSE "
            f"{f'{_REDACT_FN}({c}, _raw_user_id, user_id)' if pseudo and c == 'raw' else c} "
            f"END AS {c}"
            for c in raw_cols
        )
        excluded = [*raw_cols, "_reason", *(["_raw_user_id"] if pseudo else [])]
        self.conn.execute(
            f"""CREATE TEMP TABLE {chk} AS
            SELECT * EXCLUDE ({", ".join(excluded)}), _reason AS reason, {keep_raw},
                   CASE WHEN _reason IS NULL THEN {key} END AS _key
            FROM (SELECT *, {reason} AS _reason FROM ({norm}))"""
        )
        if scan_table is not None:
            self.conn.execute(f"DROP TABLE {scan_table}")
        return rejects_table

    def _materialise_scan(self, scan: str, table: str) -> str:
        """Copy ``scan`` into ``table`` in file order; returns a query adding ``_ordinal``.

        DuckDB keeps insertion order (its default) and numbers a new table's rows contiguously
        from a base (0 once committed, a large offset inside a transaction), so a row's position
        among the rows read is ``rowid - base``.
        """
        self.conn.execute(f"CREATE TEMP TABLE {table} AS SELECT * FROM {scan}")
        row = fetch_one(self.conn, f"SELECT min(rowid), max(rowid), count(*) FROM {table}")
        assert row is not None
        base, top, n = row
        if n and top - base + 1 != n:
            raise RuntimeError(f"{self.source}: scanned rows are not numbered contiguously")
        return f"(SELECT rowid - {base or 0} AS _ordinal, * FROM {table})"

    def _quarantine_rejects(self, rejects_table: str, chk: str, target: str) -> int:
        # DuckDB reports one row per bad column; one quarantine row per bad line. A line that
        # could not be parsed has no known user id to redact: a pseudonymised store drops it.
        raw_line = "NULL" if self.pseudonymize else "first(csv_line)"
        self.conn.execute(
            f"""INSERT INTO quarantine
            SELECT ?, ?, ?, line, 'structure: ' || first(error_message ORDER BY column_idx),
                   {raw_line}
            FROM {rejects_table} r WHERE NOT EXISTS (SELECT 1 FROM _seen_q s
                WHERE s.target = ? AND s.line = r.line AND s.reason LIKE 'structure: %')
            GROUP BY line""",
            [self.ingest_id, target, self.source, target],
        )
        lines = self.conn.execute(f"SELECT DISTINCT line FROM {rejects_table} ORDER BY line")
        rejected = [int(r[0]) for r in lines.fetchall()]
        if rejected:
            # Data-row ordinals skip rejected lines: shift each row past the rejects before it.
            self.conn.execute("CREATE OR REPLACE TEMP TABLE _rejshift (k BIGINT, shift BIGINT)")
            self.conn.executemany(
                "INSERT INTO _rejshift VALUES (?, ?)",
                [(r - j, j) for j, r in enumerate(rejected, start=1)],
            )
            self.conn.execute(
                f"""UPDATE {chk} SET line = {chk}.line + s.shift FROM (
                    SELECT c.line AS l, max(r.shift) AS shift FROM {chk} c
                    JOIN _rejshift r ON r.k <= c.line - 1 GROUP BY c.line) s
                    WHERE {chk}.line = s.l"""
            )
        return len(rejected)

    def run(self, src: StagedSource) -> TableCounts:
        target = src.target
        chk = f"_chk_{next(_counter)}"
        rejects_table = self._stage(src, chk)
        counts = TableCounts()
        if rejects_table is not None:
            n_rej = self._quarantine_rejects(rejects_table, chk, target)
            counts.read += n_rej
            counts.quarantined += n_rej
        row = fetch_one(self.conn, f"SELECT count(*), count(reason) FROM {chk}")
        assert row is not None
        counts.read += int(row[0])
        counts.quarantined += int(row[1])
        self.conn.execute(
            f"""INSERT INTO quarantine SELECT ?, ?, ?, line, reason, raw
            FROM {chk} c WHERE reason IS NOT NULL AND NOT EXISTS (SELECT 1 FROM _seen_q s
                WHERE s.target = ? AND {self.same_row} AND s.reason = c.reason)""",
            [self.ingest_id, target, self.source, target],
        )
        key_col = schema.KEY_COLUMN[target]
        cand = f"{chk}_new"
        stored_any = fetch_one(self.conn, f'SELECT 1 FROM "{target}" LIMIT 1')
        # Keys seen more than once in this file, with the line that keeps them: usually few,
        # so deduplication is a join with a small table, not a sort of the whole file.
        self.conn.execute(
            f"""CREATE TEMP TABLE {chk}_dup AS SELECT _key, min(line) AS keep FROM {chk}
            WHERE reason IS NULL GROUP BY _key HAVING count(*) > 1"""
        )
        new_rows = f"""SELECT c.* FROM {chk} c
            ANTI JOIN {chk}_dup d ON c._key = d._key AND c.line <> d.keep
            WHERE c.reason IS NULL"""
        if stored_any is not None:
            new_rows = f"""SELECT n.* FROM ({new_rows}) n
                ANTI JOIN "{target}" t ON n._key = t.{key_col}"""
        if target in schema.ENTITY_ID:
            self.conn.execute(f"CREATE TEMP TABLE {cand} AS {new_rows}")
        else:
            self.conn.execute(f"CREATE TEMP VIEW {cand} AS {new_rows}")
        if target in schema.ENTITY_ID:
            counts.quarantined += self._quarantine_conflicts(target, cand)
        out_cols = schema.column_names(target)
        select = []
        for c in out_cols:
            if c == key_col:
                select.append(f"_key AS {c}")
            elif c == "source":
                select.append("? AS source")
            elif c in STAGING[target].names:
                select.append(c)
            else:
                select.append(f"NULL AS {c}")
        if target == "events":
            select = [s if s != "ts_ordinal" else "coalesce(ts_ordinal, false)" for s in select]
        res = fetch_one(
            self.conn,
            f'INSERT INTO "{target}" SELECT {", ".join(select)} FROM {cand}',
            [self.source],
        )
        counts.stored = int(res[0]) if res else 0
        counts.duplicates = counts.read - counts.quarantined - counts.stored
        if target == "reviews" and src.reviews_as_events:
            self._reviews_to_events(cand)
        return counts

    def _quarantine_conflicts(self, target: str, cand: str) -> int:
        """Same entity id, different content: keep the stored/first one, quarantine the rest."""
        ident = schema.ENTITY_ID[target]
        self.conn.execute(
            f"""CREATE TEMP TABLE {cand}_conf AS
            SELECT c.line, c._key, c.{ident},
              CASE WHEN t.{ident} IS NOT NULL
                   THEN '{ident}: ' || c.{ident} || ' already stored with different content'
                   ELSE '{ident}: ' || c.{ident} || ' repeated with different content (first at line '
                        || CAST(first_line AS VARCHAR) || ')' END AS reason
            FROM (SELECT *, min(line) OVER (PARTITION BY {ident}) AS first_line FROM {cand}) c
            LEFT JOIN (SELECT DISTINCT {ident} FROM "{target}") t ON c.{ident} = t.{ident}
            WHERE t.{ident} IS NOT NULL OR c.line <> c.first_line"""
        )
        cols = ", ".join(f"coalesce(CAST(c.{c} AS VARCHAR), '')" for c in CONTENT_COLUMNS[target])
        self.conn.execute(
            f"""INSERT INTO quarantine SELECT ?, ?, ?, f.line, f.reason, concat_ws(' | ', {cols})
            FROM {cand}_conf f JOIN {cand} c ON f._key = c._key""",
            [self.ingest_id, target, self.source],
        )
        row = fetch_one(self.conn, f"SELECT count(*) FROM {cand}_conf")
        self.conn.execute(f"DELETE FROM {cand} WHERE _key IN (SELECT _key FROM {cand}_conf)")
        return int(row[0]) if row else 0

    def _reviews_to_events(self, cand: str) -> None:
        """Each new review becomes one ``review`` event (deduplicated like any event); the
        counts say how many reviews merged into one event or had no time to place one at."""
        ev_key = key_sql("events")
        row = fetch_one(
            self.conn, f"SELECT count(*), count(*) FILTER (timestamp IS NULL) FROM {cand}"
        )
        n_reviews, no_time = (int(row[0]), int(row[1])) if row else (0, 0)
        res = fetch_one(
            self.conn,
            f"""INSERT INTO events
            SELECT k, user_id, item_id, event_type, timestamp, false, NULL, NULL, value, ?, line
            FROM (
                SELECT {ev_key} AS k, * FROM (
                    SELECT user_id, item_id, 'review' AS event_type, timestamp,
                           NULL AS session_id, NULL AS query, rating AS value, line
                    FROM {cand} WHERE timestamp IS NOT NULL))
            WHERE k NOT IN (SELECT event_key FROM events)
            QUALIFY row_number() OVER (PARTITION BY k ORDER BY line) = 1""",
            [self.source],
        )
        added = int(res[0]) if res else 0
        d = self.derived.setdefault(
            "review events", {"reviews": 0, "events": 0, "merged": 0, "no_timestamp": 0}
        )
        d["reviews"] += n_reviews
        d["events"] += added
        d["no_timestamp"] += no_time
        d["merged"] += n_reviews - no_time - added


def _ensure_empty_staging(conn: duckdb.DuckDBPyConnection) -> None:
    for target, sch in STAGING.items():
        cols = ", ".join(f"CAST(NULL AS {schema.duckdb_type(f)}) AS {f.name}" for f in sch)
        conn.execute(f"CREATE OR REPLACE TEMP VIEW _empty_{target} AS SELECT {cols} LIMIT 0")


def _drop_temp_tables(conn: duckdb.DuckDBPyConnection) -> None:
    views = conn.execute(
        "SELECT view_name FROM duckdb_views() WHERE temporary AND starts_with(view_name, '_')"
    ).fetchall()
    for (name,) in views:
        conn.execute(f'DROP VIEW IF EXISTS "{name}"')
    tables = conn.execute(
        "SELECT table_name FROM duckdb_tables() WHERE temporary AND starts_with(table_name, '_')"
    ).fetchall()
    for (name,) in tables:
        conn.execute(f'DROP TABLE IF EXISTS "{name}"')


def _register_pseudonymizer(conn: duckdb.DuckDBPyConnection, pz: Pseudonymizer) -> None:
    """SQL functions for a pseudonymising ingest: user id -> pseudonym, raw text redaction."""
    import pyarrow as pa
    from duckdb.func import ARROW, SPECIAL

    from shopsight.data.pseudonym import redact_id

    # Annotations stay Any: DuckDB evaluates them in this module's globals.
    def pseudonym(col: Any) -> Any:
        return pa.array([None if v is None else pz(v) for v in col.to_pylist()], pa.string())

    def redact(raw: Any, ids: Any, pids: Any) -> Any:
        rows = zip(raw.to_pylist(), ids.to_pylist(), pids.to_pylist(), strict=True)
        return pa.array([redact_id(t, r, p or "") for t, r, p in rows], pa.string())

    _unregister_pseudonymizer(conn)
    conn.create_function(
        _PSEUDONYM_FN, pseudonym, ["VARCHAR"], "VARCHAR", type=ARROW, null_handling=SPECIAL
    )
    conn.create_function(
        _REDACT_FN,
        redact,
        ["VARCHAR", "VARCHAR", "VARCHAR"],
        "VARCHAR",
        type=ARROW,
        null_handling=SPECIAL,
    )


def _unregister_pseudonymizer(conn: duckdb.DuckDBPyConnection) -> None:
    for name in (_PSEUDONYM_FN, _REDACT_FN):
        with contextlib.suppress(duckdb.Error):
            conn.remove_function(name)


def ingest_file(
    store: Store,
    path: str | Path,
    format: str | None = None,
    options: ReadOptions | None = None,
    pseudonymizer: Pseudonymizer | None = None,
) -> FileReport:
    """Ingest one file in one transaction. A file that cannot be read at all gets ``error`` set
    and leaves the store untouched; bad rows inside a readable file go to quarantine.

    With ``pseudonymizer`` (or into a store already pseudonymised, see
    :func:`shopsight.data.pseudonym.store_pseudonymizer`) user ids are stored as keyed
    pseudonyms and raw ids are redacted from quarantined raw text.
    """
    from shopsight.data.pseudonym import store_pseudonymizer

    path = Path(path)
    pz = store_pseudonymizer(store, pseudonymizer)
    report = FileReport(source=str(path))
    t0 = time.perf_counter()
    options = options or ReadOptions()
    try:
        fmt = get_format(format) if format else detect_format(path)
        report.format = fmt.name
        fingerprint = file_fingerprint(path)
        sources = fmt.stage(path, options)
        if not sources:
            raise FormatError(f"{path}: no rows found for format {fmt.name}")
        ingest_staged(store, report, fingerprint, sources, pz)
    except FormatError as exc:
        report.error = str(exc)
        _safe_cleanup(store.conn)
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        report.error = f"{path}: cannot read: {exc}"
        _safe_cleanup(store.conn)
    report.seconds = time.perf_counter() - t0
    return report


def ingest_staged(
    store: Store,
    report: FileReport,
    fingerprint: str,
    sources: Sequence[StagedSource],
    pz: Pseudonymizer | None,
    watermark: tuple[str, str | None] | None = None,
    match_raw: bool = False,
) -> None:
    """Move one source's staged rows into the store in one transaction, filling ``report``.

    ``report.source`` and ``report.format`` name the source in the log and quarantine;
    ``match_raw``: a quarantined row already recorded under ``fingerprint`` is recognised by
    its raw record rather than its line (database sources).
    ``watermark``: (column, highest value read) of an incremental database read, kept in
    ``ingest_log`` so the next run reads only newer rows. A DuckDB failure sets
    ``report.error`` and leaves the store as it was.
    """
    from shopsight.data.pseudonym import mark_store_pseudonymized

    conn = store.conn
    started = datetime.now(UTC).replace(tzinfo=None)
    try:
        with store.transaction():
            _ensure_empty_staging(conn)
            row = fetch_one(conn, "SELECT nextval('ingest_id_seq')")
            assert row is not None
            ingest_id = int(row[0])
            report.ingest_id = ingest_id
            if pz is not None:
                _register_pseudonymizer(conn, pz)
                mark_store_pseudonymized(store, pz)
            fi = _FileIngest(
                conn, ingest_id, report.source, fingerprint, pseudonymize=pz is not None
            )
            for src in sources:
                c = fi.run(src)
                report.tables.setdefault(src.target, TableCounts()).add(c)
                if src.primary:
                    report.read += c.read
                    report.stored += c.stored
                    report.duplicates += c.duplicates
                    report.quarantined += c.quarantined
            report.derived = fi.derived
            _drop_temp_tables(conn)
            finished = datetime.now(UTC).replace(tzinfo=None)
            conn.execute(
                f"INSERT INTO ingest_log ({', '.join(schema.column_names('ingest_log'))}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    ingest_id,
                    report.source,
                    fingerprint,
                    report.format,
                    report.read,
                    report.stored,
                    report.duplicates,
                    report.quarantined,
                    started,
                    finished,
                    None if watermark is None else watermark[0],
                    None if watermark is None else watermark[1],
                ],
            )
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, duckdb.OutOfMemoryException) or (
            isinstance(exc, duckdb.IOException) and "No space left" in first
        ):
            # The machine, not the file: the next file would fail the same way, and calling
            # the file unreadable would send its owner after the wrong problem.
            _safe_cleanup(conn)
            raise
        report.error = (
            f"{report.source}: not readable as {report.format or 'the detected format'}: {first}"
        )
        _safe_cleanup(conn)
    finally:
        if pz is not None:
            _unregister_pseudonymizer(conn)


def derived_lines(report: IngestReport) -> list[str]:
    """One line per file whose rows were turned into other rows, with what merged or dropped."""
    out = []
    for f in report.files:
        d = f.derived.get("review events")
        if not d or not d["reviews"]:
            continue
        line = (
            f"{Path(f.source).name}: {d['reviews']:,} new reviews -> {d['events']:,} review events"
        )
        why = []
        if d["merged"]:
            why.append(f"{d['merged']:,} merged: same user, item, time and rating")
        if d["no_timestamp"]:
            why.append(f"{d['no_timestamp']:,} without a time (no event)")
        out.append(line + (f" ({'; '.join(why)})" if why else ""))
    return out


def _safe_cleanup(conn: duckdb.DuckDBPyConnection) -> None:
    with contextlib.suppress(duckdb.Error):
        _drop_temp_tables(conn)
    _unregister_pseudonymizer(conn)


def ingest_files(
    store: Store,
    paths: Sequence[str | Path],
    format: str | None = None,
    options: ReadOptions | None = None,
    progress: Callable[[FileReport], None] | None = None,
    pseudonymizer: Pseudonymizer | None = None,
) -> IngestReport:
    """Ingest several files (e.g. reviews + meta of one dataset), each in its own transaction.

    ``pseudonymizer``: store keyed pseudonyms instead of raw user ids (see :func:`ingest_file`).
    """
    from shopsight.progress import task

    report = IngestReport()
    with task("ingest", total=len(paths)) as bar:
        for p in paths:
            bar.update(info=Path(p).name)
            fr = ingest_file(store, p, format=format, options=options, pseudonymizer=pseudonymizer)
            report.files.append(fr)
            bar.advance(1, info=f"{Path(p).name}: {fr.stored:,} stored")
            if progress is not None:
                progress(fr)
    return report
