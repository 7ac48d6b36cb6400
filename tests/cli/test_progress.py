"""Progress: drawn on stderr on a terminal only, never on stdout; --quiet turns it off."""

from __future__ import annotations

import io

import pytest

from shopsight import progress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _reset():
    yield
    progress.set_quiet(None)


def test_progress_goes_to_a_terminal_stderr_only(monkeypatch, capsys):
    fake_err = _Tty()
    monkeypatch.setattr("sys.stderr", fake_err)
    monkeypatch.delenv("SHOPSIGHT_QUIET", raising=False)
    assert progress.enabled()
    with progress.task("outer", total=2) as outer:
        with progress.task("inner", total=3) as inner:  # nested: one live display
            for _ in range(3):
                inner.advance(info="epoch 1 loss 0.5  valid 0.3")
        outer.advance(2, info="done")
    assert list(progress.track([1, 2, 3], "items")) == [1, 2, 3]
    assert capsys.readouterr().out == ""


def test_quiet_when_not_a_terminal_or_asked(monkeypatch):
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert not progress.enabled()
    monkeypatch.setattr("sys.stderr", _Tty())
    progress.set_quiet(True)
    assert not progress.enabled()
    progress.set_quiet(None)
    monkeypatch.setenv("SHOPSIGHT_QUIET", "1")
    assert not progress.enabled()
    with progress.task("x", total=1) as t:  # a no-op task still takes calls
        t.advance(1, info="y")
        t.update(total=2, description="z")


def test_cli_quiet_flag_and_json_stays_parseable(tmp_path):
    import json

    from typer.testing import CliRunner

    from shopsight.cli import app

    f = tmp_path / "events.csv"
    f.write_text("user_id,item_id,event_type,timestamp\nu1,i1,view,2024-01-01T00:00:00\n")
    res = CliRunner().invoke(
        app, ["--quiet", "ingest", "--store", str(tmp_path / "s.duckdb"), str(f), "--json"]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["total"]["stored"] == 1
