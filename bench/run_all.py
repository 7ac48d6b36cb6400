"""Run every benchmark in sequence, with the load it ran under, and keep only figures that hold.

Each benchmark (the jobs below, plus any other ``bench/*.py`` found) runs in its own process
group. Before and during it, a sampler counts the runnable (and uninterruptible) tasks of
*other* processes on the machine, in the units of the load average, so a benchmark's own
threads do not count against it; ``os.getloadavg()`` before and after is recorded as well. A
job whose other-process load (the larger of the few seconds before it and the mean during it)
is above ``--max-load`` is **not recorded**: its results file keeps ``"recorded": false`` and
the report shows its timings as not recorded (quality figures do not depend on load). A result
that was not recorded never replaces one that was (or one of unknown load, from before
``run_all``): it goes to ``RESULTS/unrecorded/``.

Every results file gets a ``"run"`` block: the command, date, seconds, git commit, load before
/ during / after, the judgement and the machine. ``RESULTS/run_all.json`` lists every job of
the latest run: ok / failed (with its error) / timed out. A failing job does not stop the run.

    python bench/run_all.py                  # everything, full sizes (hours: run it idle)
    python bench/run_all.py --list
    python bench/run_all.py --only ingest features
    python bench/run_all.py --quick          # small sizes, to bench/_work/quick-results
    python bench/run_all.py --report         # then regenerate BENCHMARKS.md

A new benchmark script is picked up by itself: it is run with ``--out RESULTS/<name>.json`` when
it takes ``--out`` (and ``--quick`` in a quick run when it takes that). A module-level literal
``RUN_ALL = {"full": [...], "quick": [...], "out": "name.json"}`` gives its arguments instead.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
QUICK_RESULTS = HERE / "_work" / "quick-results"
LOGS = HERE / "_work" / "run_all-logs"
NOT_BENCHMARKS = {"run_all", "report"}


@dataclass(frozen=True)
class Job:
    name: str
    script: str  # file name in bench/
    out: str | None  # results file it writes (passed as --out), None: it writes none
    full: tuple[str, ...] = ()
    quick: tuple[str, ...] = ()
    about: str = ""
    timeout_s: float = 4 * 3600
    has_quick: bool = True  # False: no small sizes known, so a quick run leaves it out


_SMALL_SERVE = ("--items", "3000", "--users", "1000", "--seconds", "3", "--rate", "50")

JOBS: tuple[Job, ...] = (
    Job(
        "ingest",
        "ingest.py",
        "ingest.json",
        ("--rows", "10000000"),
        ("--rows", "100000"),
        "10M-row CSV ingest vs DuckDB's bare scan and a plain load",
    ),
    Job(
        "ingest_profile",
        "ingest_profile.py",
        "ingest_profile.json",
        ("--rows", "2000000", "--csv", "bench/_work/events_10000000.csv"),
        ("--rows", "50000", "--csv", "bench/_work/events_100000.csv"),
        "where an ingest's time goes (needs the CSV of the ingest job)",
    ),
    Job(
        "ingest_database",
        "ingest_database.py",
        "ingest_database.json",
        (),
        (),
        "ingest --from PostgreSQL / MariaDB (needs the servers' packages and ../shared)",
    ),
    Job(
        "features",
        "features.py",
        "features.json",
        ("--images", "512", "--repeats", "3"),
        ("--images", "8", "--repeats", "1"),
        "text / image encoders, PyTorch vs ONNX Runtime",
    ),
    Job(
        "text_int8",
        "text_int8.py",
        "text_int8.json",
        (),
        ("--titles", "200"),
        "int8 ONNX text encoder (measured, not adopted)",
    ),
    Job(
        "train_cf",
        "train.py",
        "train_cf.json",
        (
            "--datasets",
            "movielens-100k",
            "synthetic",
            "--models",
            "popularity",
            "als",
            "bpr",
            "--repeat",
            "3",
        ),
        ("--datasets", "movielens-100k", "--models", "popularity", "als", "bpr"),
        "ALS / BPR against implicit and cornac",
    ),
    Job(
        "train",
        "train.py",
        "train.json",
        ("--datasets", "synthetic", "--models", "vbpr"),
        ("--datasets", "movielens-100k", "--models", "popularity", "--engines", "shopsight"),
        "VBPR against cornac (slow: cornac's VBPR takes about 20 minutes)",
    ),
    Job(
        "eval_memory",
        "eval_memory.py",
        "eval_memory.json",
        (),
        ("--users", "2000", "--items", "5000", "--small-users", "500"),
        "full-ranking evaluation: peak memory and time vs the bare matmul",
    ),
    Job(
        "reproduce",
        "reproduce.py",
        "reproduce.json",
        (),
        ("--fast", "--only", "kfold,tune"),
        "published protocols: MovieLens-100K k-fold and top-N, Beauty, tuning",
    ),
    Job(
        "sasrec_beauty",
        "sasrec_beauty.py",
        "sasrec_beauty.json",
        (),
        ("--set", "epochs=1", "--set", "dim=16", "--set", "max_len=10", "--set", "valid_users=500"),
        "SASRec on Amazon Beauty, leave-one-out, full ranking",
    ),
    Job(
        "sasrec_profile",
        "sasrec_profile.py",
        "sasrec_profile.json",
        # before: the code issue 19 was measured on; after: this tree
        ("--baseline-rev", "5f3f66e", "--epochs", "1"),
        ("--epochs", "1", "--no-profile"),
        "SASRec seconds per epoch against its FLOP floor (with --baseline-rev: before / after)",
    ),
    Job(
        "predict",
        "predict.py",
        "predict.json",
        (),
        ("--max-examples", "3000", "--epochs", "1", "--pairs", "200"),
        "behaviour prediction (ESMM, MMoE, LightGBM, ...)",
    ),
    Job(
        "personas",
        "personas.py",
        "personas.json",
        (),
        ("--users", "5000", "--events", "50000", "--items", "1000", "--chunk", "1000"),
        "profiles of 100,000 users: time and memory vs a bare scan",
    ),
    Job(
        "personas_quality",
        "personas_quality.py",
        "personas_quality.json",
        (),
        ("--users", "300", "--seeds", "3"),
        "planted segments recovered (ARI)",
    ),
    Job(
        "dp",
        "dp.py",
        "dp.json",
        ("--dataset", "ml100k"),
        ("--dataset", "ml100k", "--seeds", "0", "--epsilons", "8"),
        "user-level DP on MovieLens-100K",
    ),
    Job(
        "dp_shop",
        "dp.py",
        "dp_shop.json",
        ("--dataset", "shop", "--users", "20000"),
        (
            "--dataset",
            "shop",
            "--users",
            "1000",
            "--items",
            "200",
            "--seeds",
            "0",
            "--epsilons",
            "8",
        ),
        "user-level DP on a 20,000-user synthetic shop",
    ),
    Job(
        "dp_tune",
        "dp.py",
        "dp_tune.json",
        ("--dataset", "ml100k", "--tune"),
        ("--dataset", "ml100k", "--tune", "--seeds", "0", "--epsilons", "8"),
        "the grid that chose dp's defaults (validation part)",
    ),
    Job(
        "robustness",
        "robustness.py",
        "robustness.json",
        (),
        ("--users", "200", "--items", "80", "--days", "20"),
        "noise and attacks vs cleaning",
    ),
    Job(
        "quantize",
        "quantize.py",
        "quantize.json",
        (),
        ("--users", "200", "--items", "80", "--days", "20"),
        "int8 / float16 models",
    ),
    Job(
        "threads",
        "threads.py",
        "threads.json",
        (),
        ("--epochs", "1", "--timeout", "120"),
        "training threads idle and beside busy processes",
    ),
    Job(
        "serve",
        "serve.py",
        "serve.json",
        (),
        (*_SMALL_SERVE, "--bare-calls", "100", "--recall-users", "50"),
        "shopsight serve at 300 req/s vs the bare call, and HNSW",
    ),
    Job(
        "serve_ann",
        "serve.py",
        "serve_ann.json",
        ("--no-ann", "--serve-ann"),
        (*_SMALL_SERVE, "--bare-calls", "100", "--no-ann", "--serve-ann"),
        "shopsight serve --ann under the same load",
    ),
    Job(
        "serve_auth",
        "serve.py",
        "serve_auth.json",
        ("--auth-compare",),
        (*_SMALL_SERVE, "--auth-compare", "--auth-rates", "50", "--auth-repeats", "1"),
        "a token on every read vs none",
    ),
    Job(
        "serve_impressions",
        "serve_impressions.py",
        "serve_impressions.json",
        (),
        ("--items", "3000", "--users", "1000", "--rate", "50", "--seconds", "3", "--rounds", "1"),
        "impression log on vs off",
    ),
)


def _declared(path: Path) -> dict[str, Any] | None:
    """The script's ``RUN_ALL = {...}`` literal, if it has one."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "RUN_ALL" for t in node.targets
        ):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                return None
            return value if isinstance(value, dict) else None
    return None


def discover(bench_dir: Path = HERE, jobs: Sequence[Job] = JOBS) -> list[Job]:
    """The registered jobs, then one job per other benchmark script in ``bench_dir``."""
    found = [j for j in jobs if (bench_dir / j.script).exists()]  # a script may be gone
    known = {j.script for j in jobs}
    for path in sorted(bench_dir.glob("*.py")):
        if path.name in known or path.stem.startswith("_") or path.stem in NOT_BENCHMARKS:
            continue
        if path.stem.startswith("test"):
            continue
        decl = _declared(path)
        if decl is not None:
            out = decl.get("out", f"{path.stem}.json")
            found.append(
                Job(
                    path.stem,
                    path.name,
                    out,
                    tuple(decl.get("full", ())),
                    tuple(decl.get("quick", ())),
                    str(decl.get("about", "")),
                    has_quick="quick" in decl,
                )
            )
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        takes_out = '"--out"' in text
        quick = ("--quick",) if '"--quick"' in text else ()
        found.append(
            Job(
                path.stem,
                path.name,
                f"{path.stem}.json" if takes_out else None,
                (),
                quick,
                "found in bench/ (not registered in run_all.JOBS)",
                has_quick=bool(quick),
            )
        )
    return found


# -- load ------------------------------------------------------------------------------------


def _task_states(proc: Path = Path("/proc")) -> list[tuple[int, int, str]]:
    """(pid, session id, state) of every task (thread) on the machine; [] without /proc."""
    tasks: list[tuple[int, int, str]] = []
    for pid_dir in proc.glob("[0-9]*"):
        try:
            tids = list((pid_dir / "task").iterdir())
        except OSError:
            continue
        for tid in tids:
            try:
                stat = (tid / "stat").read_text()
            except OSError:
                continue
            # "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses.
            rest = stat[stat.rfind(")") + 2 :].split()
            if len(rest) >= 4:
                tasks.append((int(pid_dir.name), int(rest[3]), rest[0]))
    return tasks


def other_load(exclude_session: int | None, tasks: list[tuple[int, int, str]]) -> int:
    """Tasks counted by the load average (running or in uninterruptible sleep) that are not
    this process's and not in the benchmark's session."""
    me = os.getpid()
    return sum(
        1
        for pid, sid, state in tasks
        if state in ("R", "D") and pid != me and (exclude_session is None or sid != exclude_session)
    )


class LoadSampler:
    """Samples the other-process load every ``interval`` seconds on a thread."""

    def __init__(self, interval: float = 0.5, pre_seconds: float = 3.0) -> None:
        self.interval, self.pre_seconds = interval, pre_seconds
        self.session: int | None = None
        self.samples: list[int] = []
        self.available = Path("/proc/self/task").is_dir()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:
        if self.available:
            self.samples.append(other_load(self.session, _task_states()))

    def before(self) -> float | None:
        """Mean other-process load over ``pre_seconds`` with nothing of ours running."""
        self.samples = []
        end = time.monotonic() + self.pre_seconds
        while time.monotonic() < end:
            self.sample()
            time.sleep(self.interval)
        return self.mean()

    def start(self, session: int) -> None:
        self.session, self.samples = session, []
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def stop(self) -> tuple[float | None, float | None]:
        """Mean and maximum over the samples taken since ``start``."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self.mean(), (float(max(self.samples)) if self.samples else None)

    def mean(self) -> float | None:
        if not self.available or not self.samples:
            return None
        return round(sum(self.samples) / len(self.samples), 2)


def judge(
    load_before: float | None,
    load_during: float | None,
    max_load: float,
    loadavg_before: float | None = None,
) -> tuple[bool, float]:
    """(recorded, the load judged): the larger of the other-process load before and during the
    run; the 1-minute load average before it when those could not be sampled."""
    measured = [x for x in (load_before, load_during) if x is not None]
    if measured:
        load = max(measured)
    elif loadavg_before is not None:
        load = loadavg_before
    else:
        return False, float("nan")
    return load <= max_load, round(load, 2)


def verdict(run: dict[str, Any]) -> str:
    """One line for a run block: recorded or not, and the load."""
    load, limit = run.get("load"), run.get("max_load")
    if run.get("recorded"):
        return f"recorded (load {load:.2f} <= {limit:g})"
    if load is None or load != load:
        return "not recorded (load unknown)"
    return f"not recorded (load {load:.2f} > {limit:g})"


# -- running ---------------------------------------------------------------------------------


def git_commit(root: Path = ROOT) -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=False
        ).stdout.strip()

    return {
        "commit": git("rev-parse", "--short=12", "HEAD") or None,
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


def command_line(job: Job, quick: bool, out: Path | None) -> list[str]:
    args = list(job.quick if quick else job.full)
    if out is not None:
        args += ["--out", str(out)]
    return [sys.executable, str(HERE / job.script), *args]


def shown(cmd: list[str]) -> str:
    """The command as a reader would type it from the repository root."""
    parts = ["python"]
    for c in cmd[1:]:
        p = Path(c)
        if p.is_absolute() and p.is_relative_to(ROOT):
            c = str(p.relative_to(ROOT))
        parts.append(c if c and " " not in c else json.dumps(c))
    return " ".join(parts)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def _load_result(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def place(result: dict[str, Any], results: Path, name: str, max_load: float) -> Path:
    """Write a finished result where it belongs: over the current file, unless this one was not
    recorded and the current one may have been (recorded, or of unknown load): then under
    ``unrecorded/``, so that a busy run never pushes out figures taken on a quiet machine."""
    target = results / name
    current = _load_result(target)
    if not result["run"]["recorded"] and current is not None:
        from report import provenance

        if provenance(current, max_load).recorded is not False:
            target = results / "unrecorded" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return target


def run_job(
    job: Job,
    *,
    quick: bool,
    results: Path,
    max_load: float,
    timeout_s: float,
    settle_s: float,
    machine_info: dict[str, Any],
    commit: dict[str, Any],
    sampler: LoadSampler,
) -> dict[str, Any]:
    staging = results / ".staging" / job.out if job.out else None
    if staging is not None:
        staging.parent.mkdir(parents=True, exist_ok=True)
        staging.unlink(missing_ok=True)
    cmd = command_line(job, quick, staging)
    public = command_line(job, quick, results / job.out if job.out else None)
    entry: dict[str, Any] = {"job": job.name, "command": shown(public)}

    before = sampler.before()
    settle_until = time.monotonic() + settle_s
    while before is not None and before > max_load and time.monotonic() < settle_until:
        time.sleep(10.0)
        before = sampler.before()
    loadavg_before = list(os.getloadavg())
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"{job.name}{'-quick' if quick else ''}.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "src"), str(HERE), env.get("PYTHONPATH", "")) if p
    )
    started, t0 = _now(), time.perf_counter()
    status, error = "ok", None
    with log.open("w") as fh:
        fh.write(f"$ {shown(cmd)}\n")
        fh.flush()
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        sampler.start(proc.pid)
        try:
            rc = proc.wait(timeout=timeout_s)
        except KeyboardInterrupt:
            os.killpg(proc.pid, signal.SIGTERM)  # leave no benchmark running behind us
            sampler.stop()
            raise
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            rc, status, error = None, "timeout", f"timed out after {timeout_s:g} s"
        during, peak = sampler.stop()
    seconds = round(time.perf_counter() - t0, 1)
    if status == "ok" and rc != 0:
        status, error = "failed", f"exit status {rc}: " + (_tail(log, 1) or "(no output)")
    recorded, load = judge(before, during, max_load, loadavg_before[0])
    run = {
        "job": job.name,
        "command": shown(public),
        "via": f"python bench/run_all.py --only {job.name}" + (" --quick" if quick else ""),
        "quick": quick,
        "started": started,
        "finished": _now(),
        "seconds": seconds,
        "git_commit": commit["commit"],
        "git_dirty": commit["dirty"],
        "loadavg_before": [round(x, 2) for x in loadavg_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "other_load_before": before,
        "other_load_during": during,
        "other_load_max": peak,
        "load": load,
        "max_load": max_load,
        "recorded": recorded,
        "machine": machine_info,
    }
    entry.update(status=status, seconds=seconds, log=str(log), verdict=verdict(run))
    if status == "ok" and staging is not None:
        result = _load_result(staging)
        if result is None:
            status, error = "failed", f"it did not write {job.out} (a JSON object)"
        else:
            result["run"] = run
            placed = place(result, results, job.out, max_load)
            entry["result"] = str(placed)
            staging.unlink(missing_ok=True)
            # files the job wrote beside its JSON (sasrec_profile's profile tables) go with it
            for extra in sorted(staging.parent.glob(f"{staging.stem}_*")):
                extra.replace(placed.parent / extra.name)
    if error:
        entry.update(status=status, error=error, output_tail=_tail(log))
    entry["load"] = {
        k: run[k]
        for k in (
            "loadavg_before",
            "loadavg_after",
            "other_load_before",
            "other_load_during",
            "load",
            "recorded",
        )
    }
    return entry


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run these jobs (see --list)")
    ap.add_argument("--skip", nargs="+", metavar="NAME", default=[], help="leave these out")
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    ap.add_argument(
        "--max-load",
        type=float,
        default=0.75 * (os.cpu_count() or 1),
        help="other processes' load above which a figure is not recorded (default: 0.75 x "
        "cores = %(default)g)",
    )
    ap.add_argument(
        "--results",
        type=Path,
        default=None,
        help=f"results folder (default {RESULTS.relative_to(ROOT)}, or "
        f"{QUICK_RESULTS.relative_to(ROOT)} with --quick)",
    )
    ap.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds per job (default: the job's own, 900 with --quick)",
    )
    ap.add_argument(
        "--settle",
        type=float,
        default=0.0,
        help="wait up to this many seconds for the load to fall before each job",
    )
    ap.add_argument("--list", action="store_true", help="list the jobs and exit")
    ap.add_argument(
        "--report",
        action="store_true",
        help="regenerate BENCHMARKS.md from the results afterwards (with --quick or --results: "
        "a BENCHMARKS.md in that folder)",
    )
    args = ap.parse_args(argv)

    jobs = discover()
    if args.list:
        width = max(len(j.name) for j in jobs)
        for j in jobs:
            print(f"{j.name:<{width}}  {j.script:<22} -> {j.out or '(no file)':<24} {j.about}")
        return 0
    names = {j.name for j in jobs}
    unknown = [n for n in (args.only or []) + args.skip if n not in names]
    if unknown:
        print(f"run_all: unknown job(s) {', '.join(unknown)}; --list shows them", file=sys.stderr)
        return 2
    chosen = [j for j in jobs if (not args.only or j.name in args.only) and j.name not in args.skip]
    results = args.results or (QUICK_RESULTS if args.quick else RESULTS)
    results.mkdir(parents=True, exist_ok=True)

    from _machine import machine

    info = machine("numpy", "torch", "duckdb")
    commit = git_commit()
    sampler = LoadSampler()
    log: dict[str, Any] = {
        "started": _now(),
        "quick": args.quick,
        "max_load": args.max_load,
        "rule": "a figure is recorded when other processes' load (runnable + uninterruptible "
        "tasks, sampled every 0.5 s, before and during the job) is at most max_load",
        "git_commit": commit["commit"],
        "git_dirty": commit["dirty"],
        "machine": info,
        "jobs": [],
    }
    summary = results / "run_all.json"
    for job in chosen:
        timeout = args.timeout or (900.0 if args.quick else job.timeout_s)
        if args.quick and not job.has_quick:
            why = "no small sizes known (give the script --quick, or RUN_ALL = {'quick': [...]})"
            log["jobs"].append({"job": job.name, "status": "skipped", "seconds": 0, "error": why})
            print(f"[{_now()}] {job.name}: skipped in a quick run: {why}", flush=True)
            log["finished"] = _now()
            summary.write_text(json.dumps(log, indent=2, default=str) + "\n")
            continue
        print(f"[{_now()}] {job.name}: {job.about}", flush=True)
        entry = run_job(
            job,
            quick=args.quick,
            results=results,
            max_load=args.max_load,
            timeout_s=timeout,
            settle_s=args.settle,
            machine_info=info,
            commit=commit,
            sampler=sampler,
        )
        log["jobs"].append(entry)
        line = (
            f"[{_now()}] {job.name}: {entry['status']} in {entry['seconds']} s, {entry['verdict']}"
        )
        if entry.get("error"):
            line += f"\n    {entry['error']}"
        print(line, flush=True)
        log["finished"] = _now()
        summary.write_text(json.dumps(log, indent=2, default=str) + "\n")
    failed = [e["job"] for e in log["jobs"] if e["status"] not in ("ok", "skipped")]
    skipped = [e["job"] for e in log["jobs"] if e["status"] == "skipped"]
    print(
        f"{len(log['jobs']) - len(failed) - len(skipped)} ok, {len(failed)} failed"
        + (f": {', '.join(failed)}" if failed else "")
        + (f", {len(skipped)} skipped: {', '.join(skipped)}" if skipped else "")
        + f"; summary in {summary}"
    )
    if args.report:
        from report import main as report_main

        # BENCHMARKS.md only from the real results; any other folder gets its own copy.
        out = ROOT / "BENCHMARKS.md" if results == RESULTS else results / "BENCHMARKS.md"
        report_main(["--results", str(results), "--out", str(out)])
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
