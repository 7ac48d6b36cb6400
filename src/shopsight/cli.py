"""The ``shopsight`` command line: a thin layer over the Python API.

Every command takes ``--json`` and then prints exactly one JSON object on stdout; human
messages, tables and progress go to stderr. Expected failures (bad input, missing store) print
one line naming the file and the problem and exit with status 2, never a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from shopsight.data.formats import ReadOptions
from shopsight.data.staging import FormatError
from shopsight.data.store import DEFAULT_STORE, Store, StoreError

app = typer.Typer(
    name="shopsight",
    help="From raw shop data to clean store, features, models, personas and a served API.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

StoreOpt = Annotated[Path, typer.Option("--store", help="DuckDB store file.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


class UsageProblem(Exception):
    """A user-facing problem with the command's arguments (one-line message)."""


def friendly_errors(fn: F) -> F:
    """Turn expected failures into one line on stderr and exit status 2."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (FormatError, StoreError, UsageProblem, FileNotFoundError, ValueError) as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            err.print(f"[red]error:[/red] {msg}", highlight=False)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def emit(obj: dict[str, Any], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(obj, default=str) + "\n")


def parse_map(spec: str | None) -> dict[str, str]:
    """``user=customer_id,item=sku`` -> canonical -> column (short names allowed)."""
    short = {
        "user": "user_id",
        "item": "item_id",
        "type": "event_type",
        "event": "event_type",
        "time": "timestamp",
        "ts": "timestamp",
        "session": "session_id",
    }
    out: dict[str, str] = {}
    if not spec:
        return out
    for part in spec.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise UsageProblem(f"--map: expected canonical=column pairs, got {part!r}")
        k, v = (x.strip() for x in part.split("=", 1))
        out[short.get(k, k)] = v
    return out


@app.command()
@friendly_errors
def ingest(
    files: Annotated[list[Path], typer.Argument(help="Files of one dataset (several at once).")],
    store: StoreOpt = Path(DEFAULT_STORE),
    format: Annotated[
        str | None, typer.Option("--format", help="Override auto-detection (see `formats`).")
    ] = None,
    map: Annotated[
        str | None,
        typer.Option("--map", help="Column mapping, e.g. user=customer_id,item=sku."),
    ] = None,
    target: Annotated[
        str | None, typer.Option("--target", help="events|items|reviews|users for generic files.")
    ] = None,
    default: Annotated[
        list[str] | None,
        typer.Option("--default", help="Constant for a missing column, e.g. event_type=purchase."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Validate and append files to the store; bad rows go to quarantine with a reason."""
    from shopsight.data.ingest import ingest_files

    defaults = dict(parse_map(",".join(default or [])))
    options = ReadOptions(mapping=parse_map(map), target=target, defaults=defaults)
    with Store(store) as st, err.status("ingesting...") if not as_json else _null():
        report = ingest_files(st, files, format=format, options=options)
    result = report.to_dict()
    if as_json:
        emit(result, True)
    else:
        table = Table("file", "format", "read", "stored", "duplicates", "quarantined", "s")
        for f in report.files:
            table.add_row(
                Path(f.source).name,
                f.format or "-",
                f"{f.read:,}",
                f"{f.stored:,}",
                f"{f.duplicates:,}",
                f"{f.quarantined:,}",
                f"{f.seconds:.2f}",
            )
        t = report.totals()
        table.add_row(
            "total",
            "",
            f"{t['read']:,}",
            f"{t['stored']:,}",
            f"{t['duplicates']:,}",
            f"{t['quarantined']:,}",
            "",
        )
        err.print(table)
    for f in report.files:
        if f.error:
            err.print(f"[red]error:[/red] {f.error}", highlight=False)
    if not report.ok:
        raise typer.Exit(2)


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: object) -> None:
        return None


@app.command()
@friendly_errors
def formats(as_json: JsonOpt = False) -> None:
    """List the input formats shopsight reads."""
    from shopsight.data.formats import FORMATS, get_format

    get_format("csv")  # loads every built-in format
    rows = [
        {"name": f.name, "description": f.description}
        for f in sorted(FORMATS.values(), key=lambda f: f.name)
    ]
    if as_json:
        emit({"formats": rows}, True)
        return
    table = Table("format", "what it reads")
    for r in rows:
        table.add_row(r["name"], r["description"])
    err.print(table)


def main() -> None:  # pragma: no cover - entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
