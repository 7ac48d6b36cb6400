"""Acceptance matrix: every data command of the CLI over every dataset shape in ../shared/data.

Shapes (small samples, so the whole matrix takes minutes): reviews-only Amazon (Gift Cards
5-core + catalogue), MovieLens ratings + tags (a MovieLens *latest*-layout sample, see
:mod:`shapes`), ICLRec sequences (Beauty), views-only sessions (Diginetica), a catalogue with
images (fashion products, no behaviour) and the synthetic full funnel.

A cell passes when the command either gives a real result (checked: no constant scores, no
all-zero probabilities, no duplicate names or items) or refuses in one line (exit 2) where the
data cannot support it; a traceback (exit 1) or a degenerate result fails it. Some refusals are
required: a predictor on data without impressions and labels, an audience without a real score.
``pytest -s`` prints the table (command x dataset -> result or message); with
``SHOPSIGHT_MATRIX_OUT=path`` it is also written there as Markdown. ``serve``/``dashboard``
(servers), ``demo``/``generate``/``formats`` (no user data) and ``online-report`` (needs served
impressions) have their own tests.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from shapes import head_lines, movielens_latest_layout
from typer.testing import CliRunner

from shopsight.cli import app

SHARED = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data").resolve()
KEY = "6b" * 32  # a fixed pseudonym key: pseudonymize/export must not depend on a home folder

pytestmark = [pytest.mark.slow, pytest.mark.shared]


def _need(*parts: str) -> Path:
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"needs ../shared/data/{'/'.join(parts)} (public datasets not present)")
    return p


# -- the dataset shapes --------------------------------------------------------------------------


def _amazon(d: Path) -> list[str]:
    src = _need("amazon-gift-cards")
    meta = head_lines(src / "meta_Gift_Cards.json.gz", d / "meta_Gift_Cards.json.gz", 400)
    return [str(src / "Gift_Cards_5.json.gz"), str(meta)]


def _movielens(d: Path) -> list[str]:
    out = movielens_latest_layout(_need("movielens-100k"), d / "ml", n_users=120)
    return [str(out / "ratings.csv"), str(out / "movies.csv"), str(out / "tags.csv")]


def _sequences(d: Path) -> list[str]:
    return [str(head_lines(_need("amazon-beauty-seq", "Beauty.txt"), d / "Beauty.txt", 600))]


def _sessions(d: Path) -> list[str]:
    src = _need("diginetica-sample", "sample_train-item-views.csv")
    return [str(head_lines(src, d / "sample_train-item-views.csv", 3000))]


def _catalogue(d: Path) -> list[str]:
    src = _need("fashion-products")
    folder = d / "fashion"
    folder.mkdir()
    (folder / "images").symlink_to(src / "images")
    return [str(head_lines(src / "styles.csv", folder / "styles.csv", 150))]


def _synthetic(d: Path) -> list[str]:
    res = CliRunner().invoke(
        app,
        [
            "generate",
            "--out",
            str(d / "syn"),
            "--users",
            "150",
            "--items",
            "60",
            "--days",
            "20",
            "--no-images",
            "--seed",
            "4",
        ],
    )
    assert res.exit_code == 0, res.output
    return [str(d / "syn" / f) for f in ("events.csv", "items.csv", "users.csv", "reviews.jsonl")]


SHAPES: dict[str, Callable[[Path], list[str]]] = {
    "amazon reviews": _amazon,
    "movielens ratings+tags": _movielens,
    "beauty sequences": _sequences,
    "diginetica views": _sessions,
    "fashion catalogue+images": _catalogue,
    "synthetic funnel": _synthetic,
}

# Cells that must be refusals (the data cannot support them), by (command, shape).
MUST_REFUSE = {
    ("predict fit", "amazon reviews"),
    ("predict fit", "movielens ratings+tags"),
    ("predict fit", "beauty sequences"),
    ("predict fit", "diginetica views"),
    ("predict fit", "fashion catalogue+images"),
    ("audience (profile)", "movielens ratings+tags"),
    ("audience (profile)", "diginetica views"),
    ("train", "fashion catalogue+images"),
    ("evaluate", "fashion catalogue+images"),
    ("split", "fashion catalogue+images"),
    ("featurize", "beauty sequences"),
    ("featurize", "diginetica views"),
}


# -- running one cell ----------------------------------------------------------------------------


@dataclass
class Cell:
    status: str  # ok | refused | FAIL
    text: str


@dataclass
class Shop:
    name: str
    dir: Path
    store: Path
    files: list[str]
    facts: dict[str, Any] = field(default_factory=dict)


runner = CliRunner()


def _run(args: list[str]) -> tuple[int, str, str]:
    res = runner.invoke(app, ["--quiet", *args], catch_exceptions=True)
    stderr = res.stderr if res.stderr_bytes is not None else ""
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        import traceback

        stderr += "".join(traceback.format_exception(res.exception))
    return res.exit_code, res.stdout, stderr


def _first_line(text: str) -> str:
    lines = [x.strip() for x in text.strip().splitlines() if x.strip()]
    return lines[-1] if lines else ""


def _cell(args: list[str], check: Callable[[dict[str, Any]], str], root: Path) -> Cell:
    cell = _cell_raw(args, check)
    cell.text = cell.text.replace(str(root) + "/", "").replace("error: ", "")
    return cell


def _cell_raw(args: list[str], check: Callable[[dict[str, Any]], str]) -> Cell:
    code, out, err = _run([*args, "--json"])
    if code == 0:
        try:
            data = json.loads(out)
        except ValueError:
            return Cell("FAIL", f"stdout is not one JSON object: {out[:120]!r}")
        problem_or_summary = check(data)
        if problem_or_summary.startswith("DEGENERATE"):
            return Cell("FAIL", problem_or_summary)
        return Cell("ok", problem_or_summary)
    if code == 2 and "Traceback" not in err:
        msg = _first_line(err)
        lines = [x for x in err.strip().splitlines() if x.strip()]
        if len(lines) == 1 and msg:
            return Cell("refused", msg)
        return Cell("FAIL", f"refusal is not one line: {err.strip()[:200]!r}")
    return Cell("FAIL", f"exit {code}: {_first_line(err)[:200]}")


# -- checks of real results (a string summary, or "DEGENERATE: ..." ) ----------------------------


def _distinct(values: list[Any], what: str) -> str:
    if len(values) != len(set(values)):
        return f"DEGENERATE: duplicate {what}"
    return ""


def _scores_vary(scores: list[float], what: str) -> str:
    if len(scores) > 1 and float(np.ptp(np.asarray(scores, float))) == 0.0:
        return f"DEGENERATE: constant {what} ({scores[0]})"
    return ""


def check_ingest(d: dict[str, Any]) -> str:
    t = d["total"]
    if not t["stored"]:
        return "DEGENERATE: nothing stored"
    return f"{t['read']:,} read, {t['stored']:,} stored, {t['quarantined']:,} quarantined"


def check_clean(d: dict[str, Any]) -> str:
    kept = d["after"]
    types = ", ".join(f"{k} {a:,}->{b:,}" for k, (a, b) in (d.get("event_types") or {}).items())
    return f"events {d['before']['events']:,}->{kept['events']:,}" + (
        f" ({types})" if types else ""
    )


def check_stats(d: dict[str, Any]) -> str:
    return f"{d.get('users', 0):,} users, {d.get('items', 0):,} items"


def check_split(d: dict[str, Any]) -> str:
    sizes = d["splits"][0]["sizes"] if "splits" in d else d.get("sizes", {})
    return "split " + "/".join(str(v) for v in sizes.values())


def check_featurize(d: dict[str, Any]) -> str:
    parts = [
        f"{m}: {d[m]['computed']} computed, {d[m]['masked']} masked"
        for m in ("text", "image")
        if d.get(m)
    ]
    return "; ".join(parts) or "DEGENERATE: no modality"


def check_train(d: dict[str, Any]) -> str:
    ds = d.get("dataset") or {}
    return f"{d.get('model', '?')} on {ds.get('interactions', 0):,} interactions"


def check_recommend(d: dict[str, Any]) -> str:
    (rec,) = d["recommendations"].values()
    items = rec["items"]
    if not items:
        return "DEGENERATE: empty list"
    problem = _distinct([it["item_id"] for it in items], "items") or _scores_vary(
        [it["score"] for it in items], "scores"
    )
    if problem:
        return problem
    titled = sum(1 for it in items if (it.get("item") or {}).get("title"))
    return f"{len(items)} items, {titled} with titles"


def check_evaluate(d: dict[str, Any]) -> str:
    out = []
    for m, s in d["summary"].items():
        if "error" in s:
            return f"DEGENERATE: {m} failed: {s['error']['message']}"
        vals = [c["mean"] for k, c in s.items() if isinstance(c, dict) and "mean" in c]
        if not vals or not all(np.isfinite(vals)):
            return f"DEGENERATE: {m} has no finite metric"
        out.append(f"{m} {vals[0]:.3f}")
    pub = d.get("published") or {}
    extra = (
        f"; published {'beside' if pub.get('comparable') else 'apart'}" if pub.get("rows") else ""
    )
    return ", ".join(out) + extra


def check_tune(d: dict[str, Any]) -> str:
    return f"best {d['metric']} {d['validation']['best']:.3f} ({d['trials']['complete']} trials)"


def check_explain(d: dict[str, Any]) -> str:
    recs = d.get("recommendations") or d.get("items") or []
    if not recs:
        return "DEGENERATE: nothing explained"
    reasons = [r.get("reason", "") for r in recs]
    if not any(reasons):
        return "DEGENERATE: no reasons"
    return f"{len(recs)} explained"


def check_predict_fit(d: dict[str, Any]) -> str:
    return "trained"


def check_predict_score(d: dict[str, Any]) -> str:
    rows = d.get("scores") or d.get("predictions") or []
    probs = [
        float(v) for r in rows for k, v in r.items() if k in ("click", "add_to_cart", "purchase")
    ]
    if not probs:
        return "DEGENERATE: no probabilities"
    if all(p == 0.0 for p in probs):
        return "DEGENERATE: all-zero probabilities"
    return f"{len(rows)} pairs, p in [{min(probs):.3f}, {max(probs):.3f}]"


def check_predict_rating(d: dict[str, Any]) -> str:
    models = d.get("models") or {}
    rmse = {m: r["rmse"] for m, r in models.items() if isinstance(r, dict) and "rmse" in r}
    if not rmse:
        return "DEGENERATE: no RMSE"
    if len(rmse) > 1 and len({round(v, 4) for v in rmse.values()}) == 1:
        return "DEGENERATE: every model has the same RMSE"
    return ", ".join(f"{m} RMSE {v:.3f}" for m, v in rmse.items())


def check_personas(d: dict[str, Any]) -> str:
    segs = d.get("segments") or []
    names = [s.get("name") for s in segs if isinstance(s, dict)]
    problem = _distinct(names, "segment names")
    if problem:
        return problem
    return f"{d.get('users', '?')} users, {len(segs)} segments"


def check_audience(d: dict[str, Any]) -> str:
    if not d.get("size"):
        return "DEGENERATE: empty audience"
    scores = [r["score"] for r in d.get("users", []) if isinstance(r, dict)] or []
    problem = _scores_vary(scores, "audience scores") if scores else ""
    return problem or f"{d['size']} users, method {d.get('method')}"


def check_export(d: dict[str, Any]) -> str:
    return f"{d.get('rows', '?')} rows exported"


def _find(d: Any, key: str) -> Any:
    if isinstance(d, dict):
        if key in d:
            return d[key]
        for v in d.values():
            hit = _find(v, key)
            if hit is not None:
                return hit
    return None


def check_dp(d: dict[str, Any]) -> str:
    eps = _find(d, "epsilon")
    if not isinstance(eps, int | float) or not np.isfinite(eps):
        return "DEGENERATE: no epsilon reported"
    return f"epsilon {eps:.2f}"


def check_forget(d: dict[str, Any]) -> str:
    if not d.get("rows_removed"):
        return "DEGENERATE: the user's rows were not removed"
    tables, files = len(d.get("tables") or {}), len(d.get("files") or [])
    return f"{d['rows_removed']} rows in {tables} tables, {files} files"


def check_any(d: dict[str, Any]) -> str:
    return "ok"


# -- the matrix ----------------------------------------------------------------------------------


def _facts(store: Path) -> dict[str, Any]:
    import duckdb

    con = duckdb.connect(str(store), read_only=True)
    try:
        ev = (
            "events_clean"
            if con.execute(
                "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'events_clean'"
            ).fetchone()[0]
            else "events"
        )
        user = con.execute(
            f"SELECT user_id FROM {ev} WHERE item_id IS NOT NULL AND event_type <> 'tag' "
            "GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"
        ).fetchone()
        items = con.execute(
            f"SELECT item_id FROM {ev} WHERE item_id IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC LIMIT 2"
        ).fetchall()
        cat = con.execute(
            "SELECT category FROM items WHERE category IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
        ).fetchone()
    finally:
        con.close()
    category = cat[0].split("|")[0].split(" > ")[0] if cat else "none"
    return {
        "user": user[0] if user else "nobody",
        "items": [r[0] for r in items] or ["none"],
        "category": category,
    }


def _commands(shop: Shop) -> list[tuple[str, list[str], Callable[[dict[str, Any]], str]]]:
    s, d, f = str(shop.store), shop.dir, shop.facts
    model, personas = str(d / "model"), str(d / "personas")
    user, items = f["user"], f["items"]
    space = d / "space.yaml"
    space.write_text("neighbours: {type: int, low: 5, high: 60}\n")
    images = (
        ["--images", str(Path(shop.files[0]).parent / "images")]
        if "fashion" in shop.name
        else ["--no-images"]
    )
    return [
        ("stats", ["stats", "--store", s], check_stats),
        (
            "split",
            ["split", "--store", s, "--method", "random", "--out", str(d / "split.npz")],
            check_split,
        ),
        ("featurize", ["featurize", "--store", s, *images], check_featurize),
        ("train", ["train", "--store", s, "--model", "itemknn", "--out", model], check_train),
        (
            "recommend",
            ["recommend", "--model-dir", model, "--store", s, "--user", user, "-k", "5"],
            check_recommend,
        ),
        (
            "evaluate",
            [
                "evaluate",
                "--store",
                s,
                "--protocol",
                "leave-one-out",
                "--models",
                "popularity,itemknn",
                "--ks",
                "10",
            ],
            check_evaluate,
        ),
        (
            "tune",
            [
                "tune",
                "--store",
                s,
                "--model",
                "itemknn",
                "--space",
                str(space),
                "--trials",
                "2",
                "--protocol",
                "leave-one-out",
                "--study",
                str(d / "study.db"),
            ],
            check_tune,
        ),
        (
            "explain",
            ["explain", "--store", s, "--model", model, "--user", user, "-k", "3"],
            check_explain,
        ),
        (
            "predict fit",
            ["predict", "fit", "--store", s, "--model-dir", model, "--epochs", "1"],
            check_predict_fit,
        ),
        (
            "predict score",
            [
                "predict",
                "score",
                "--store",
                s,
                "--model-dir",
                model,
                "--user",
                user,
                "--item",
                items[0],
                "--user",
                user,
                "--item",
                items[-1],
            ],
            check_predict_score,
        ),
        ("predict rating", ["predict", "rating", "--store", s], check_predict_rating),
        (
            "personas",
            [
                "personas",
                "--store",
                s,
                "--out",
                str(d / "p.html"),
                "--save",
                personas,
                "--k-min",
                "5",
                "--no-features",
                "--user-pages",
                "2",
            ],
            check_personas,
        ),
        (
            "audience (profile)",
            [
                "audience",
                "--store",
                s,
                "--personas",
                personas,
                "--category",
                f["category"],
                "--size",
                "20",
            ],
            check_audience,
        ),
        (
            "audience (model)",
            [
                "audience",
                "--store",
                s,
                "--personas",
                personas,
                "--category",
                f["category"],
                "--model-dir",
                model,
                "--size",
                "20",
            ],
            check_audience,
        ),
        (
            "export",
            ["export", "events_clean", "--store", s, "--out", str(d / "e.parquet")],
            check_export,
        ),
        (
            "dp-train",
            ["dp-train", "--store", s, "--out", str(d / "dp")],
            check_dp,
        ),
        ("forget", ["forget", user, "--store", s, "--path", model], check_forget),
        ("pseudonymize", ["pseudonymize", "--store", s], check_any),
    ]


COMMANDS = [
    "ingest",
    "clean",
    "stats",
    "split",
    "featurize",
    "train",
    "recommend",
    "evaluate",
    "tune",
    "explain",
    "predict fit",
    "predict score",
    "predict rating",
    "personas",
    "audience (profile)",
    "audience (model)",
    "export",
    "dp-train",
    "forget",
    "pseudonymize",
]


def _table(results: dict[str, dict[str, Cell]]) -> str:
    lines = ["| command | " + " | ".join(results) + " |", "|---|" + "---|" * len(results)]
    for cmd in COMMANDS:
        row = []
        for shape in results:
            c = results[shape].get(cmd)
            row.append("" if c is None else f"{c.status}: {c.text}".replace("|", "/")[:160])
        lines.append(f"| {cmd} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def test_every_command_on_every_dataset_shape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _need()
    monkeypatch.setenv("SHOPSIGHT_PSEUDONYM_KEY", KEY)
    monkeypatch.setenv("SHOPSIGHT_QUIET", "1")
    monkeypatch.chdir(tmp_path)
    results: dict[str, dict[str, Cell]] = {}
    for name, build in SHAPES.items():
        d = tmp_path / name.split()[0]
        d.mkdir()
        files = build(d)
        shop = Shop(name, d, d / "shop.duckdb", files)
        cells: dict[str, Cell] = {}
        store = str(shop.store)
        cells["ingest"] = _cell(["ingest", "--store", store, *files], check_ingest, tmp_path)
        cells["clean"] = _cell(["clean", "--store", store], check_clean, tmp_path)
        shop.facts = _facts(shop.store)
        for cmd, args, check in _commands(shop):
            cells[cmd] = _cell(args, check, tmp_path)
        results[name] = cells
        shutil.rmtree(d / "dp", ignore_errors=True)
    table = _table(results)
    print("\n" + table)
    out = os.environ.get("SHOPSIGHT_MATRIX_OUT")
    if out:
        Path(out).write_text(table + "\n", encoding="utf-8")
    failures = [
        f"{cmd} on {shape}: {c.text}"
        for shape, cells in results.items()
        for cmd, c in cells.items()
        if c.status == "FAIL"
    ]
    failures += [
        f"{cmd} on {shape} must refuse, got {results[shape][cmd].status}: {results[shape][cmd].text}"
        for cmd, shape in sorted(MUST_REFUSE)
        if shape in results and results[shape][cmd].status != "refused"
    ]
    assert not failures, "\n".join(failures)
