"""Online evaluation: served impressions joined with what users did next.

Each event (``click``, ``add_to_cart``, ``purchase`` by default) on an item is credited to the
latest impression of that item to that user before it, if it came within ``window`` of the
serving time (last touch, so one event counts once). Per model version and A/B variant:

* ``ctr`` (CTR@k): share of impressions at positions <= k that were engaged with;
* ``conversion``: share of impressions followed by a purchase of that item;
* ``revenue_per_impression``: credited purchase value per impression;
* ``coverage``: distinct items served / catalogue items; ``novelty``: mean self-information
  ``-log2(share of users who interacted with the item)`` of the items served.

Users are the unit of randomisation, and one user's impressions are not independent: the ratio
metrics get delta-method standard errors over users (clustered), 95% normal intervals, and each
variant is compared with the control by a two-sided z-test on the difference (Welch, the same
clustered variances), with the relative lift, its interval and the users per variant needed to
detect a lift of that size (or ``mde``) with 80% power at alpha 0.05.

Impressions store keyed pseudonyms; event user ids are pseudonymised with the same key for the
join (a pseudonymised store's ids already are).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from scipy import stats

from shopsight.data.store import Store, fetch_one
from shopsight.errors import DataError

__all__ = ["OnlineReportError", "online_report"]

ENGAGEMENT: tuple[str, ...] = ("click", "add_to_cart", "purchase")
METRICS: tuple[str, ...] = ("ctr", "conversion", "revenue_per_impression")
Z95 = float(stats.norm.ppf(0.975))
Z80 = float(stats.norm.ppf(0.8))


class OnlineReportError(DataError):
    """The store holds nothing the report can be computed from."""


@dataclass
class RatioStat:
    """A ratio of per-user sums, with its delta-method (user-clustered) standard error."""

    value: float
    se: float
    n_users: int
    per_user_var: float  # variance of the linearised per-user metric (for sample sizes)

    @property
    def interval(self) -> tuple[float, float]:
        return (self.value - Z95 * self.se, self.value + Z95 * self.se)

    def to_dict(self) -> dict[str, float]:
        lo, hi = self.interval
        return {"value": self.value, "lo": lo, "hi": hi, "se": self.se}


def ratio_stat(num: np.ndarray, den: np.ndarray) -> RatioStat:
    """sum(num) / sum(den) over users, clustered delta-method SE."""
    n = len(den)
    total = float(den.sum())
    if n == 0 or total <= 0:
        return RatioStat(float("nan"), float("nan"), n, float("nan"))
    r = float(num.sum()) / total
    mean_den = total / n
    lin = (num - r * den) / mean_den  # influence of each user on the ratio
    var = float(lin.var(ddof=1)) if n > 1 else float("nan")
    return RatioStat(r, math.sqrt(var / n) if n > 1 else float("nan"), n, var)


@dataclass
class Group:
    variant: str | None
    model: str
    model_version: str
    users: int
    lists: int
    impressions: int
    stats: dict[str, RatioStat] = field(default_factory=dict)
    coverage: float = float("nan")
    novelty: float = float("nan")
    items_served: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "model": self.model,
            "model_version": self.model_version,
            "users": self.users,
            "lists": self.lists,
            "impressions": self.impressions,
            **{k: v.to_dict() for k, v in self.stats.items()},
            "coverage": self.coverage,
            "novelty": self.novelty,
            "items_served": self.items_served,
        }


def compare(control: RatioStat, treat: RatioStat, mde: float | None = None) -> dict[str, Any]:
    """Treatment vs control on one metric: lift, z-test p-value, users needed per variant."""
    diff = treat.value - control.value
    se = math.sqrt(treat.se**2 + control.se**2)
    if not (math.isfinite(se) and se > 0 and control.value > 0):
        # Nothing credited in the control (or in either arm): no lift to state.
        why = (
            "nothing credited to either variant"
            if not se > 0
            else "nothing credited to the control"
        )
        return {
            "control": control.value,
            "treatment": treat.value,
            "undefined": f"{why} yet: no lift or test",
            "significant": False,
        }
    z = diff / se
    p = float(2 * stats.norm.sf(abs(z)))
    lift = diff / control.value
    # Relative lift's interval by the delta method on treat/control.
    lse = math.sqrt(
        (treat.se / control.value) ** 2 + (treat.value * control.se / control.value**2) ** 2
    )
    target = abs(diff) if mde is None else abs(mde * control.value)
    pooled = treat.per_user_var + control.per_user_var
    need = (
        math.ceil((Z95 + Z80) ** 2 * pooled / target**2)
        if target > 0 and math.isfinite(pooled)
        else None
    )
    return {
        "control": control.value,
        "treatment": treat.value,
        "difference": diff,
        "difference_ci": [diff - Z95 * se, diff + Z95 * se],
        "lift": lift,
        "lift_ci": [lift - Z95 * lse, lift + Z95 * lse],
        "z": z,
        "p_value": p,
        "significant": bool(p < 0.05),
        "users_needed_per_variant": need,
        "users_needed_for": "the observed difference" if mde is None else f"a {mde:.0%} lift",
    }


def _impressions_source(store: Store, store_path: Path | None) -> str:
    """SQL naming every logged impression: the table, plus a read-only server's spool files."""
    parts = []
    if store.has_table("impressions"):
        parts.append("SELECT * FROM impressions")
    if store_path is not None:
        folder = Path(str(store_path) + ".spool") / "impressions"
        if folder.is_dir() and any(folder.glob("*.parquet")):
            glob = str(folder / "*.parquet").replace("'", "''")
            parts.append(f"SELECT * FROM read_parquet('{glob}')")
    if not parts:
        raise OnlineReportError(
            f"{store.path}: no impressions logged (serve with `shopsight serve`, which logs "
            "every list it serves, before asking for an online report)"
        )
    return " UNION ALL ".join(parts)


def online_report(
    store: Store,
    *,
    window_s: float = 3600.0,
    k: int = 10,
    control: str | None = None,
    engagement: Sequence[str] = ENGAGEMENT,
    mde: float | None = None,
    surfaces: Sequence[str] = ("user",),
    pseudonymize: Callable[[str], str] | None = None,
    store_path: Path | None = None,
) -> dict[str, Any]:
    """The online report as a JSON-ready dict (see the module doc)."""
    if window_s <= 0:
        raise OnlineReportError(f"--window {window_s}: expected a positive number of seconds")
    if k < 1:
        raise OnlineReportError(f"-k {k}: expected >= 1")
    conn = store.conn
    src = _impressions_source(store, store_path if store_path is not None else store.path)
    surf = ", ".join("'" + s.replace("'", "''") + "'" for s in surfaces)
    conn.execute(
        f"""CREATE OR REPLACE TEMP TABLE _imp AS SELECT * FROM ({src})
        WHERE surface IN ({surf}) AND user_id IS NOT NULL"""
    )
    try:
        return _report(store, window_s, k, control, engagement, mde, surfaces, pseudonymize)
    finally:
        for t in ("_imp", "_umap", "_credit"):
            conn.execute(f"DROP TABLE IF EXISTS {t}")


def _report(
    store: Store,
    window_s: float,
    k: int,
    control: str | None,
    engagement: Sequence[str],
    mde: float | None,
    surfaces: Sequence[str],
    pseudonymize: Callable[[str], str] | None,
) -> dict[str, Any]:
    conn = store.conn
    span = fetch_one(conn, "SELECT count(*), min(served_at), max(served_at) FROM _imp")
    assert span is not None
    if not span[0]:
        raise OnlineReportError(
            f"{store.path}: no impressions of {', '.join(surfaces)} lists with a user logged"
        )
    n_imp, t0, t1 = span
    if pseudonymize is None:
        from shopsight.data.pseudonym import Pseudonymizer

        pseudonymize = Pseudonymizer().pseudonymize
    # Event users in the time span, mapped to the impressions' pseudonyms.
    window = f"INTERVAL {int(window_s * 1_000_000)} MICROSECONDS"
    kinds = sorted({*engagement, "purchase"})
    marks = ", ".join("?" for _ in kinds)
    users = conn.execute(
        f"""SELECT DISTINCT user_id FROM events WHERE timestamp >= ? AND
        timestamp <= CAST(? AS TIMESTAMP) + {window} AND event_type IN ({marks})""",
        [t0, t1, *kinds],
    ).fetchall()
    mapping = pa.table(
        {
            "user_id": [u for (u,) in users],
            "pid": [pseudonymize(u) for (u,) in users],
        },
        schema=pa.schema([("user_id", pa.string()), ("pid", pa.string())]),
    )
    conn.register("_umap_src", mapping)
    conn.execute("CREATE OR REPLACE TEMP TABLE _umap AS SELECT * FROM _umap_src")
    conn.unregister("_umap_src")
    eng = ", ".join("'" + e.replace("'", "''") + "'" for e in engagement)
    # Each event credited to the latest impression of its item to its user before it (ASOF).
    conn.execute(
        f"""CREATE OR REPLACE TEMP TABLE _credit AS
        SELECT i.request_id, i.item_id, i.position,
               bool_or(e.event_type IN ({eng})) AS engaged,
               bool_or(e.event_type = 'purchase') AS purchased,
               sum(CASE WHEN e.event_type = 'purchase' THEN coalesce(e.value, 0) ELSE 0 END)
                   AS revenue
        FROM (SELECT m.pid, ev.item_id, ev.event_type, ev.value, ev.timestamp
              FROM events ev JOIN _umap m USING (user_id)
              WHERE ev.event_type IN ({marks}) AND ev.item_id IS NOT NULL) e
        ASOF JOIN _imp i
          ON e.pid = i.user_id AND e.item_id = i.item_id AND e.timestamp >= i.served_at
        WHERE e.timestamp <= i.served_at + {window}
        GROUP BY ALL""",
        kinds,
    )
    per_user = store.arrow(
        f"""SELECT i.variant, i.model, i.model_version, i.user_id,
               count(DISTINCT i.request_id) AS lists,
               count(*) FILTER (WHERE i.position <= {k}) AS imps_k,
               count(*) FILTER (WHERE i.position <= {k} AND c.engaged) AS eng_k,
               count(*) AS imps,
               count(*) FILTER (WHERE c.purchased) AS bought,
               coalesce(sum(c.revenue), 0) AS revenue
        FROM _imp i LEFT JOIN _credit c USING (request_id, item_id, position)
        GROUP BY ALL"""
    )
    n_items = fetch_one(conn, "SELECT count(DISTINCT item_id) FROM items")
    catalogue = int(n_items[0]) if n_items and n_items[0] else 0
    served = store.arrow("""SELECT variant, model, model_version, item_id FROM _imp GROUP BY ALL""")
    n_users_row = fetch_one(conn, "SELECT count(DISTINCT user_id) FROM events")
    n_users = int(n_users_row[0]) if n_users_row and n_users_row[0] else 0
    pop = {
        str(r[0]): int(r[1])
        for r in conn.execute(
            "SELECT item_id, count(DISTINCT user_id) FROM events WHERE item_id IS NOT NULL "
            "GROUP BY item_id"
        ).fetchall()
    }
    groups = _groups(per_user, served, catalogue, n_users, pop)
    credited = fetch_one(conn, "SELECT count(*) FROM _credit")
    notes = []
    if not credited or not credited[0]:
        notes.append(
            f"no {'/'.join(engagement)} event on a served item followed its serving within "
            f"{window_s:g} s: engagement figures are 0 until events arrive (POST /events, ingest)"
        )
    result: dict[str, Any] = {
        "window_s": window_s,
        "k": k,
        "engagement": list(engagement),
        "surfaces": list(surfaces),
        "impressions": int(n_imp),
        "period": {"first_served": str(t0), "last_served": str(t1)},
        "catalogue_items": catalogue,
        "groups": [g.to_dict() for g in groups],
        "notes": notes,
    }
    result["ab"] = _ab(groups, control, mde)
    return result


def _groups(
    per_user: pa.Table,
    served: pa.Table,
    catalogue: int,
    n_users: int,
    pop: dict[str, int],
) -> list[Group]:
    rows = per_user.to_pylist()
    keys = sorted(
        {(r["variant"], r["model"], r["model_version"]) for r in rows},
        key=lambda t: (t[0] or "", t[1], t[2]),
    )
    served_rows = served.to_pylist()
    out = []
    for key in keys:
        mine = [r for r in rows if (r["variant"], r["model"], r["model_version"]) == key]
        numeric = ("lists", "imps_k", "eng_k", "imps", "bought", "revenue")
        col = {c: np.array([r[c] for r in mine], np.float64) for c in numeric}
        g = Group(
            variant=key[0],
            model=key[1],
            model_version=key[2],
            users=len(mine),
            lists=int(col["lists"].sum()),
            impressions=int(col["imps"].sum()),
        )
        g.stats["ctr"] = ratio_stat(col["eng_k"], col["imps_k"])
        g.stats["conversion"] = ratio_stat(col["bought"], col["imps"])
        g.stats["revenue_per_impression"] = ratio_stat(col["revenue"], col["imps"])
        items = [
            r["item_id"]
            for r in served_rows
            if (r["variant"], r["model"], r["model_version"]) == key
        ]
        g.items_served = len(items)
        if catalogue:
            g.coverage = len(items) / catalogue
        if n_users and items:
            info = [-math.log2(max(pop.get(i, 0), 1) / n_users) for i in items]
            g.novelty = float(np.mean(info))
        out.append(g)
    return out


def _ab(groups: list[Group], control: str | None, mde: float | None) -> dict[str, Any] | None:
    """Each variant against the control, per metric (one group per variant: its latest
    version; several versions of one variant are reported but not tested)."""
    by_variant: dict[str, Group] = {}
    for g in groups:
        if g.variant is None:
            continue
        if g.variant not in by_variant or g.impressions > by_variant[g.variant].impressions:
            by_variant[g.variant] = g
    if len(by_variant) < 2:
        return None
    if control is None:
        pops = [v for v, g in by_variant.items() if g.model == "popularity"]
        control = pops[0] if len(pops) == 1 else sorted(by_variant)[0]
    if control not in by_variant:
        raise OnlineReportError(
            f"--control {control}: no such variant (logged: {', '.join(sorted(by_variant))})"
        )
    base = by_variant[control]
    comparisons = []
    for name, g in sorted(by_variant.items()):
        if name == control:
            continue
        comparisons.append(
            {
                "variant": name,
                "model": g.model,
                **{m: compare(base.stats[m], g.stats[m], mde) for m in METRICS},
            }
        )
    return {"control": control, "control_model": base.model, "comparisons": comparisons}


def render_text(report: dict[str, Any]) -> list[str]:
    """Plain lines summarising a report (the CLI prints these as tables)."""
    lines = []
    for g in report["groups"]:
        c, v = g["ctr"], g["conversion"]
        lines.append(
            f"{g['variant'] or '-'} {g['model']}@{g['model_version']}: users {g['users']}, "
            f"CTR@{report['k']} {c['value']:.4f} [{c['lo']:.4f}, {c['hi']:.4f}], "
            f"conversion {v['value']:.4f} [{v['lo']:.4f}, {v['hi']:.4f}]"
        )
    return lines


_METRIC_LABELS = {
    "ctr": "CTR@{k}",
    "conversion": "conversion",
    "revenue_per_impression": "revenue / impression",
}


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def _bars(report: dict[str, Any], metric: str) -> str:
    """An inline SVG of each group's value with its 95% interval (no script, no network)."""
    groups = report["groups"]
    his = [g[metric]["hi"] for g in groups if math.isfinite(g[metric]["hi"])]
    top = max(his) if his else 0.0
    if top <= 0:
        return "<p>no engagement credited yet</p>"
    w, row, left = 520, 34, 170
    scale = (w - left - 20) / top
    parts = [f'<svg width="{w}" height="{row * len(groups) + 10}" role="img">']
    for n, g in enumerate(groups):
        s = g[metric]
        y = 8 + n * row
        name = html.escape(f"{g['variant'] or '-'} ({g['model']})")
        v = s["value"] if math.isfinite(s["value"]) else 0.0
        lo = max(s["lo"], 0.0) if math.isfinite(s["lo"]) else v
        hi = s["hi"] if math.isfinite(s["hi"]) else v
        parts.append(f'<text x="0" y="{y + 15}" font-size="12">{name}</text>')
        parts.append(
            f'<rect x="{left}" y="{y}" width="{v * scale:.1f}" height="20" fill="#4c78a8"/>'
        )
        parts.append(
            f'<line x1="{left + lo * scale:.1f}" x2="{left + hi * scale:.1f}" y1="{y + 10}" '
            f'y2="{y + 10}" stroke="#222" stroke-width="2"/>'
        )
        parts.append(
            f'<text x="{left + hi * scale + 4:.1f}" y="{y + 15}" font-size="11">'
            f"{_fmt(s['value'])}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def render_html(report: dict[str, Any], title: str = "shopsight online report") -> str:
    """A self-contained HTML page of the report (tables and SVG bars; works offline)."""
    k = report["k"]
    esc = html.escape
    out = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title><style>body{{font-family:sans-serif;margin:2em;"
        "max-width:1100px}}table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px "
        "solid #ccc;padding:4px 8px;text-align:right}}th{{background:#f3f3f3}}"
        "td:first-child,th:first-child{{text-align:left}}.sig{{color:#0a7d32;font-weight:bold}}"
        "</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f"<p>{report['impressions']:,} impressions served from "
        f"{esc(report['period']['first_served'])} to {esc(report['period']['last_served'])}; "
        f"events credited within {report['window_s']:g} s of serving (last touch); "
        f"engagement = {esc(', '.join(report['engagement']))}; 95% intervals clustered by "
        "user.</p>",
        *(f"<p><b>Note:</b> {esc(n)}</p>" for n in report.get("notes", [])),
        "<table><tr><th>variant</th><th>model</th><th>version</th><th>users</th><th>lists</th>"
        "<th>impressions</th>"
        + "".join(f"<th>{esc(_METRIC_LABELS[m].format(k=k))}</th>" for m in METRICS)
        + "<th>coverage</th><th>novelty (bits)</th></tr>",
    ]
    for g in report["groups"]:
        cells = "".join(
            f"<td>{_fmt(g[m]['value'])} [{_fmt(g[m]['lo'])}, {_fmt(g[m]['hi'])}]</td>"
            for m in METRICS
        )
        out.append(
            f"<tr><td>{esc(str(g['variant'] or '-'))}</td><td>{esc(g['model'])}</td>"
            f"<td>{esc(g['model_version'])}</td><td>{g['users']:,}</td><td>{g['lists']:,}</td>"
            f"<td>{g['impressions']:,}</td>{cells}<td>{_fmt(g['coverage'], 3)}</td>"
            f"<td>{_fmt(g['novelty'], 2)}</td></tr>"
        )
    out.append("</table>")
    for m in METRICS:
        out.append(f"<h2>{esc(_METRIC_LABELS[m].format(k=k))}</h2>{_bars(report, m)}")
    ab = report.get("ab")
    if ab:
        out.append(f"<h2>A/B test against {esc(ab['control'])} ({esc(ab['control_model'])})</h2>")
        out.append(
            "<table><tr><th>variant</th><th>metric</th><th>control</th><th>variant value</th>"
            "<th>lift [95% CI]</th><th>p-value</th><th>users needed per variant</th></tr>"
        )
        for c in ab["comparisons"]:
            for m in METRICS:
                r = c[m]
                if "undefined" in r:
                    out.append(
                        f"<tr><td>{esc(c['variant'])}</td><td>"
                        f"{esc(_METRIC_LABELS[m].format(k=k))}</td><td colspan='5'>"
                        f"{esc(r['undefined'])}</td></tr>"
                    )
                    continue
                cls = " class='sig'" if r["significant"] else ""
                out.append(
                    f"<tr><td>{esc(c['variant'])}</td><td>{esc(_METRIC_LABELS[m].format(k=k))}"
                    f"</td><td>{_fmt(r['control'])}</td><td>{_fmt(r['treatment'])}</td>"
                    f"<td{cls}>{r['lift']:+.1%} [{r['lift_ci'][0]:+.1%}, {r['lift_ci'][1]:+.1%}]"
                    f"</td><td{cls}>{r['p_value']:.3g}</td>"
                    f"<td>{_fmt(r['users_needed_per_variant'])}</td></tr>"
                )
        out.append("</table>")
    else:
        out.append("<p>No A/B test: fewer than two variants were logged.</p>")
    out.append("</body></html>")
    return "\n".join(out)
