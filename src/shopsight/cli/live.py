"""The live loop on the command line: ``ingest --from DATABASE`` (called by ``ingest``) and
``online-report``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from shopsight.cli._common import JsonOpt, StoreOpt, emit, err, friendly_errors, group, status
from shopsight.data.store import DEFAULT_STORE, Store
from shopsight.errors import InputError

if TYPE_CHECKING:
    from shopsight.data.formats import ReadOptions
    from shopsight.data.ingest import IngestReport
    from shopsight.data.pseudonym import Pseudonymizer

app = group()


def ingest_from_database(
    store: Path,
    url: str,
    tables: list[str] | None,
    query: str | None,
    watermark: str | None,
    full: bool,
    files: list[Path] | None,
    format: str | None,
    options: ReadOptions,
    pz: Pseudonymizer | None,
    as_json: bool,
) -> IngestReport:
    """``shopsight ingest --from URL --table T`` (or ``--query``): see data/database.py."""
    from shopsight.data.database import ingest_database

    if files:
        raise InputError("ingest: give files or --from URL, not both")
    if format is not None:
        raise InputError("--format applies to files; a database's rows are matched by column")
    if full and watermark is None:
        raise InputError("--full re-reads what --watermark skips; it needs --watermark COLUMN")
    with Store(store) as st, status("reading the database...", as_json):
        report = ingest_database(
            st,
            url,
            tables=tables or (),
            query=query,
            watermark=watermark,
            full=full,
            options=options,
            pseudonymizer=pz,
        )
    if not as_json:
        for f in report.files:
            if f.watermark is not None:
                err.print(
                    f"{f.source}: watermark {f.watermark['column']} read above "
                    f"{f.watermark['from'] or '(start)'}, now {f.watermark['to'] or '(none)'}"
                )
    return report


@app.command("online-report")
@friendly_errors
def online_report_cmd(
    store: StoreOpt = Path(DEFAULT_STORE),
    window: Annotated[
        float,
        typer.Option("--window", help="Seconds after serving an event is credited to a list."),
    ] = 3600.0,
    k: Annotated[int, typer.Option("-k", help="CTR@k: positions counted.")] = 10,
    control: Annotated[
        str | None,
        typer.Option(
            "--control", help="The control variant (default: the popularity one, else the first)."
        ),
    ] = None,
    mde: Annotated[
        float | None,
        typer.Option(
            "--mde",
            help="Relative lift the sample size is computed for (default: the observed one).",
        ),
    ] = None,
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write the report as an HTML page.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Served lists joined with later clicks and purchases: CTR@k, conversion, revenue per
    impression, coverage, novelty per model version and A/B variant, with 95% intervals, lift,
    p-value and sample size."""
    from shopsight.evaluation.online import METRICS, online_report, render_html

    with Store(store, read_only=True) as st:
        report = online_report(st, window_s=window, k=k, control=control, mde=mde)
    if html is not None:
        html.write_text(render_html(report), encoding="utf-8")
        report["html"] = str(html)
    if as_json:
        emit(report, True)
        return
    names = {"ctr": f"CTR@{k}", "conversion": "conversion", "revenue_per_impression": "rev/imp"}
    engaged = not report["notes"]
    # A metric nothing was credited to would be a column of zeros: left out, and said so.
    shown = [m for m in METRICS if any(g[m]["value"] > 0 for g in report["groups"])]
    table = Table("variant", "model", "version", "users", "impressions", *(names[m] for m in shown))
    table.add_column("coverage")
    table.add_column("novelty")
    for g in report["groups"]:
        table.add_row(
            g["variant"] or "-",
            g["model"],
            g["model_version"],
            f"{g['users']:,}",
            f"{g['impressions']:,}",
            *(f"{g[m]['value']:.4f} [{g[m]['lo']:.4f}, {g[m]['hi']:.4f}]" for m in shown),
            f"{g['coverage']:.3f}",
            f"{g['novelty']:.2f}",
        )
    err.print(table)
    for note in report["notes"]:
        err.print(f"note: {note}")
    if engaged:
        for m in METRICS:
            if m not in shown:
                err.print(f"{names[m]}: 0 in every group (nothing credited), column left out")
    ab = report.get("ab")
    if not ab:
        err.print("no A/B test: fewer than two variants were logged")
    elif engaged:
        t = Table("variant", "metric", "lift [95% CI]", "p-value", "users needed / variant")
        undefined: list[str] = []
        for c in ab["comparisons"]:
            for m in METRICS:
                r = c[m]
                if "undefined" in r:
                    undefined.append(f"{c['variant']} {names[m]}: {r['undefined']}")
                    continue
                t.add_row(
                    c["variant"],
                    names[m],
                    f"{r['lift']:+.1%} [{r['lift_ci'][0]:+.1%}, {r['lift_ci'][1]:+.1%}]",
                    f"{r['p_value']:.3g}" + (" *" if r["significant"] else ""),
                    str(r["users_needed_per_variant"] or "-"),
                )
        err.print(f"A/B test against {ab['control']} ({ab['control_model']}); * p < 0.05")
        err.print(t)
        for line in undefined:
            err.print(line)
    if html is not None:
        err.print(f"wrote {html}")
