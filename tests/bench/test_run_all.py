"""bench/run_all.py and bench/report.py on tiny fake benchmarks: load marking, placement of
results, failure reporting, and BENCHMARKS.md generation (no real benchmark runs here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import report  # noqa: E402
import run_all  # noqa: E402


class FakeSampler:
    """Reports fixed other-process loads instead of reading /proc."""

    def __init__(self, before: float | None, during: float | None) -> None:
        self._before, self._during = before, during

    def before(self) -> float | None:
        return self._before

    def start(self, session: int) -> None:
        pass

    def stop(self) -> tuple[float | None, float | None]:
        return self._during, self._during


# -- load judgement ---------------------------------------------------------------------------


def test_judge_takes_the_larger_of_before_and_during() -> None:
    assert run_all.judge(0.2, 0.4, 1.5) == (True, 0.4)
    assert run_all.judge(0.2, 2.0, 1.5) == (False, 2.0)
    assert run_all.judge(3.1, 0.0, 1.5) == (False, 3.1)
    assert run_all.judge(1.5, None, 1.5) == (True, 1.5)  # at the threshold: recorded


def test_judge_falls_back_to_the_load_average_and_refuses_without_any() -> None:
    assert run_all.judge(None, None, 1.5, loadavg_before=0.7) == (True, 0.7)
    assert run_all.judge(None, None, 1.5, loadavg_before=4.0) == (False, 4.0)
    recorded, load = run_all.judge(None, None, 1.5)
    assert not recorded and load != load  # NaN: unknown load is never recorded


def test_verdict_lines() -> None:
    assert run_all.verdict({"recorded": True, "load": 0.31, "max_load": 1.5}) == (
        "recorded (load 0.31 <= 1.5)"
    )
    assert run_all.verdict({"recorded": False, "load": 4.2, "max_load": 1.5}) == (
        "not recorded (load 4.20 > 1.5)"
    )


def _fake_proc(root: Path, tasks: list[tuple[int, int, str, str, int]]) -> Path:
    """/proc-like tree: (pid, tid, comm, state, session)."""
    for pid, tid, comm, state, sid in tasks:
        d = root / str(pid) / "task" / str(tid)
        d.mkdir(parents=True, exist_ok=True)
        (d / "stat").write_text(f"{tid} ({comm}) {state} 1 {sid} {sid} 0 -1 4194560 0 0\n")
    (root / "self").mkdir(exist_ok=True)  # not a pid: ignored
    return root


def test_task_states_parse_names_with_spaces_and_parentheses(tmp_path: Path) -> None:
    proc = _fake_proc(
        tmp_path,
        [(10, 10, "python", "R", 10), (10, 11, "a (b) c", "D", 10), (20, 20, "sleepy", "S", 20)],
    )
    assert sorted(run_all._task_states(proc)) == [(10, 10, "D"), (10, 10, "R"), (20, 20, "S")]


def test_other_load_leaves_out_the_benchmark_and_this_process() -> None:
    me = os.getpid()
    tasks = [
        (me, 1, "R"),  # run_all's own sampler thread
        (500, 500, "R"),  # the benchmark
        (501, 500, "R"),  # a process it started (same session)
        (600, 600, "R"),  # somebody else, running
        (601, 601, "D"),  # somebody else, in uninterruptible sleep
        (602, 602, "S"),  # sleeping: not load
        (603, 603, "I"),  # idle kernel thread: not load
    ]
    assert run_all.other_load(500, tasks) == 2
    assert run_all.other_load(None, tasks) == 4


# -- running jobs -----------------------------------------------------------------------------


def _bench_dir(tmp_path: Path) -> Path:
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "fast.py").write_text(
        "import argparse, json\n"
        "ap = argparse.ArgumentParser()\n"
        "ap.add_argument('--n', type=int, default=3)\n"
        "ap.add_argument('--out')\n"
        "a = ap.parse_args()\n"
        "open(a.out, 'w').write(json.dumps({'n': a.n, 'fit_seconds': 1.25, 'ndcg@10': 0.5}))\n"
    )
    (bench / "broken.py").write_text("import sys\nprint('boom: no data here')\nsys.exit(3)\n")
    return bench


def _run(
    monkeypatch: pytest.MonkeyPatch,
    bench: Path,
    jobs: list[run_all.Job],
    sampler: FakeSampler,
    *args: str,
) -> dict[str, Any]:
    monkeypatch.setattr(run_all, "HERE", bench)
    monkeypatch.setattr(run_all, "LOGS", bench / "_logs")
    monkeypatch.setattr(run_all, "discover", lambda: jobs)
    monkeypatch.setattr(run_all, "LoadSampler", lambda: sampler)
    results = bench / "results"
    run_all.main(["--results", str(results), *args])
    return json.loads((results / "run_all.json").read_text())


JOBS = [
    run_all.Job("fast", "fast.py", "fast.json", ("--n", "100"), ("--n", "2")),
    run_all.Job("broken", "broken.py", "broken.json"),
    run_all.Job("fast_again", "fast.py", "fast_again.json", ("--n", "7")),
]


def test_a_quiet_run_is_recorded_and_a_failure_does_not_stop_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = _bench_dir(tmp_path)
    log = _run(monkeypatch, bench, JOBS, FakeSampler(0.2, 0.3))
    status = {e["job"]: e for e in log["jobs"]}
    assert [e["job"] for e in log["jobs"]] == ["fast", "broken", "fast_again"]
    assert status["fast"]["status"] == "ok" and status["fast_again"]["status"] == "ok"
    assert status["broken"]["status"] == "failed"
    assert "exit status 3" in status["broken"]["error"]
    assert "boom: no data here" in status["broken"]["error"]
    result = json.loads((bench / "results" / "fast.json").read_text())
    assert result["n"] == 100  # the full-size arguments
    run = result["run"]
    assert run["recorded"] is True and run["load"] == 0.3 and run["max_load"] == 1.5
    assert run["command"].startswith("python ") and "--n 100" in run["command"]
    assert len(run["loadavg_before"]) == 3 and "machine" in run and "started" in run
    assert not (bench / "results" / "broken.json").exists()


def test_a_busy_run_is_marked_and_never_replaces_a_recorded_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = _bench_dir(tmp_path)
    _run(monkeypatch, bench, JOBS[:1], FakeSampler(0.1, 0.2))
    log = _run(monkeypatch, bench, JOBS[:1], FakeSampler(4.2, 3.0))
    assert log["jobs"][0]["verdict"] == "not recorded (load 4.20 > 1.5)"
    kept = json.loads((bench / "results" / "fast.json").read_text())
    assert kept["run"]["recorded"] is True
    busy = json.loads((bench / "results" / "unrecorded" / "fast.json").read_text())
    assert busy["run"]["recorded"] is False and busy["run"]["load"] == 4.2


def test_a_busy_run_replaces_a_file_that_was_not_recorded_either(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = _bench_dir(tmp_path)
    _run(monkeypatch, bench, JOBS[:1], FakeSampler(5.0, 5.0))
    _run(monkeypatch, bench, JOBS[:1], FakeSampler(2.0, 2.0))
    assert json.loads((bench / "results" / "fast.json").read_text())["run"]["load"] == 2.0
    assert not (bench / "results" / "unrecorded").exists()


def test_a_busy_run_keeps_an_older_file_of_unknown_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = _bench_dir(tmp_path)
    (bench / "results").mkdir()
    (bench / "results" / "fast.json").write_text(json.dumps({"n": 1, "date": "2026-11-29"}))
    _run(monkeypatch, bench, JOBS[:1], FakeSampler(3.0, 3.0))
    assert json.loads((bench / "results" / "fast.json").read_text()) == {
        "n": 1,
        "date": "2026-11-29",
    }
    assert (bench / "results" / "unrecorded" / "fast.json").exists()


def test_quick_uses_the_small_arguments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bench = _bench_dir(tmp_path)
    _run(monkeypatch, bench, JOBS[:1], FakeSampler(0.0, 0.0), "--quick", "--only", "fast")
    result = json.loads((bench / "results" / "fast.json").read_text())
    assert result["n"] == 2 and result["run"]["quick"] is True


def test_unknown_job_names_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(run_all, "discover", lambda: JOBS)
    assert run_all.main(["--only", "nope", "--results", str(tmp_path)]) == 2
    assert "unknown job(s) nope" in capsys.readouterr().err


def test_discover_finds_new_scripts(tmp_path: Path) -> None:
    (tmp_path / "known.py").write_text("")
    (tmp_path / "_helper.py").write_text("")
    (tmp_path / "run_all.py").write_text("")
    (tmp_path / "declared.py").write_text(
        'RUN_ALL = {"full": ["--big"], "quick": ["--small"], "out": "dec.json"}\n'
    )
    (tmp_path / "plain.py").write_text('ap.add_argument("--out")\nap.add_argument("--quick")\n')
    (tmp_path / "printer.py").write_text("print(1)\n")
    jobs = {
        j.name: j
        for j in run_all.discover(
            tmp_path, [run_all.Job("k", "known.py", None), run_all.Job("gone", "gone.py", None)]
        )
    }
    assert set(jobs) == {"k", "declared", "plain", "printer"}
    assert jobs["declared"].full == ("--big",) and jobs["declared"].out == "dec.json"
    assert jobs["plain"].out == "plain.json" and jobs["plain"].quick == ("--quick",)
    assert jobs["printer"].out is None
    assert jobs["declared"].has_quick and jobs["plain"].has_quick
    assert not jobs["printer"].has_quick


def test_quick_leaves_out_jobs_without_small_sizes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = _bench_dir(tmp_path)
    jobs = [*JOBS[:1], run_all.Job("big", "fast.py", "big.json", has_quick=False)]
    log = _run(monkeypatch, bench, jobs, FakeSampler(0.0, 0.0), "--quick")
    assert [(e["job"], e["status"]) for e in log["jobs"]] == [("fast", "ok"), ("big", "skipped")]
    assert "no small sizes known" in log["jobs"][1]["error"]
    assert not (bench / "results" / "big.json").exists()


# -- report -----------------------------------------------------------------------------------


def _run_block(load: float, recorded: bool) -> dict[str, Any]:
    return {
        "command": "python bench/x.py",
        "started": "2026-12-05T08:00:00+00:00",
        "load": load,
        "max_load": 1.5,
        "recorded": recorded,
        "git_commit": "abc123",
    }


def test_report_masks_timings_of_runs_not_recorded(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    ingest = {
        "rows": 1000,
        "ingest_seconds": 2.5,
        "ingest_rows_per_s": 400,
        "stored": 990,
        "duplicates": 5,
        "quarantined": 5,
    }
    (results / "ingest.json").write_text(json.dumps(ingest | {"run": _run_block(4.2, False)}))
    dp = {
        "dataset": "d",
        "rows": [
            {"run": "popularity (exact)", "ndcg@10": 0.2},
            {"run": "dp eps=1", "ndcg@10": 0.3, "epsilon_spent": 1.0},
        ],
        "total_seconds": 31.0,
        "run": _run_block(0.4, True),
    }
    (results / "dp.json").write_text(json.dumps(dp))
    template = tmp_path / "T.md"
    template.write_text(
        "# B\n\n<!-- results: ingest.json -->\n\n<!-- results: dp.json -->\n"
        "\n<!-- results: missing.json -->\n"
    )
    text = report.build(results, template, 1.5)
    ingest_part = text.split("<!--")[0] if "<!--" in text else text
    assert "**timings not recorded (load 4.20 > 1.5)**" in ingest_part
    row = next(line for line in text.splitlines() if line.startswith("| 1,000"))
    assert "2.50" not in row and "400" not in row and row.count("n/r") >= 2
    assert "| 990 |" in row  # counts are not timings
    assert "recorded (load <= 1.5)" in text and "command `python bench/x.py`" in text
    assert "| dp eps=1 | 1.00 | 0.3000 |" in text and "1.50x" in text
    assert "total 31 s" in text
    assert "no `" in text and "missing.json` yet" in text


def test_report_reads_older_files_and_adds_unknown_ones(tmp_path: Path) -> None:
    results = tmp_path / "results"
    (results / "unrecorded").mkdir(parents=True)
    (results / "personas_quality.json").write_text(
        json.dumps(
            {
                "runs": [
                    {
                        "seed": 3,
                        "users": 300,
                        "k": 4,
                        "ari": 0.9,
                        "stability_ari": 0.95,
                        "names": ["a", "b"],
                    }
                ],
                "ari_mean": 0.9,
                "machine": {"load_average": [0.4, 1, 1], "date": "2026-11-29T09:00:00+00:00"},
            }
        )
    )
    (results / "other_bench.json").write_text(
        json.dumps(
            {
                "title": "other",
                "columns": ["model", "default", "tuned", "fit_seconds"],
                "rows": [["bpr", 0.41, 0.45, 12.5]],
                "machine": {"load_average": [6.0, 5, 5]},
            }
        )
    )
    (results / "unrecorded" / "dp.json").write_text(
        json.dumps(
            {"rows": [{"run": "popularity", "ndcg@10": 0.25}], "run": _run_block(3.3, False)}
        )
    )
    (results / "run_all.json").write_text(
        json.dumps(
            {
                "started": "2026-12-05T08:00:00+00:00",
                "quick": True,
                "max_load": 1.5,
                "git_commit": "abc",
                "jobs": [
                    {
                        "job": "dp",
                        "status": "failed",
                        "seconds": 2,
                        "verdict": "not recorded (load 3.30 > 1.5)",
                        "error": "exit status 1: boom",
                    }
                ],
            }
        )
    )
    template = tmp_path / "T.md"
    template.write_text("# B\n")
    text = report.build(results, template, 1.5)
    assert "load 0.40 (1-minute load average at the start" in text
    assert "| 3 | 300 | 4 | 0.9000 | 0.9500 | a, b |" in text
    assert "### `other_bench.json`" in text
    assert "| bpr | 0.4100 | 0.4500 | n/r |" in text  # load 6.0: its timing column masked
    assert "## Later runs not recorded" in text and "load 3.30 > 1.5" in text
    assert "| popularity | - | 0.2500 |" in text  # its quality figures are shown
    assert "| dp | failed | 2 | not recorded (load 3.30 > 1.5) | exit status 1: boom |" in text


def test_report_check_flags_a_stale_file(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    template = tmp_path / "T.md"
    template.write_text("# B\n")
    out = tmp_path / "B.md"
    args = ["--results", str(results), "--template", str(template), "--out", str(out)]
    assert report.main([*args, "--check"]) == 1
    assert report.main(args) == 0
    assert report.main([*args, "--check"]) == 0


def test_report_renders_a_sasrec_profile(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    top = [{"op": "aten::mm", "calls": 10, "self_cpu_s": 5.0, "self_cpu_pct": 40.0}]
    side = {"ratio_to_floor": 4.0, "floor_tflop": 0.8, "floor_seconds": 7.5}
    summary = {
        "before": {"epoch_seconds": 30.0, **side},
        "after": {**side, "epoch_seconds": 12.0, "ratio_to_floor": 1.6},
        "speedup": 2.5,
        "speedup_median_of_segment_pairs": 2.4,
    }
    data = {
        "baseline_rev": "abc",
        "head": "def",
        "threads": 2,
        "epochs": 1,
        "load_start": [0.3, 0.3, 0.3],
        "profile": {"after": {"top": top}},
        "summary": summary,
    }
    (results / "sasrec_profile.json").write_text(json.dumps(data))
    template = tmp_path / "T.md"
    template.write_text("<!-- results: sasrec_profile.json -->\n")
    text = report.build(results, template, 1.5)
    assert "| before | 30.0 | 0.80 | 7.5 | 4.00x |" in text
    assert "| after | 12.0 | 0.80 | 7.5 | 1.60x |" in text
    assert "speed-up after / before 2.50x (median over segment pairs" in text
    assert "| `aten::mm` | 10 | 5.0 | 40.0% |" in text


def test_report_renders_defaults_against_tuned(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    rows = [
        {
            "dataset": "ml100k",
            "protocol": "stratified-item-75-25",
            "model": "bpr",
            "metric": "ndcg@10",
            "default": 0.40,
            "tuned": 0.45,
            "ratio": 0.40 / 0.45,
            "flag": True,
            "trials": {"complete": 8},
        },
        {
            "dataset": "ml100k",
            "model": "ease",
            "metric": "ndcg@10",
            "default": 0.48,
            "tuned": 0.48,
            "ratio": 1.0,
            "flag": False,
            "trials": {"complete": 8},
        },
        {"dataset": "shop", "model": "bpr", "error": "ValueError: boom\ntrace"},
        {
            "dataset": "ml100k-rating",
            "model": "biasedmf",
            "metric": "rmse",
            "default": 0.95,
            "tuned": 0.93,
            "ratio": 0.93 / 0.95,
            "flag": False,
            "trials": {"complete": 4},
        },
    ]
    (results / "defaults.json").write_text(json.dumps({"flag_below": 0.9, "results": rows}))
    template = tmp_path / "T.md"
    template.write_text("<!-- results: defaults.json -->\n")
    text = report.build(results, template, 1.5)
    assert "| model | ml100k (stratified-item-75-25, ndcg@10) | shop (random-811, ?) |" in text
    assert "| bpr | 0.4000 / 0.4500 = 0.89 **(default >10% worse)** (8 trials) | " in text
    assert "failed: ValueError: boom |" in text
    assert "| ease | 0.4800 / 0.4800 = 1.00 (8 trials) | not run |" in text
    # rating models get a table of their own (an error: tuned / default)
    assert (
        "| model | ml100k-rating (kfold-5, rmse) |\n|---|---|\n| biasedmf | 0.9500 / 0.9300 = 0.98"
        in text
    )
    assert "| biasedmf | n/a" not in text


def test_report_names_a_broken_results_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "ingest.json").write_text('{"rows": 1,')
    (results / "list.json").write_text("[1, 2]")
    template = tmp_path / "T.md"
    template.write_text("<!-- results: ingest.json -->\n")
    text = report.build(results, template, 1.5)
    assert "ingest.json` cannot be read as JSON" in text
    assert "list.json` holds a JSON list, not an object" in text
    assert "ingest.json cannot be read as JSON" in capsys.readouterr().err.replace("`", "")


def test_benchmarks_md_is_generated_from_the_results_files() -> None:
    # Every figure in BENCHMARKS.md comes from bench/results/*.json through bench/report.py:
    # a hand edit or a results file committed without regenerating fails here.
    root = Path(__file__).resolve().parents[2]
    res = subprocess.run(
        [sys.executable, str(root / "bench" / "report.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=root,
    )
    assert res.returncode == 0, res.stdout + res.stderr
