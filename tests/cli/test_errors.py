"""The CLI's one error rule: a ShopsightError is one line and exit 2; anything else is a bug."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

import shopsight.data.dataset
from shopsight.cli import app
from shopsight.cli._common import BUG_REPORT
from shopsight.data.store import Store
from shopsight.errors import DataError, InputError, MissingFileError, ShopsightError, StateError


def run(*args: str) -> object:
    return CliRunner().invoke(app, list(args))


def test_shopsight_error_is_one_line_and_exit_2(tmp_path: Path) -> None:
    res = run("stats", "--store", str(tmp_path / "none.duckdb"))
    assert res.exit_code == 2  # type: ignore[attr-defined]
    lines = res.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert lines == [f"error: {tmp_path / 'none.duckdb'}: no such store "
                     f"(run `shopsight ingest --store {tmp_path / 'none.duckdb'} FILE...`)"]  # fmt: skip
    assert not (tmp_path / "none.duckdb").exists()  # a failed command creates no store


def test_other_exceptions_are_bugs_with_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.duckdb"
    Store(path).close()

    def broken(*_a: object, **_k: object) -> dict[str, object]:
        raise ValueError("an internal slip")  # a plain ValueError is no longer a usage error

    monkeypatch.setattr(shopsight.data.dataset, "stats", broken)
    res = run("stats", "--store", str(path))
    assert res.exit_code == 1  # type: ignore[attr-defined]
    err = res.stderr  # type: ignore[attr-defined]
    assert "Traceback (most recent call last)" in err and "ValueError: an internal slip" in err
    assert err.strip().splitlines()[-1] == f"error: {BUG_REPORT}"


def test_bad_option_value_is_a_shopsight_error(tmp_path: Path) -> None:
    res = run("ingest", "--store", str(tmp_path / "s.duckdb"), "--map", "user", "x.csv")
    assert res.exit_code == 2  # type: ignore[attr-defined]
    assert res.stderr == "error: --map 'user': expected key=value\n"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("klass", "builtin"),
    [
        (InputError, ValueError),
        (DataError, ValueError),
        (MissingFileError, FileNotFoundError),
        (StateError, RuntimeError),
    ],
)
def test_error_kinds_keep_their_builtin_base(klass: type, builtin: type) -> None:
    assert issubclass(klass, ShopsightError) and issubclass(klass, builtin)


def test_every_library_exception_has_the_common_base() -> None:
    """Exceptions the library raises for users' problems all derive from ShopsightError."""
    import ast

    src = Path(__file__).resolve().parents[2] / "src" / "shopsight"
    strays = []
    for path in src.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and node.name.endswith(("Error", "Problem")):
                bases = {ast.unparse(b) for b in node.bases}
                if path.name != "errors.py" and bases & {"Exception", "ValueError", "RuntimeError"}:
                    strays.append(f"{path.relative_to(src)}:{node.lineno} {node.name}")
    assert strays == []


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (OSError(28, "No space left on device", "x.parquet"), "error: out of disk space: "),
        (
            duckdb.IOException('Could not write "s.tmp/t": No space left on device'),
            "error: out of disk space: ",
        ),
        (duckdb.OutOfMemoryException("could not allocate"), "error: out of memory: "),
    ],
)
def test_machine_out_of_disk_or_memory_is_one_line_not_a_bug(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raised: Exception, expected: str
) -> None:
    path = tmp_path / "s.duckdb"
    Store(path).close()

    def full(*_a: object, **_k: object) -> dict[str, object]:
        raise raised

    monkeypatch.setattr(shopsight.data.dataset, "stats", full)
    res = run("stats", "--store", str(path))
    assert res.exit_code == 2  # type: ignore[attr-defined]
    lines = res.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1 and lines[0].startswith(expected), lines


def test_a_reader_that_goes_away_is_not_a_bug(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "s.duckdb"
    Store(path).close()
    proc = subprocess.Popen(
        [sys.executable, "-m", "shopsight.cli", "stats", "--store", str(path), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # `| head -0`: nobody reads the JSON
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) in (0, 1)
    assert "Traceback" not in err and BUG_REPORT not in err, err
