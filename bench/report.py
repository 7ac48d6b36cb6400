"""Regenerate ``BENCHMARKS.md`` from ``bench/results/*.json`` and the hand-written template.

The template (``bench/BENCHMARKS.template.md``) holds the context a table cannot: what each
benchmark measures, published comparisons, caveats. Each line ``<!-- results: NAME.json -->`` in
it is replaced by that file's tables, rendered here, under a line that gives the file, the
command, the date, the load it ran under and whether its timings are recorded. Timings of a run
whose load was above the threshold show as "n/r" (not recorded); quality figures (NDCG, AUC,
RMSE, ...) do not depend on load and are always shown. Every results file the template does not
name is added at the end: with its own renderer when there is one, else as a table when it has
the simple schema ``{"title": ..., "columns": [...], "rows": [[...] or {...}], "timing_columns":
[...], "notes": ...}``, else as a list of its figures.

    python bench/report.py                      # writes BENCHMARKS.md
    python bench/report.py --check              # exit 1 when BENCHMARKS.md is out of date
    python bench/report.py --results DIR --out FILE
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TEMPLATE = HERE / "BENCHMARKS.template.md"
MARKER = re.compile(r"^<!-- results: ([\w.\-]+\.json) -->$", re.MULTILINE)
DEFAULT_MAX_LOAD = 1.5
NR = "n/r"


# -- provenance ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Provenance:
    date: str | None
    command: str | None
    load: float | None
    load_source: str  # what the load figure is
    recorded: bool | None  # None: the file does not say what load it ran under
    max_load: float
    commit: str | None = None
    quick: bool = False
    loadavg: tuple[float, float] | None = None  # 1-minute load average before and after
    command_known: bool = True  # False: the file does not say; ``command`` is today's rerun

    def line(self, path: str) -> str:
        parts = [f"`{path}`"]
        if self.command and self.command_known:
            parts.append(f"command `{self.command}`")
        elif self.command:
            parts.append(f"rerun with `{self.command}` (the file does not record its command)")
        parts.append(f"date {_date(self.date)}")
        if self.commit:
            parts.append(f"commit {self.commit}")
        if self.load is None:
            parts.append("load not stated in the results file")
        else:
            parts.append(f"load {self.load:.2f} ({self.load_source})")
        if self.loadavg is not None:
            parts.append(
                f"1-minute load average {self.loadavg[0]:.2f} before, {self.loadavg[1]:.2f} after"
            )
        if self.quick:
            parts.append("**quick (smoke) sizes**")
        if self.recorded is False:
            parts.append(
                f"**timings not recorded (load {self.load:.2f} > {self.max_load:g})**: "
                f"shown as {NR}"
            )
        elif self.recorded:
            parts.append(f"recorded (load <= {self.max_load:g})")
        else:
            parts.append("timings of unknown load: read them as indicative")
        return "Source: " + "; ".join(parts) + "."


def _date(value: str | None) -> str:
    if not value:
        return "unknown"
    return value.replace("T", " ").replace("+00:00", " UTC")


def _first(*values: Any) -> float | None:
    for v in values:
        if isinstance(v, list) and v and isinstance(v[0], int | float):
            return float(v[0])
        if isinstance(v, int | float) and not isinstance(v, bool):
            return float(v)
    return None


def provenance(result: dict[str, Any], max_load: float, command: str | None = None) -> Provenance:
    """Where a result came from. Files written through ``run_all`` carry a ``run`` block; older
    ones are read for the load they state (1-minute load average at their start)."""
    run = result.get("run")
    if isinstance(run, dict):
        load = run.get("load")
        if isinstance(load, float) and math.isnan(load):
            load = None
        return Provenance(
            date=run.get("started"),
            command=run.get("command"),
            load=load,
            load_source="other processes, before and during the run",
            recorded=bool(run.get("recorded")) if load is not None else False,
            max_load=float(run.get("max_load", max_load)),
            commit=run.get("git_commit"),
            quick=bool(run.get("quick")),
            loadavg=(
                float(_first(run.get("loadavg_before")) or 0.0),
                float(_first(run.get("loadavg_after")) or 0.0),
            )
            if run.get("loadavg_before") and run.get("loadavg_after")
            else None,
        )
    machine = result.get("machine") if isinstance(result.get("machine"), dict) else {}
    la = result.get("load_average")
    load = _first(
        machine.get("load_average_start"),
        machine.get("load_average"),
        la.get("before") if isinstance(la, dict) else la,
        result.get("load_average_before"),
        result.get("load_start"),
        result.get("load"),
    )
    date = machine.get("date") or result.get("date")
    own = result.get("command")
    return Provenance(
        date=date if isinstance(date, str) else None,
        command=own.strip() if isinstance(own, str) else command,
        command_known=isinstance(own, str),
        load=load,
        load_source="1-minute load average at the start, from the results file",
        recorded=None if load is None else load <= max_load,
        max_load=max_load,
    )


# -- formatting ------------------------------------------------------------------------------


class Ctx:
    """Formats one results file's cells; timings become n/r when they were not recorded."""

    def __init__(self, prov: Provenance) -> None:
        self.prov = prov

    def t(self, value: Any, fmt: str | None = "{:,.2f}", suffix: str = "") -> str:
        if self.prov.recorded is False:
            return NR
        return num(value, fmt) + (suffix if value is not None else "")


def num(value: Any, fmt: str | None = None) -> str:
    """A figure as text: ints with thousands separators, floats to 4 places, unless ``fmt``."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        if isinstance(value, float) and math.isnan(value):
            return "-"
        if fmt is None:
            fmt = "{:,}" if isinstance(value, int) else "{:,.4f}"
        return fmt.format(value)
    return str(value)


def table(headers: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _get(d: Any, *path: Any, default: Any = None) -> Any:
    for p in path:
        if (isinstance(d, dict) and p in d) or (
            isinstance(d, list) and isinstance(p, int) and -len(d) <= p < len(d)
        ):
            d = d[p]
        else:
            return default
    return d


# -- renderers (one per known results file) --------------------------------------------------


def r_ingest(d: dict[str, Any], c: Ctx) -> str:
    return table(
        [
            "rows",
            "ingest s",
            "rows/s",
            "peak RSS MB",
            "bare scan s",
            "ratio",
            "plain load s",
            "ratio",
            "stored",
            "duplicates",
            "quarantined",
        ],
        [
            [
                num(d.get("rows"), "{:,}"),
                c.t(d.get("ingest_seconds")),
                c.t(d.get("ingest_rows_per_s"), "{:,.0f}"),
                num(d.get("ingest_peak_rss_mb"), "{:,}"),
                c.t(d.get("bare_scan_seconds")),
                c.t(d.get("ratio_to_bare_scan"), suffix="x"),
                c.t(d.get("plain_load_seconds")),
                c.t(d.get("ratio_to_plain_load"), suffix="x"),
                num(d.get("stored"), "{:,}"),
                num(d.get("duplicates"), "{:,}"),
                num(d.get("quarantined"), "{:,}"),
            ]
        ],
    )


def r_ingest_profile(d: dict[str, Any], c: Ctx) -> str:
    rows = [
        [c.t(s.get("seconds")), f"`{s.get('sql', '')[:100]}`"] for s in d.get("slow_statements", [])
    ]
    head = (
        f"{num(d.get('rows'), '{:,}')} rows: {num(d.get('stored'), '{:,}')} stored in "
        f"{c.t(d.get('seconds'))} s; statements over 0.2 s:"
    )
    return head + "\n\n" + (table(["s", "statement"], rows) if rows else "(none)")


def r_features(d: dict[str, Any], c: Ctx) -> str:
    m = d.get("machine", {})
    peak, sgemm = m.get("peak_gflops"), m.get("sgemm_gflops_measured")
    rows = []
    for kind, label in (("text", "text"), ("images", "images")):
        runs = _get(d, kind, "runs", default={})
        base = None
        for name, r in runs.items():
            base = base or r.get("per_second")
            gf = r.get("gflops")
            rows.append(
                [
                    label,
                    name,
                    c.t(r.get("per_second"), "{:,.1f}"),
                    c.t(gf, "{:,.1f}"),
                    c.t(gf / peak * 100 if gf and peak else None, "{:.0f}", "%"),
                    c.t(gf / sgemm * 100 if gf and sgemm else None, "{:.0f}", "%"),
                    c.t(r["per_second"] / base if base else None, "{:.2f}", "x"),
                ]
            )
    head = (
        f"Measured SGEMM {c.t(sgemm, '{:.1f}')} GFLOP/s (fp32 peak estimate "
        f"{num(peak, '{:.1f}')}); min cosine fast vs plain: text "
        f"{num(_get(d, 'text', 'min_cosine_fast_vs_sentence_transformers'), '{:.3f}')}, "
        f"images {num(_get(d, 'images', 'min_cosine_fast_vs_torch'), '{:.3f}')}."
    )
    return (
        head
        + "\n\n"
        + table(
            [
                "workload",
                "path",
                "items/s",
                "GFLOP/s",
                "% of fp32 peak",
                "% of measured SGEMM",
                "speed-up",
            ],
            rows,
        )
    )


def r_text_int8(d: dict[str, Any], c: Ctx) -> str:
    return table(
        ["titles", "fp32 titles/s", "int8 titles/s", "speed-up", "cosine min", "cosine mean"],
        [
            [
                num(d.get("titles"), "{:,}"),
                c.t(d.get("fp32_per_second"), "{:,.1f}"),
                c.t(d.get("int8_per_second"), "{:,.1f}"),
                c.t(d.get("speedup_int8_vs_fp32"), suffix="x"),
                num(d.get("cosine_min")),
                num(d.get("cosine_mean")),
            ]
        ],
    )


_DATASET = {"movielens-100k": "MovieLens-100K", "synthetic": "synthetic shop"}


def r_train(d: dict[str, Any], c: Ctx) -> str:
    runs = d.get("runs", [])
    rows = []
    for r in d.get("ratios", []):
        ours = next(
            (
                x
                for x in runs
                if x["dataset"] == r["dataset"]
                and x["model"] == r["model"]
                and x["engine"] == "shopsight"
            ),
            {},
        )
        peers = [
            x
            for x in runs
            if x["dataset"] == r["dataset"]
            and x["model"] == r["model"]
            and x["engine"] != "shopsight"
            and x.get("ndcg10") is not None
        ]
        if any(
            row[0] == _DATASET.get(r["dataset"], r["dataset"]) and row[1] == r["model"].upper()
            for row in rows
        ):
            continue
        fastest = min(peers, key=lambda x: x.get("fit_seconds") or math.inf, default={})
        rows.append(
            [
                _DATASET.get(r["dataset"], r["dataset"]),
                r["model"].upper(),
                num(ours.get("ndcg10")),
                " / ".join(f"{p['engine']} {p['ndcg10']:.4f}" for p in peers),
                c.t(ours.get("fit_seconds")),
                c.t(fastest.get("fit_seconds")) + (f" ({fastest['engine']})" if fastest else ""),
                num(
                    min((ours["ndcg10"] / p["ndcg10"] for p in peers if p["ndcg10"]), default=None)
                    if ours.get("ndcg10")
                    else None,
                    "{:.2f}",
                ),
                c.t(r.get("time_ratio_vs_fastest_peer"), suffix="x"),
            ]
        )
    if not rows:
        rows = [
            [
                _DATASET.get(r["dataset"], r["dataset"]),
                f"{r['model'].upper()} ({r['engine']})",
                num(r.get("ndcg10")),
                "-",
                c.t(r.get("fit_seconds")),
                "-",
                "-",
                "-",
            ]
            for r in runs
        ]
    missing = sorted(
        {f"{r['engine']}: {r['note']}" for r in runs if r.get("ndcg10") is None and r.get("note")}
    )
    head = (
        (f"Peers that did not run: {'; '.join(missing)}. " if missing else "")
        + f"{d.get('threads')} thread(s), {d.get('factors')} factors, fastest of "
        f"{d.get('repeat')} fit(s); split: {d.get('split')}."
    )
    return (
        head
        + "\n\n"
        + table(
            [
                "dataset",
                "model",
                "ours NDCG@10",
                "peer NDCG@10",
                "ours s",
                "fastest peer s",
                "quality ratio (vs best peer)",
                "time vs fastest peer",
            ],
            rows,
        )
    )


def r_eval_memory(d: dict[str, Any], c: Ctx) -> str:
    rows = []
    for r in d.get("runs", []):
        ba = r.get("matmul_seconds_before_after") or [None, None]
        rows.append(
            [
                f"{r['users']:,} x {r['items']:,}",
                num(r.get("peak_rss_gb"), "{:.2f} GB"),
                f"{c.t(r.get('eval_seconds'), '{:.1f}')} ({c.t(r.get('score_seconds'), '{:.1f}')})",
                f"{c.t(r.get('matmul_seconds'), '{:.1f}')} ({c.t(ba[0], '{:.1f}')} / "
                f"{c.t(ba[1], '{:.1f}')})",
                c.t(r.get("ratio_to_matmul"), suffix="x"),
            ]
        )
    return table(
        [
            "users x items",
            "peak RSS",
            "eval s (of which scoring)",
            "bare matmul s (before / after)",
            "ratio",
        ],
        rows,
    )


def _mean(summary: dict[str, Any], model: str, metric: str) -> float | None:
    return _get(summary, model, metric, "mean")


def _published(res: dict[str, Any], metric: str, keep: Callable[[str], bool]) -> str:
    """Published rows with ``metric``; newer files wrap them as {comparable, reason, rows}."""
    pub = res.get("published") or {}
    rows = pub.get("rows", pub) if isinstance(pub, dict) else {}
    text = ", ".join(
        f"{k} {v[metric]}"
        for k, v in rows.items()
        if isinstance(v, dict) and metric in v and keep(k)
    )
    if isinstance(pub, dict) and pub.get("comparable") is False:
        text += f" (the run marks them not comparable: {pub.get('reason')})"
    return text or "-"


def r_reproduce(d: dict[str, Any], c: Ctx) -> str:
    s = d.get("sections", {})
    rows = []
    if "kfold" in s:
        res = s["kfold"]["result"]
        ours = ", ".join(f"{m} {_mean(res['summary'], m, 'rmse'):.4f}" for m in res["models"])
        pub = _published(res, "rmse", lambda k: True)
        rows.append(["kfold-5 (official u1..u5), RMSE", "MovieLens-100K", ours, pub])
    if "topn" in s:
        for proto in ("stratified-item-75-25", "random-75-25", "ratio-80-20"):
            res = s["topn"].get(proto)
            if not res:
                continue
            ours = ", ".join(
                f"{m} {_mean(res['summary'], m, 'ndcg@10'):.4f}"
                for m in res["models"]
                if _mean(res["summary"], m, "ndcg@10")
            )
            pub = _published(res, "ndcg@10", lambda k: True)
            rows.append([f"{proto}, NDCG@10", "MovieLens-100K", ours, pub])
    if "beauty" in s:
        res = s["beauty"]["result"]
        ours = ", ".join(f"{m} {_mean(res['summary'], m, 'ndcg@10'):.4f}" for m in res["models"])
        pub = ", ".join(f"{k} {v}" for k, v in s["beauty"].get("published", {}).items())
        rows.append(["leave-one-out, NDCG@10 (full ranking)", "Amazon Beauty", ours, pub])
    if "tune" in s:
        for model, entry in s["tune"].get("models", {}).items():
            sm = entry["summary"]
            rows.append(
                [
                    f"tuning {model} (random-811, {sm['metric']}, TPE)",
                    "synthetic shop",
                    f"validation {sm['validation']['default']:.4f} -> {sm['validation']['best']:.4f}, "
                    f"test {sm['test']['default']:.4f} -> {sm['test']['best']:.4f}",
                    "-",
                ]
            )
    targets = []
    for k, v in s.items():
        tgt = v.get("target") if isinstance(v, dict) else None
        if isinstance(tgt, dict) and "met" in tgt:
            what = ", ".join(f"{x} {y}" for x, y in tgt.items() if x != "met")
            targets.append(f"{k} ({what}): {'met' if tgt['met'] else 'not met'}")
    fast = [k for k, v in s.items() if isinstance(v, dict) and v.get("fast")]
    secs = ", ".join(
        f"{k} {c.t(v.get('seconds'), '{:.0f}')} s" for k, v in s.items() if isinstance(v, dict)
    )
    note = (
        (f"Targets: {'; '.join(targets)}. " if targets else "")
        + f"Section times: {secs}."
        + (
            f" Sections run with `--fast` (fewer samples/trials): {', '.join(fast)}."
            if fast
            else ""
        )
    )
    return table(["protocol", "dataset", "ours", "published"], rows) + "\n\n" + note


def r_sasrec_beauty(d: dict[str, Any], c: Ctx) -> str:
    m, pub = d.get("metrics", {}), _get(d, "published", "ICLRec", default={})
    p = d.get("params", {})
    rows = [
        ["SASRec (ours)", num(m.get("HR@10")), num(m.get("NDCG@10")), num(m.get("NDCG@20"))],
        [
            "ICLRec (published)",
            num(pub.get("HR@10")),
            num(pub.get("NDCG@10")),
            num(pub.get("NDCG@20")),
        ],
    ]
    hist = d.get("history", [])
    per_epoch = [h.get("seconds") for h in hist if h.get("seconds")]
    train = d.get("train_seconds")
    text = (
        f"{d.get('epochs_run')} epochs (best {d.get('best_epoch')}, "
        f"{'stopped early' if d.get('stopped_early') else 'ran to the limit'}), fit "
        f"{c.t(train / 60 if train else None, '{:.1f}')} min, "
        f"median epoch {c.t(sorted(per_epoch)[len(per_epoch) // 2] if per_epoch else None, '{:.0f}')} s, "
        f"test {c.t(d.get('test_seconds'), '{:.1f}')} s; {d.get('torch_threads')} torch "
        f"threads on {d.get('device')}; dim {p.get('dim')}, max_len {p.get('max_len')}, "
        f"loss {p.get('loss')}."
    )
    return table(["model", "HR@10", "NDCG@10", "NDCG@20"], rows) + "\n\n" + text


_PREDICT_ROWS = (
    ("esmm", "ESMM (+ DIN attention)"),
    ("mmoe", "MMoE"),
    ("shared_bottom", "shared-bottom"),
    ("single_task", "single-task"),
    ("lightgbm", "LightGBM (same features)"),
    ("purchase_on_clicks", "purchase-only, trained on clicked impressions"),
    ("item_rate", "item's past rate (trivial)"),
)


def r_predict(d: dict[str, Any], c: Ctx) -> str:
    f = d.get("funnel", {})
    models = _get(f, "report", "models", default={})
    rows = []
    for key, label in _PREDICT_ROWS:
        mm = models.get(key)
        if not mm:
            continue
        rows.append(
            [label]
            + [num(_get(mm, t, "auc")) for t in ("click", "add_to_cart")]
            + [num(_get(mm, "purchase", k)) for k in ("auc", "gauc", "ece")]
        )
    rating = d.get("rating", {})
    rat = "; ".join(
        f"{name} {_get(r, 'models', 'biases_only', 'rmse'):.4f} -> "
        f"{_get(r, 'models', 'with_text', 'rmse'):.4f} ({r.get('rmse_ratio_text_over_biases')}x)"
        for name, r in rating.items()
        if _get(r, "models", "with_text", "rmse")
    )
    pps = _get(f, "report", "predict_per_s", default={})
    text = (
        f"{num(f.get('events'), '{:,}')} events, {num(f.get('impressions'), '{:,}')} "
        f"impressions, latest {num(f.get('evaluated_impressions'), '{:,}')} split 80/10/10 in "
        f"time, {f.get('epochs')} epochs. Rating RMSE, biases -> biases + text: {rat}. "
        f"Throughput: {c.t(f.get('examples_per_s'), '{:,.0f}')} training examples/s built, "
        f"{c.t(pps.get('esmm'), '{:,.0f}')} ESMM predictions/s "
        f"(LightGBM {c.t(pps.get('lightgbm'), '{:,.0f}')}/s), "
        f"{c.t(f.get('end_to_end_pairs_per_s'), '{:,.0f}')} pairs/s end to end."
    )
    return (
        table(
            ["model", "click AUC", "cart AUC", "purchase AUC", "purchase GAUC", "purchase ECE"],
            rows,
        )
        + "\n\n"
        + text
    )


def r_personas(d: dict[str, Any], c: Ctx) -> str:
    labels = {
        "baseline": "baseline scan + aggregate",
        "profiles": "profiles, chunked by user hash",
        "profiles_1chunk": "profiles, one chunk",
        "personas": "whole `build_personas` (profiles, segments, map)",
    }
    rows = [
        [
            labels.get(k, k),
            num(r.get("users"), "{:,}"),
            c.t(r.get("seconds"), "{:.1f}"),
            c.t(r.get("cpu_seconds"), "{:.1f}"),
            num(r.get("peak_rss_mb"), "{:,.0f}"),
        ]
        for k, r in d.get("runs", {}).items()
    ]
    ratios = d.get("ratios", {})
    text = (
        f"Profiles vs the bare aggregate: {c.t(ratios.get('profiles_vs_scan_time'), '{:.1f}', 'x')} "
        f"the time; chunked vs one chunk: "
        f"{num(ratios.get('chunked_vs_one_chunk_peak_rss'), '{:.2f}')}x the peak memory."
    )
    return table(["run", "users", "wall s", "CPU s", "peak RSS MB"], rows) + "\n\n" + text


def r_personas_quality(d: dict[str, Any], c: Ctx) -> str:
    rows = [
        [
            num(r.get("seed")),
            num(r.get("users"), "{:,}"),
            num(r.get("k")),
            num(r.get("ari")),
            num(r.get("stability_ari")),
            ", ".join(r.get("names", [])),
        ]
        for r in d.get("runs", [])
    ]
    return (
        table(["seed", "users", "k", "ARI vs planted", "stability ARI", "segment names"], rows)
        + f"\n\nMean ARI {num(d.get('ari_mean'))}."
    )


def r_dp(d: dict[str, Any], c: Ctx) -> str:
    rows = d.get("rows", [])
    pop = next((r["ndcg@10"] for r in rows if r["run"].startswith("popularity")), None)
    out = []
    for r in rows:
        std = r.get("ndcg@10_std")
        out.append(
            [
                r["run"],
                num(r.get("epsilon_spent"), "{:.2f}"),
                num(r.get("ndcg@10")) + (f" ± {std:.4f}" if std else ""),
                num(r.get("recall@20")),
                num(r["ndcg@10"] / pop if pop else None, "{:.2f}") + "x",
            ]
        )
    s = d.get("dataset_summary", {})
    head = (
        f"{d.get('dataset')}: {num(s.get('users'), '{:,}')} users, "
        f"{num(s.get('items'), '{:,}')} items; {d.get('protocol')}, on the "
        f"{d.get('evaluated_on')} part; noise seeds {d.get('noise_seeds')}; total "
        f"{c.t(d.get('total_seconds'), '{:.0f}')} s."
    )
    return (
        head
        + "\n\n"
        + table(["run", "epsilon spent", "NDCG@10", "Recall@20", "NDCG vs popularity"], out)
    )


def r_markdown_table(d: dict[str, Any], c: Ctx) -> str:
    """Files that carry their own Markdown table of quality figures (robustness, quantize)."""
    text = d.get("table", "")
    secs = d.get("seconds")
    return str(text).strip() + (f"\n\nWhole run {c.t(secs, '{:.0f}')} s." if secs else "")


def _serve_row(label: str, d: dict[str, Any], c: Ctx) -> list[str]:
    load, bare, lat = (
        d.get("load", {}),
        d.get("bare", {}),
        _get(d, "load", "latency_ms", default={}),
    )
    return [
        label,
        c.t(bare.get("mean_ms")),
        f"{c.t(load.get('server_side_mean_ms'))} "
        f"({c.t(_get(d, 'ratios', 'server_mean_over_bare_mean'), suffix='x')})",
        c.t(load.get("server_cpu_ms_per_request")),
        c.t(load.get("throughput_rps"), "{:,.0f}", " req/s"),
        " / ".join(c.t(lat.get(p), "{:.1f}") for p in ("p50", "p90", "p99")),
        f"{num(load.get('errors'), '{:,}')} / {num(load.get('requests'), '{:,}')}",
    ]


def r_serve(d: dict[str, Any], c: Ctx) -> str:
    label = "HNSW (`--ann`)" if _get(d, "config", "serve_ann") else "exact (default)"
    cfg = d.get("config", {})
    head = (
        f"{num(cfg.get('items'), '{:,}')} items, {num(cfg.get('users'), '{:,}')} users, "
        f"{cfg.get('factors')}-factor ALS; {num(cfg.get('rate'), '{:g}')} req/s for "
        f"{num(cfg.get('seconds'), '{:g}')} s."
    )
    out = (
        head
        + "\n\n"
        + table(
            [
                "server top-k",
                "bare call ms",
                "server ms per request (ratio)",
                "server CPU ms/request",
                "throughput",
                "p50 / p90 / p99 ms",
                "errors",
            ],
            [_serve_row(label, d, c)],
        )
    )
    ann = d.get("ann")
    if ann:
        out += (
            f"\n\nHNSW index ({ann.get('index')}): recall@10 {num(ann.get('recall_at_10'))} "
            f"over {ann.get('users')} users, {c.t(ann.get('query_mean_ms'))} ms per query "
            f"vs {c.t(ann.get('exact_mean_ms'))} ms exact."
        )
    return out


def r_serve_auth(d: dict[str, Any], c: Ctx) -> str:
    rows = []
    for r in _get(d, "auth_compare", "rows", default=[]):
        med, ratio = r.get("median", {}), r.get("ratio_auth_over_no_auth", {})
        na, au = med.get("no_auth", {}), med.get("auth", {})
        rows.append(
            [
                num(r.get("offered_rate"), "{:,.0f}"),
                f"{c.t(na.get('throughput_rps'), '{:,.0f}')} / {c.t(au.get('throughput_rps'), '{:,.0f}')}",
                c.t(ratio.get("throughput_rps"), "{:.3f}"),
                f"{c.t(na.get('p99_ms'))} / {c.t(au.get('p99_ms'))}",
                c.t(ratio.get("p99_ms")),
                f"{c.t(na.get('server_cpu_ms_per_request'))} / "
                f"{c.t(au.get('server_cpu_ms_per_request'))}",
                c.t(ratio.get("server_cpu_ms_per_request")),
                f"{num(na.get('errors'), '{:.0f}')} / {num(au.get('errors'), '{:.0f}')}",
            ]
        )
    return table(
        [
            "offered req/s",
            "throughput no auth / auth",
            "ratio",
            "p99 ms no auth / auth",
            "ratio",
            "server CPU ms/request no auth / auth",
            "ratio",
            "errors",
        ],
        rows,
    )


def r_serve_impressions(d: dict[str, Any], c: Ctx) -> str:
    rows = []
    for mode, on in (("log off", False), ("log on", True)):
        runs = [r for r in d.get("runs", []) if r.get("impressions") is on]
        rows.append(
            [
                mode,
                ", ".join(c.t(r.get("p50_ms")) for r in runs),
                ", ".join(c.t(r.get("p99_ms"), "{:.1f}") for r in runs),
                c.t(_get(d, "median", "on" if on else "off", "throughput_rps"), "{:.1f}", " req/s"),
                ", ".join(c.t(r.get("server_cpu_ms_per_request")) for r in runs),
                f"{sum(r.get('errors', 0) for r in runs)} / {sum(r.get('requests', 0) for r in runs):,}",
            ]
        )
    ratio = d.get("ratio_on_over_off", {})
    rows.append(
        [
            "on / off (medians)",
            c.t(ratio.get("p50_ms"), "{:.3f}"),
            c.t(ratio.get("p99_ms"), "{:.3f}"),
            c.t(ratio.get("throughput_rps"), "{:.3f}"),
            c.t(ratio.get("server_cpu_ms_per_request"), "{:.3f}"),
            "",
        ]
    )
    w = d.get("impressions_written", {})
    cfg = d.get("config", {})
    text = (
        f"{num(cfg.get('items'), '{:,}')} items, {num(cfg.get('users'), '{:,}')} users, "
        f"{num(cfg.get('rate'), '{:g}')} req/s for {num(cfg.get('seconds'), '{:g}')} s, "
        f"{cfg.get('rounds')} round(s) per mode. Lists written with the log on: "
        f"{num(w.get('lists'), '{:,}')} of {num(w.get('lists_requested'), '{:,}')} "
        f"({num(w.get('rows'), '{:,}')} rows)."
    )
    return (
        table(
            [
                "mode",
                "p50 ms (runs)",
                "p99 ms (runs)",
                "throughput",
                "server CPU ms/request (runs)",
                "errors",
            ],
            rows,
        )
        + "\n\n"
        + text
    )


def r_ingest_database(d: dict[str, Any], c: Ctx) -> str:
    rows = []
    for source, runs in d.items():
        if not isinstance(runs, list):
            continue
        for r in runs:
            if not isinstance(r, dict):
                continue
            rows.append(
                [
                    source,
                    r.get("run", ""),
                    num(r.get("read"), "{:,}"),
                    num(r.get("stored"), "{:,}"),
                    num(r.get("duplicates"), "{:,}"),
                    num(r.get("quarantined"), "{:,}"),
                    c.t(r.get("wall_s"), "{:.1f}"),
                    r.get("error") or "",
                ]
            )
    return table(
        ["source", "run", "read", "stored", "duplicates", "quarantined", "wall s", "error"], rows
    )


def r_sasrec_profile(d: dict[str, Any], c: Ctx) -> str:
    """bench/sasrec_profile.py: seconds per epoch against the FLOP floor, before and after."""
    summary = d.get("summary", {})
    rows = []
    for name in ("before", "after"):
        sm = summary.get(name)
        if not isinstance(sm, dict):
            continue
        secs = sm.get("epoch_seconds_median", sm.get("epoch_seconds"))  # median of --repeats
        ratio = sm.get("ratio_to_floor_median", sm.get("ratio_to_floor"))
        rows.append(
            [
                name,
                c.t(secs, "{:.1f}"),
                num(sm.get("floor_tflop"), "{:.2f}"),
                c.t(sm.get("floor_seconds"), "{:.1f}"),
                c.t(ratio, "{:.2f}", "x"),
            ]
        )
    out = table(["code", "s per epoch", "floor TFLOP", "floor s", "ratio to floor"], rows)
    out += (
        f"\n\nBaseline revision {d.get('baseline_rev') or '-'}, head {d.get('head')}, "
        f"{d.get('threads')} threads, {d.get('epochs', '-')} epoch(s) per version"
    )
    if summary.get("speedup") is not None:
        out += f"; speed-up after / before {c.t(summary['speedup'], '{:.2f}', 'x')}"
    if summary.get("speedup_median_of_segment_pairs") is not None:
        out += (
            f" (median over segment pairs run back to back: "
            f"{c.t(summary['speedup_median_of_segment_pairs'], '{:.2f}', 'x')})"
        )
    out += "."
    for name, prof in (d.get("profile") or {}).items():
        top = (prof or {}).get("top", [])[:8]
        if not top:
            continue
        out += f"\n\nTop operators of one epoch, {name} (self CPU):\n\n" + table(
            ["operator", "calls", "self CPU s", "share"],
            [
                [
                    f"`{t.get('op')}`",
                    num(t.get("calls")),
                    c.t(t.get("self_cpu_s"), "{:.1f}"),
                    num(t.get("self_cpu_pct"), "{:.1f}") + "%",
                ]
                for t in top
            ],
        )
    return out


def r_defaults(d: dict[str, Any], c: Ctx) -> str:
    """bench/defaults.py: each model's default score against its tuned one, per dataset."""
    rows = [r for r in d.get("results", []) if isinstance(r, dict)]
    # the same tables `python bench/defaults.py --table` prints (loaded by path: a module
    # named "defaults" may already be imported from elsewhere)
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "_bench_defaults", Path(__file__).resolve().parent / "defaults.py"
    )
    assert spec is not None and spec.loader is not None
    module = sys.modules.setdefault("_bench_defaults", importlib.util.module_from_spec(spec))
    if not hasattr(module, "markdown"):
        spec.loader.exec_module(module)
    markdown = module.markdown

    note = (
        "Each cell: default / tuned = ratio on the protocol's test part (for RMSE, tuned / "
        "default: below 1 means the default is worse either way); tuned = the best of a "
        "small TPE search scored on a validation split from the training part only; a ratio "
        f"below {d.get('flag_below', 0.9)} is flagged."
    )
    # a merged file holds cells of several runs: say which run each cell came from
    runs: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if isinstance(r.get("command"), str):
            runs.setdefault(r["command"], []).append(r)
    lines = []
    for cmd, cells in runs.items():
        dates = sorted(str(r.get("date", "")) for r in cells if r.get("date"))
        loads = [
            float(x)
            for r in cells
            for x in (_first(r.get("load_before")), _first(r.get("load_after")))
            if x is not None
        ]
        where = ", ".join(f"{r.get('model')}/{r.get('dataset')}" for r in cells)
        when = _date(dates[0]) if dates else "date unknown"
        load = f"1-minute load {min(loads):.1f}-{max(loads):.1f}" if loads else "load unknown"
        lines.append(f"- `{cmd}` ({when}, {load}): {where}")
    for r in rows:
        refit = r.get("default_refit")
        if isinstance(refit, dict) and isinstance(refit.get("command"), str):
            before = r.get("default_before") if isinstance(r.get("default_before"), dict) else {}
            lo, hi = _first(refit.get("load_before")), _first(refit.get("load_after"))
            lines.append(
                f"- {r.get('model')}/{r.get('dataset')}: default refitted at today's defaults by "
                f"`{refit['command']}` ({_date(refit.get('date'))}"
                + (
                    f", 1-minute load {lo:.1f}-{hi:.1f}"
                    if lo is not None and hi is not None
                    else ""
                )
                + f"); the former default scored {num(before.get('default'))}"
                + (f" (refit failed: {refit['error']})" if refit.get("error") else "")
            )
    if lines:
        note += "\n\nCells by run:\n\n" + "\n".join(lines)
    return markdown({"results": rows}) + "\n\n" + note


RENDERERS: dict[str, Callable[[dict[str, Any], Ctx], str]] = {
    "defaults": r_defaults,
    "ingest": r_ingest,
    "ingest_profile": r_ingest_profile,
    "ingest_database": r_ingest_database,
    "features": r_features,
    "text_int8": r_text_int8,
    "train": r_train,
    "train_cf": r_train,
    "eval_memory": r_eval_memory,
    "reproduce": r_reproduce,
    "sasrec_beauty": r_sasrec_beauty,
    "predict": r_predict,
    "personas": r_personas,
    "personas_quality": r_personas_quality,
    "personas_quality_before": r_personas_quality,
    "dp": r_dp,
    "dp_shop": r_dp,
    "dp_tune": r_dp,
    "robustness": r_markdown_table,
    "quantize": r_markdown_table,
    "serve": r_serve,
    "serve_ann": r_serve,
    "serve_auth": r_serve_auth,
    "serve_impressions": r_serve_impressions,
}

_TIMING = re.compile(r"(second|_s$|_ms$|per_s|rps|throughput|speedup|gflops|latency)", re.I)


def r_simple(d: dict[str, Any], c: Ctx) -> str:
    """The simple schema: title / columns / rows (lists or dicts) / timing_columns / notes."""
    rows = d["rows"]
    columns = d.get("columns") or (
        list(rows[0].keys()) if rows and isinstance(rows[0], dict) else []
    )
    timing = set(d.get("timing_columns", [c_ for c_ in columns if _TIMING.search(str(c_))]))
    out = []
    for row in rows:
        values = [row.get(k) for k in columns] if isinstance(row, dict) else list(row)
        out.append(
            [
                c.t(v, None) if col in timing else num(v)
                for col, v in zip(columns, values, strict=False)
            ]
        )
    text = table([str(x) for x in columns], out)
    return text + (f"\n\n{d['notes']}" if d.get("notes") else "")


def _flatten(d: Any, prefix: str = "", depth: int = 0) -> list[tuple[str, Any]]:
    if isinstance(d, dict) and depth < 3:
        items: list[tuple[str, Any]] = []
        for k, v in d.items():
            if k in ("machine", "run"):
                continue
            items += _flatten(v, f"{prefix}{k}.", depth + 1)
        return items
    if isinstance(d, int | float | str | bool) or d is None:
        return [(prefix.rstrip("."), d)]
    return []


def r_generic(d: dict[str, Any], c: Ctx) -> str:
    """Any other file: its scalar figures, timings masked when not recorded."""
    if isinstance(d.get("rows"), list) and d["rows"] and isinstance(d["rows"][0], dict | list):
        return r_simple(d, c)
    pairs = [(k, v) for k, v in _flatten(d) if not isinstance(v, str) or len(v) < 120][:60]
    rows = [
        [f"`{k}`", c.t(v, None) if _TIMING.search(k) and isinstance(v, int | float) else num(v)]
        for k, v in pairs
    ]
    return table(["figure", "value"], rows)


def _shown(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def render(
    name: str,
    data: dict[str, Any],
    max_load: float,
    command: str | None,
    path: str | None = None,
) -> str:
    prov = provenance(data, max_load, command)
    stem = name.removesuffix(".json")
    renderer = RENDERERS.get(stem)
    if renderer is None and stem.startswith("sasrec_profile"):
        renderer = r_sasrec_profile
    try:
        body = (renderer or r_generic)(data, Ctx(prov))
    except (KeyError, TypeError, ValueError, ZeroDivisionError, AttributeError) as exc:
        body = (
            f"(this file's layout is not the one its renderer knows: {type(exc).__name__}: "
            f"{exc}; figures listed as found)\n\n" + r_generic(data, Ctx(prov))
        )
    return f"{prov.line(path or f'bench/results/{name}')}\n\n{body}"


# -- the document ----------------------------------------------------------------------------


def _commands() -> dict[str, str]:
    """The full-size command of each job ``run_all`` knows, by results file."""
    try:
        from run_all import ROOT as _root
        from run_all import command_line, discover, shown
    except ImportError:
        return {}
    out: dict[str, str] = {}
    for j in discover():
        if j.out:
            out[j.out] = shown(command_line(j, False, _root / "bench" / "results" / j.out))
    return out


def run_summary(log: dict[str, Any]) -> str:
    rows = []
    for e in log.get("jobs", []):
        rows.append(
            [
                e["job"],
                e["status"],
                num(e.get("seconds"), "{:,.0f}"),
                e.get("verdict", ""),
                (e.get("error") or "").replace("|", "/")[:160],
            ]
        )
    head = (
        f"Started {_date(log.get('started'))}, commit {log.get('git_commit')}"
        f"{' (uncommitted changes)' if log.get('git_dirty') else ''}, "
        f"{'quick sizes' if log.get('quick') else 'full sizes'}, threshold "
        f"{log.get('max_load')}: {log.get('rule', '')}."
    )
    return head + "\n\n" + table(["job", "status", "s", "load", "error"], rows)


def _read(path: Path) -> dict[str, Any] | str:
    """The file's JSON object, or one line saying why it cannot be used."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return f"(`{_shown(path)}` cannot be read as JSON: {exc})"
    if not isinstance(data, dict):
        return f"(`{_shown(path)}` holds a JSON {type(data).__name__}, not an object)"
    return data


def build(results: Path, template: Path, max_load: float) -> str:
    text = template.read_text(encoding="utf-8")
    files = {p.name: p for p in sorted(results.glob("*.json")) if p.name != "run_all.json"}
    commands = _commands()
    used: set[str] = set()

    def section(name: str) -> str:
        used.add(name)
        path = files.get(name)
        if path is None:
            if name in commands:
                return f"(no `{_shown(results / name)}` yet: `{commands[name]}` writes it.)"
            return f"(no `{_shown(results / name)}` yet.)"
        data = _read(path)
        if isinstance(data, str):
            print(f"report: {data.strip('()')}", file=sys.stderr)
            return data
        return render(name, data, max_load, commands.get(name), _shown(path))

    text = MARKER.sub(lambda m: section(m.group(1)), text)
    extra = [n for n in files if n not in used]
    parts = [text.rstrip() + "\n"]
    if extra:
        parts.append(
            "\n## Other results\n\nFiles in `bench/results/` that the hand-written "
            "part does not discuss yet, as the files give them.\n"
        )
        for name in extra:
            parts.append(f"\n### `{name}`\n\n{section(name)}\n")
    unrecorded = sorted((results / "unrecorded").glob("*.json"))
    if unrecorded:
        parts.append(
            "\n## Later runs not recorded\n\nRun after the figures above on a busy machine, "
            "so they did not replace them; their quality figures hold all the same (timings "
            "n/r).\n"
        )
        for p in unrecorded:
            data = _read(p)
            if isinstance(data, str):
                print(f"report: {data.strip('()')}", file=sys.stderr)
                parts.append(f"\n{data}\n")
                continue
            parts.append(
                f"\n### `{p.name}` (later run)\n\n"
                f"{render(p.name, data, max_load, commands.get(p.name), _shown(p))}\n"
            )
    log_path = results / "run_all.json"
    log = _read(log_path) if log_path.exists() else None
    if isinstance(log, dict):
        parts.append("\n## Latest `run_all`\n\n" + run_summary(log) + "\n")
    return "".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=HERE / "results")
    ap.add_argument("--template", type=Path, default=TEMPLATE)
    ap.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    ap.add_argument(
        "--max-load",
        type=float,
        default=DEFAULT_MAX_LOAD,
        help="load above which a file without a run block counts as not recorded",
    )
    ap.add_argument("--check", action="store_true", help="fail when --out is out of date")
    args = ap.parse_args(argv)
    if not args.template.exists():
        print(f"report: {args.template}: template not found", file=sys.stderr)
        return 2
    text = build(args.results, args.template, args.max_load)
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"report: {args.out} is out of date; run python bench/report.py", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
