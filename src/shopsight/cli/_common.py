"""What every command group shares: options, output, and the one error rule.

Every command takes ``--json`` and then prints exactly one JSON object on stdout; human
messages, tables and progress go to stderr. A :class:`~shopsight.errors.ShopsightError` (bad
input, missing store, data that cannot support the request) prints one line naming the problem
and exits with status 2; anything else is a bug: its traceback is printed, with a line saying so,
and the exit status is 1.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import click
import typer
from rich.console import Console
from rich.table import Table

from shopsight.errors import InputError, ShopsightError, machine_limit

BUG_REPORT = "this is a bug in shopsight, not a problem with your input; please report it"


def _console() -> Console:
    """Messages and tables on stderr. Piped or logged output (CI, ``make demo | tee``) gets
    room for the tables instead of rich's 80-column fallback, which truncates their cells."""
    console = Console(stderr=True)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(stderr=True, width=160)
    return console


err = _console()

F = TypeVar("F", bound=Callable[..., Any])

StoreOpt = Annotated[Path, typer.Option("--store", help="DuckDB store file.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="Override a setting: key=value (repeatable).")
]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="YAML config file.")]


def group() -> typer.Typer:
    """A command group's Typer; added to the main app without a name, so its commands keep
    their top-level names (``shopsight ingest``, not ``shopsight data ingest``)."""
    return typer.Typer(pretty_exceptions_enable=False, add_completion=False)


def friendly_errors(fn: F) -> F:
    """A ShopsightError or the machine out of disk or memory: one line on stderr, exit 2.
    Anything else: the traceback, a line saying it is a bug, exit 1."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ShopsightError as exc:
            text = str(exc).strip()
            error(text.splitlines()[0] if text else type(exc).__name__)
            raise typer.Exit(2) from None
        except (typer.Exit, typer.Abort, click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except BrokenPipeError:
            # The reader went away (`shopsight stats --json | head`): not a bug, nothing to say.
            # Point stdout at /dev/null so the interpreter's final flush does not fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(1) from None
        except Exception as exc:
            limit = machine_limit(exc)
            if limit is not None:
                error(limit)
                raise typer.Exit(2) from None
            traceback.print_exc(file=sys.stderr)
            error(BUG_REPORT)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def error(msg: str) -> None:
    """One unwrapped line on stderr (a terminal's width must not split the message)."""
    sys.stderr.write(f"error: {msg}\n")


def emit(obj: dict[str, Any], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(obj, default=str) + "\n")


def say_fn(as_json: bool) -> Callable[..., None]:
    """Progress lines on stderr, silent under ``--json``."""
    return (lambda *_a, **_k: None) if as_json else err.print


@contextmanager
def status(message: str, as_json: bool) -> Iterator[None]:
    """A spinner on stderr for a long step (none under ``--json``)."""
    with err.status(message) if not as_json else nullcontext():
        yield


def require_file(path: Path, what: str = "file") -> Path:
    """``path`` when it exists, else a one-line error naming it."""
    from shopsight.errors import MissingFileError

    if not path.exists():
        raise MissingFileError(f"{path}: no such {what}")
    return path


def read_lines(path: Path) -> list[str]:
    """The non-empty, stripped lines of a user's text file (one-line error when unreadable)."""
    require_file(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from exc
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


def print_clean(result: dict[str, Any]) -> None:
    table = Table("step", "table", "removed", "detail")
    for step in result.get("steps", []):
        detail = step.get("detail", {})
        short = ", ".join(f"{k}={v}" for k, v in detail.items() if not isinstance(v, list | dict))
        table.add_row(step["step"], step["table"], f"{step['removed']:,}", short[:80])
    err.print(table)
    before, after = result.get("before", {}), result.get("after", {})
    err.print(
        "rows kept: " + "; ".join(f"{t} {before[t]:,} -> {after.get(t, 0):,}" for t in before),
        highlight=False,
    )
    types = result.get("event_types") or {}
    if types:
        err.print(
            "events by type: " + "; ".join(f"{t} {a:,} -> {b:,}" for t, (a, b) in types.items()),
            highlight=False,
        )


def print_stats(result: dict[str, Any]) -> None:
    """Scalars in one table; each list of records (funnel, quarantine reasons) in its own."""
    scalars: list[tuple[str, str]] = []
    lists: list[tuple[str, list[dict[str, Any]]]] = []

    def walk(prefix: str, obj: Any) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(obj, list) and obj and all(isinstance(x, dict) for x in obj):
            lists.append((prefix, obj))
        elif isinstance(obj, float):
            scalars.append((prefix, f"{obj:.4g}"))
        elif isinstance(obj, int) and not isinstance(obj, bool):
            scalars.append((prefix, f"{obj:,}"))
        else:
            scalars.append((prefix, str(obj)))

    walk("", result)
    table = Table("statistic", "value")
    for k, v in scalars:
        table.add_row(k, v)
    err.print(table)
    for name, records in lists:
        sub = Table(*records[0].keys(), title=name)
        for r in records:
            sub.add_row(*(f"{v:.3f}" if isinstance(v, float) else str(v) for v in r.values()))
        err.print(sub)
