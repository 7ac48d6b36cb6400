"""The personas report: one self-contained HTML file (Plotly inlined, images as data URIs).

Sections: summary, a 2-D map of users coloured by segment, segment sizes and value share,
funnel per segment, one card per segment (description, example item thumbnails, a radar of
its behaviour traits, top affinities), and a page (anchor ``#user-<pseudonym>``) per sampled
user with a search box. Nothing is fetched from the network: the file works offline.

The same HTML fragments serve the live dashboard (``dashboard.py``). PNG export of the charts
uses a headless Chromium through Playwright (:func:`export_pngs`), since kaleido is not part of
the environment.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shopsight.errors import MissingFileError

if TYPE_CHECKING:
    from shopsight.personas.core import Personas

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PALETTE = (
    "#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#EECA3B", "#9D755D",
    "#FF9DA6", "#BAB0AC", "#2E91E5", "#1CA71C",
)  # fmt: skip
RADAR_TRAITS = (
    "activity",
    "events_per_session",
    "purchase_propensity",
    "view_to_buy",
    "search_share",
    "social_share",
    "price_z",
    "night_share",
    "weekend_share",
    "brand_concentration",
    "monetary",
    "mean_rating",
    "rating_bias",
    "review_sentiment",
)
CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#222;background:#f6f7f9;overflow-wrap:break-word}
header{background:#1f2a44;color:#fff;padding:16px 28px}header h1{margin:0 0 4px;font-size:22px}
header p{margin:0;opacity:.85}main{padding:16px 28px;max-width:1280px}
section.block{background:#fff;border-radius:8px;padding:14px 18px;margin:14px 0;box-shadow:0 1px 3px #0002;min-width:0}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(460px,100%),1fr));gap:14px}
.segment-card{background:#fff;border-radius:8px;padding:12px 14px;box-shadow:0 1px 3px #0002;border-top:5px solid #888;min-width:0}
.segment-card h3{margin:2px 0 6px;font-size:17px}.muted{color:#667;font-size:13px}
.thumbs img{width:64px;height:64px;border-radius:4px;margin:2px;border:1px solid #ddd;object-fit:cover}
table.kv{border-collapse:collapse;font-size:13px;max-width:100%}table.kv td{padding:2px 8px 2px 0;vertical-align:top}table.kv td:first-child{white-space:nowrap}
.scroll{overflow-x:auto;max-width:100%}
table.cmp{border-collapse:collapse;font-size:13px}table.cmp th,table.cmp td{padding:3px 8px;text-align:left;vertical-align:top;border-bottom:1px solid #eee}
table.cmp th{font-weight:600}table.cmp td.base{background:#f4f4f8}
.cell{display:flex;flex-direction:column;min-width:72px}.cell .bar{height:6px;background:#4C78A8;border-radius:2px;margin-top:2px}
.bar{display:inline-block;height:10px;background:#4C78A8;border-radius:2px;vertical-align:middle}
.up{color:#1a7f37}.down{color:#b3261e}
.chip{display:inline-block;background:#eef;border-radius:10px;padding:1px 8px;margin:2px;font-size:12px}
.warn{background:#fff4e5;border-left:4px solid #f0a020;padding:4px 8px;font-size:13px;margin:6px 0}
.signal-no{color:#888}.signal-yes{color:#1a7f37}
#search{display:flex;flex-wrap:wrap;gap:8px;align-items:center}#search input{padding:6px 8px;width:360px;max-width:100%;font-size:14px}
#search-result{font-size:13px;color:#a33}
.user-page,.segment-page{display:none}.user-page:target,.segment-page:target{display:block}
.hours{display:flex;align-items:flex-end;height:48px;gap:1px}.hours span{width:8px;background:#72B7B2}
.chart{min-width:0;max-width:100%}
blockquote{margin:4px 0 4px 8px;padding-left:8px;border-left:3px solid #ccd;font-style:italic;font-size:13px}
ol.items{margin:4px 0;padding-left:22px;font-size:13px}
a{color:#2659b3}
@media (max-width:600px){header{padding:12px 14px}main{padding:8px 8px}section.block{padding:10px 10px}
.segment-card{padding:10px 10px}header h1{font-size:19px}}
"""


def _e(v: Any) -> str:
    return html.escape("" if v is None else str(v))


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return _e(v)


def _color(seg: int) -> str:
    return PALETTE[seg % len(PALETTE)] if seg >= 0 else "#999999"


def _fig_html(fig: Any, div_id: str, include_js: bool) -> str:
    out: str = fig.to_html(
        full_html=False,
        include_plotlyjs=include_js,
        div_id=div_id,
        config={"displaylogo": False, "responsive": True},
    )
    return out


# -- figures -----------------------------------------------------------------------------------


def _signals(p: Personas) -> dict[str, dict[str, Any]]:
    sig: dict[str, dict[str, Any]] = p.meta.get("signals") or {}
    return sig


def _has(p: Personas, *names: str) -> bool:
    from shopsight.personas.signals import available

    return available(_signals(p), *names)


def _metric(p: Personas, key: str) -> dict[str, Any] | None:
    for m in p.meta.get("comparison", {}).get("metrics", []):
        if m["key"] == key:
            return dict(m)
    return None


def _short_name(name: str, n: int = 38) -> str:
    return name if len(name) <= n else name[: n - 1].rstrip() + "…"


def map_figure(p: Personas, max_points: int = 5000) -> Any:
    """Where users sit on the 2-D map: a density of all users, each segment's outline, and
    its centre. Points are not drawn one by one: many users share a spot on sparse data."""
    import plotly.graph_objects as go

    pts = p.map_points(max_points=max_points)
    names = {s["id"]: s["name"] for s in p.segment_list}
    axes = p.meta.get("map_axes") or {}
    x, y = np.array(pts["x"]), np.array(pts["y"])
    seg_arr = np.array(pts["segment"])
    fig = go.Figure()
    fig.add_trace(
        go.Histogram2d(
            x=x,
            y=y,
            nbinsx=40,
            nbinsy=40,
            colorscale=[[0, "rgba(255,255,255,0)"], [0.001, "#eef1f7"], [1, "#1f2a44"]],
            showscale=False,
            name="all users",
            hovertemplate="%{z} users here<extra></extra>",
        )
    )
    for seg in sorted(set(pts["segment"])):
        m = seg_arr == seg
        if seg < 0 or m.sum() < 3:
            continue
        fig.add_trace(
            go.Histogram2dContour(
                x=x[m],
                y=y[m],
                name=_short_name(names.get(seg, "suppressed")),
                contours={"coloring": "lines", "start": 0, "showlabels": False},
                ncontours=4,
                line={"color": _color(seg), "width": 2},
                colorscale=[[0, _color(seg)], [1, _color(seg)]],
                showscale=False,
                showlegend=False,
                hoverinfo="skip",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=[float(np.median(x[m]))],
                y=[float(np.median(y[m]))],
                mode="markers",
                marker={"size": 14, "color": _color(seg), "line": {"color": "#fff", "width": 2}},
                name=_short_name(names.get(seg, "suppressed")),
                hovertemplate=f"{html.escape(names.get(seg, ''))}: {int(m.sum()):,} users"
                "<extra></extra>",
            )
        )
    fig.update_layout(
        title={"text": "Users: shade = how many, lines = segments"},
        height=520,
        margin={"l": 40, "r": 10, "t": 50, "b": 40},
        legend={"orientation": "h", "y": -0.15},
        xaxis={"title": {"text": axes.get("x", "")}, "showticklabels": False, "zeroline": False},
        yaxis={"title": {"text": axes.get("y", "")}, "showticklabels": False, "zeroline": False},
        plot_bgcolor="#fff",
    )
    return fig


def sizes_figure(p: Personas) -> Any:
    import plotly.graph_objects as go

    segs = p.segment_list
    names = [_short_name(s["name"], 28) for s in segs]
    bars = [go.Bar(name="share of users", x=names, y=[s["share"] for s in segs])]
    if all(s.get("value_share") is not None for s in segs):
        bars.append(go.Bar(name="share of value", x=names, y=[s["value_share"] for s in segs]))
    fig = go.Figure(bars)
    fig.update_layout(
        title="Segment size" + (" and value share" if len(bars) > 1 else ""),
        barmode="group",
        height=380,
        yaxis={"tickformat": ".0%"},
        legend={"orientation": "h", "y": 1.15},
        margin={"l": 40, "r": 10, "t": 80, "b": 110},
    )
    return fig


CONVERSION_STEPS = (
    ("view_to_cart", "viewed → carted"),
    ("cart_to_purchase", "carted → bought"),
    ("view_to_purchase", "viewed → bought"),
)


def conversion_figure(p: Personas) -> Any | None:
    """Conversion rates per funnel step, every segment beside all users, one y scale."""
    import plotly.graph_objects as go

    found = [(lab, _metric(p, key)) for key, lab in CONVERSION_STEPS]
    rows = [(lab, m) for lab, m in found if m is not None]
    if not rows:
        return None
    steps = [lab for lab, _ in rows]
    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            name="all users",
            x=steps,
            y=[m["baseline"] for _, m in rows],
            marker={"color": "#444"},
            texttemplate="%{y:.1%}",
        )
    )
    for j, s in enumerate(p.segment_list):
        fig.add_trace(
            go.Bar(
                name=_short_name(s["name"]),
                x=steps,
                y=[m["segments"][j] for _, m in rows],
                marker={"color": _color(s["id"])},
                texttemplate="%{y:.1%}",
            )
        )
    fig.update_layout(
        title="Conversion per funnel step (items), each segment beside all users",
        barmode="group",
        height=420,
        yaxis={"tickformat": ".0%", "rangemode": "tozero"},
        legend={"orientation": "h", "y": -0.15},
        margin={"l": 50, "r": 10, "t": 50, "b": 40},
    )
    return fig


# Kept for callers of the old name: the per-step conversion chart replaced the stacked funnel.
funnel_figure = conversion_figure


def radar_range(segs: Sequence[dict[str, Any]]) -> float:
    """One radial scale for every segment's radar: the largest |z| shown, at least 1."""
    zs = [
        abs(float(t["z"]))
        for s in segs
        for name, t in s.get("traits", {}).items()
        if name in RADAR_TRAITS and t.get("mean") is not None
    ]
    return max([1.0, *zs]) * 1.1


def radar_figure(seg: dict[str, Any], r_max: float | None = None) -> Any | None:
    """The segment's behaviour in z-units vs all users (0); traits without data are left out."""
    import plotly.graph_objects as go

    traits = seg.get("traits", {})
    names = [t for t in RADAR_TRAITS if t in traits and traits[t].get("mean") is not None]
    if len(names) < 3:
        return None
    z = [float(traits[t]["z"]) for t in names]
    lim = r_max or max([1.0, *map(abs, z)]) * 1.1
    fig = go.Figure(
        [
            go.Scatterpolar(
                r=[0.0] * (len(names) + 1),
                theta=[READ.get(n, n) for n in names + names[:1]],
                mode="lines",
                line={"color": "#999", "dash": "dot"},
                name="all users",
                hoverinfo="skip",
            ),
            go.Scatterpolar(
                r=z + z[:1],
                theta=[READ.get(n, n) for n in names + names[:1]],
                fill="toself",
                name=seg["name"],
                line={"color": _color(seg["id"])},
            ),
        ]
    )
    fig.update_layout(
        height=320,
        margin={"l": 70, "r": 70, "t": 40, "b": 30},
        polar={"radialaxis": {"range": [-lim, lim]}},
        showlegend=False,
        title={"text": "behaviour vs. all users (z; dotted = all users)", "font": {"size": 12}},
    )
    return fig


READ = {
    "activity": "activity",
    "purchase_propensity": "buying",
    "view_to_buy": "view-to-buy",
    "search_share": "searching",
    "social_share": "sharing",
    "price_z": "price level",
    "night_share": "night",
    "weekend_share": "weekend",
    "brand_concentration": "brand loyalty",
    "monetary": "value",
    "mean_rating": "rating",
    "rating_bias": "generosity",
    "review_sentiment": "review tone",
    "events_per_session": "visit length",
}


def affinity_rows(seg: dict[str, Any]) -> list[tuple[str, float]]:
    rows = []
    for kind in ("category", "style", "keyword", "brand", "topic"):
        for o in seg.get("over_represented", {}).get(kind, [])[:3]:
            rows.append((f"{kind}: {_short_name(str(o['key']), 30)}", float(o["lift"])))
    return rows[:10][::-1]


def affinity_range(segs: Sequence[dict[str, Any]]) -> float:
    lifts = [lift for s in segs for _, lift in affinity_rows(s)]
    return max([2.0, *lifts]) * 1.05


def affinity_figure(seg: dict[str, Any], x_max: float | None = None) -> Any | None:
    """Keys over-represented in the segment (lift), on one x scale for all segments."""
    import plotly.graph_objects as go

    rows = affinity_rows(seg)
    if not rows:
        return None
    fig = go.Figure(
        go.Bar(
            x=[r[1] for r in rows],
            y=[r[0] for r in rows],
            orientation="h",
            marker={"color": _color(seg["id"])},
        )
    )
    fig.update_layout(
        height=300,
        margin={"l": 10, "r": 10, "t": 30, "b": 40},
        title={"text": "over-represented vs all users (lift; 1 = same)", "font": {"size": 12}},
        xaxis={"title": "lift", "range": [0, x_max or max(r[1] for r in rows) * 1.05]},
        yaxis={"automargin": True},
    )
    return fig


# -- HTML fragments ----------------------------------------------------------------------------


def signals_html(p: Personas) -> str:
    sig = _signals(p)
    if not sig:
        return ""
    rows = "".join(
        f'<tr><td class="signal-{"yes" if v["available"] else "no"}">'
        f"{'✓' if v['available'] else '✗'} {_e(k.replace('_', ' '))}</td><td>{_e(v['reason'])}</td></tr>"
        for k, v in sig.items()
    )
    return f"""<section class="block" id="signals"><h2>Signals in this data</h2>
<p class="muted">Profiles, names, charts and claims below use only the signals marked ✓.</p>
<div class="scroll"><table class="kv">{rows}</table></div></section>"""


def _fmt_metric(v: Any, kind: str) -> str:
    if v is None:
        return "–"
    if kind == "pct":
        return f"{float(v):.1%}"
    if kind == "hour":
        return f"{int(v):02d}:00"
    if kind == "signed":
        return f"{float(v):+.2f}"
    return f"{float(v):,.2f}" if abs(float(v)) < 100 else f"{float(v):,.0f}"


def comparison_html(p: Personas, only: int | None = None) -> str:
    """Each metric for all users and every segment (or one), bars on one scale per row."""
    cmp_ = p.meta.get("comparison") or {}
    metrics = cmp_.get("metrics", [])
    if not metrics:
        return ""
    order = cmp_.get("segments", [s["id"] for s in p.segment_list])
    names = {s["id"]: s["name"] for s in p.segment_list}
    cols = [(j, sid) for j, sid in enumerate(order) if only is None or sid == only]
    head = "".join(
        f'<th style="border-top:4px solid {_color(sid)}"><a href="#segment-page-{sid}">'
        f"{_e(_short_name(names.get(sid, str(sid)), 30))}</a></th>"
        for _, sid in cols
    )
    body = []
    for m in metrics:
        vals = [m["baseline"], *[m["segments"][j] for j, _ in cols]]
        finite = [abs(float(v)) for v in vals if v is not None]
        scale = max(finite) if finite and max(finite) > 0 else 1.0
        base = m["baseline"]

        def cell(
            v: Any, cls: str = "", base: Any = base, m: dict[str, Any] = m, scale: float = scale
        ) -> str:
            if v is None:
                return f'<td class="{cls}">–</td>'
            arrow = ""
            # Shares of the whole (baseline 100%) have no "above / below all users".
            if (
                cls != "base"
                and base is not None
                and m["kind"] != "hour"
                and not (m["key"].startswith("share_"))
            ):
                diff = float(v) - float(base)
                rel = abs(diff) / max(abs(float(base)), 1e-9)
                if rel >= 0.1:
                    arrow = f' <span class="{"up" if diff > 0 else "down"}">{"▲" if diff > 0 else "▼"}</span>'
            width = 0 if m["kind"] == "hour" else int(100 * abs(float(v)) / scale)
            bar = f'<span class="bar" style="width:{width}%"></span>' if width else ""
            return (
                f'<td class="{cls}"><div class="cell"><span>{_fmt_metric(v, m["kind"])}{arrow}'
                f"</span>{bar}</div></td>"
            )

        warn = ""
        if m["key"] == "stability":
            from shopsight.personas.core import STABILITY_WARN

            warn = f' <span class="muted">(under {STABILITY_WARN}: unstable)</span>'
        body.append(
            f"<tr><th>{_e(m['label'])}{warn}</th>{cell(base, 'base')}"
            + "".join(cell(m["segments"][j]) for j, _ in cols)
            + "</tr>"
        )
    return f"""<div class="scroll"><table class="cmp"><tr><th>metric</th><th>all users</th>{head}</tr>
{"".join(body)}</table></div>
<p class="muted">Bars share one scale per row; ▲/▼: at least 10% above/below all users.</p>"""


def _item_name(it: dict[str, Any]) -> str:
    return _short_name(str(it.get("title") or it["item_id"]), 70)


def _aspects_html(seg: dict[str, Any]) -> str:
    asp = seg.get("aspects") or {}
    parts = []
    for kind, head in (("praise", "Praise"), ("complaint", "Complaints")):
        rows = asp.get(kind) or []
        if not rows:
            continue
        items = "".join(
            f"<li><b>{_e(r['topic'])}</b> ({r['reviews']} reviews)"
            f"<blockquote>“{_e(r['example'])}”</blockquote></li>"
            for r in rows
        )
        parts.append(f'<div class="muted">{head}:</div><ul class="items">{items}</ul>')
    return "".join(parts)


def segment_csv_link(p: Personas, seg: dict[str, Any], max_rows: int = 20_000) -> str:
    if seg["size"] > max_rows:
        return (
            f'<span class="muted">export: {seg["size"]:,} users: use the dashboard\'s '
            f"/dashboard/segment/{seg['id']}.csv</span>"
        )
    data = base64.b64encode(p.segment_csv(seg["id"]).encode("utf-8")).decode("ascii")
    return (
        f'<a download="segment-{seg["id"]}.csv" href="data:text/csv;base64,{data}">'
        f"export {seg['size']:,} users (CSV, pseudonymised)</a>"
    )


def segment_card_html(
    seg: dict[str, Any],
    charts: str = "",
    *,
    link: str | None = None,
    export: str = "",
    value_known: bool = True,
) -> str:
    thumbs = "".join(
        f'<img alt="{_e(_item_name(it))}" title="{_e(_item_name(it))}" src="{it["thumbnail"]}">'
        for it in seg.get("example_items", [])
        if it.get("thumbnail")
    )
    examples = "; ".join(_e(_item_name(it)) for it in seg.get("example_items", []))
    vis = "".join(
        f'<img alt="{_e(v["key"])}" title="{_e(v["key"])}" src="{u}">'
        for v in seg.get("visual_style", [])
        for u in v.get("thumbnails", [])[:2]
    )
    demo = "; ".join(
        f"{k}: " + ", ".join(f"{_e(r['key'])} (x{r['lift']:.1f})" for r in rows)
        for k, rows in seg.get("demographics", {}).items()
        if rows
    )
    stab = seg.get("stability_jaccard")
    value = (
        f" · {seg['value_share']:.0%} of value"
        if value_known and seg.get("value_share") is not None
        else ""
    )
    band = f" · price band {_e(seg['price_band'])}" if seg.get("price_band") != "unknown" else ""
    warn = (
        f'<div class="warn">{_e(seg["stability_warning"])}</div>'
        if seg.get("stability_warning")
        else ""
    )
    href = link if link is not None else f"#segment-page-{seg['id']}"
    return f"""<div class="segment-card" id="segment-{seg["id"]}" style="border-top-color:{_color(seg["id"])}">
<h3>{_e(seg["name"])}</h3>
<div class="muted">{seg["size"]:,} users ({seg["share"]:.0%}){value}{band}{f" · stability {stab:.2f}" if stab is not None else ""}</div>
{warn}<p>{_e(seg["description"])}</p>
<div class="thumbs">{thumbs}</div>
<div class="muted">Distinctive items: {examples or "–"}</div>
{f'<div class="muted">Visual style:</div><div class="thumbs">{vis}</div>' if vis else ""}
{_aspects_html(seg)}
{f'<div class="muted">Demographics: {demo}</div>' if demo else ""}
<p><a class="open-segment" href="{_e(href)}">Open this segment</a>{" · " + export if export else ""}</p>
{charts}</div>"""


def segment_page_html(
    p: Personas,
    seg: dict[str, Any],
    *,
    example_users: Sequence[str] = (),
    user_href: str = "#user-{}",
    anchor: bool = True,
    export: str = "",
) -> str:
    """A segment's own page: what distinguishes it, top items, example users, recommendations."""
    top = "".join(
        f"<li>{_e(_item_name(it))} <span class='muted'>({it['share']:.0%} of members)</span></li>"
        for it in seg.get("top_items", [])
    )
    recs = "".join(
        f"<li>{_e(_item_name(it))} <span class='muted'>(in the top 10 of {it['share']:.0%})</span></li>"
        for it in seg.get("recommended_items", [])
    )
    users = " ".join(f'<a href="{user_href.format(_e(u))}">{_e(u)}</a>' for u in example_users)
    traits = sorted(
        (
            (abs(float(t["z"])), name, float(t["z"]))
            for name, t in seg.get("traits", {}).items()
            if t.get("mean") is not None
        ),
        reverse=True,
    )
    dist = "".join(
        f"<li>{_e(READ.get(name, name.replace('_', ' ')))}: "
        f"{'above' if z > 0 else 'below'} all users by {abs(z):.1f} standard deviations</li>"
        for a, name, z in traits[:5]
        if a >= 0.3
    )
    over = "".join(
        f"<li>{_e(kind)}: "
        + ", ".join(f"{_e(o['key'])} (x{float(o['lift']):.1f})" for o in rows[:4])
        + "</li>"
        for kind, rows in seg.get("over_represented", {}).items()
        if rows and kind != "visual"
    )
    sid = f' id="segment-page-{seg["id"]}"' if anchor else ""
    return f"""<section class="block segment-page"{sid} data-segment="{seg["id"]}"
 style="border-top:5px solid {_color(seg["id"])}">
<h2>Segment: {_e(seg["name"])}</h2>
<div class="muted">{seg["size"]:,} users ({seg["share"]:.0%}){" · " + export if export else ""}</div>
<h3>What distinguishes it</h3><ul class="items">{over}{dist}</ul>
{_aspects_html(seg)}
<h3>Compared with all users</h3>{comparison_html(p, only=seg["id"])}
<h3>Items most of its members engaged with</h3><ol class="items">{top or "<li>–</li>"}</ol>
{f"<h3>What the model recommends to its members</h3><ol class='items'>{recs}</ol>" if recs else ""}
<h3>Example users</h3><p>{users or "–"}</p></section>"""


def _chips(items: Sequence[dict[str, Any]]) -> str:
    return "".join(
        f'<span class="chip">{_e(it["key"])} {float(it["weight"]):.0%}</span>' for it in items
    )


def user_section_html(
    prof: dict[str, Any],
    anchor: bool = True,
    signals: dict[str, dict[str, Any]] | None = None,
    titles: dict[str, str] | None = None,
    segment_href: str = "#segment-page-{}",
) -> str:
    """A user's page: only the parts whose signals the data has."""
    from shopsight.personas.signals import available

    def has(*n: str) -> bool:
        return available(signals, *n)

    uid = prof["user"]
    r, f, pr, rv = prof["rfm"], prof["funnel"], prof["price"], prof["reviews"]
    rh, pd, act = prof["rhythm"], prof["prediction"], prof["activity"]
    rows: list[str] = []
    bits = [f"{act['n_events']} events", f"{act['n_items']} distinct items"]
    if has("sessions") and rh.get("sessions") is not None:
        bits.append(f"{_fmt(rh['sessions'], 0)} visits")
    if has("funnel"):
        bits.append(f"{act['n_purchases']} purchase events")
    if has("ratings"):
        bits.append(f"{act['n_ratings']} ratings")
    rows.append(
        f"<tr><td>activity</td><td>{', '.join(bits)}; first {_e(act['first_ts'])}, "
        f"last {_e(act['last_ts'])}</td></tr>"
    )
    rows += [
        f"<tr><td>{_e(kind)}</td><td>{_chips(items)}</td></tr>"
        for kind, items in prof["affinities"].items()
    ]
    vis = prof.get("visual_style") or {}
    if vis:
        rows.append(
            f"<tr><td>visual style</td><td>{_e(vis.get('cluster'))} "
            + "".join(f'<img src="{u}" alt="">' for u in vis.get("thumbnails", [])[:4])
            + "</td></tr>"
        )
    if has("price") and pr.get("avg_price") is not None:
        sens = (
            f" · sensitivity {_fmt(pr['sensitivity'])}" if pr.get("sensitivity") is not None else ""
        )
        rows.append(
            f"<tr><td>price</td><td>average {_fmt(pr['avg_price'])} · position in category "
            f"{_fmt(pr['price_z'])} σ · band {_e(pr['band'])}{sens}</td></tr>"
        )
    if has("time_of_day"):
        hours = rh.get("hours") or [0.0] * 24
        mx = max(max(hours), 1.0)
        bars = "".join(
            f'<span title="{h}:00 UTC: {v:g}" style="height:{max(2, int(46 * v / mx))}px"></span>'
            for h, v in enumerate(hours)
        )
        peak = rh.get("peak_hour")
        sess = (
            f" · visits {_fmt(rh['session_minutes'], 1)} min, {_fmt(rh['events_per_session'], 1)} events"
            if has("sessions") and rh.get("session_minutes") is not None
            else ""
        )
        rows.append(
            f'<tr><td>rhythm</td><td><div class="hours">{bars}</div>busiest hour '
            f"{'–' if peak is None else f'{int(peak):02d}:00'} UTC · weekend share "
            f"{_fmt(rh['weekend_share'])}{sess}</td></tr>"
        )
    if has("funnel"):
        rows.append(
            f"<tr><td>funnel</td><td>distinct items: browsed {_fmt(f['items_browsed'], 0)} · "
            f"carted {_fmt(f['items_carted'], 0)} · bought {_fmt(f['items_bought'], 0)} "
            f"({act['n_purchases']} purchase events) · view-to-buy {_fmt(f['view_to_buy'], 3)} · "
            f"cart abandonment {_fmt(f['cart_abandonment'])}</td></tr>"
        )
    money = f" · monetary {_fmt(r['monetary'])}" if has("price") else ""
    rows.append(
        f"<tr><td>RFM</td><td>recency {_fmt(r['recency_days'], 1)} d · frequency "
        f"{_fmt(r['frequency'], 0)}{money} · R{r['r']} F{r['f']} M{r['m']} · lifecycle "
        f"<b>{_e(r['lifecycle'])}</b></td></tr>"
    )
    rv_bits = []
    if has("review_text"):
        rv_bits.append(f"{_fmt(rv['n_reviews'], 0)} reviews · sentiment {_fmt(rv['sentiment'])}")
    if has("ratings"):
        rv_bits.append(
            f"mean rating {_fmt(rv['mean_rating'])} · rating bias {_fmt(rv['rating_bias'])}"
        )
    if rv_bits:
        rows.append(f"<tr><td>reviews</td><td>{' · '.join(rv_bits)}</td></tr>")
    pred = []
    if has("funnel") or pd.get("propensity_source") == "predictor":
        pred.append(
            f"purchase propensity {_fmt(pd['purchase_propensity'], 3)} ({_e(pd['propensity_source'])})"
        )
    if pd.get("next_category"):
        pred.append(f"next category {_e(pd['next_category'])}")
    if pred:
        rows.append(f"<tr><td>prediction</td><td>{' · '.join(pred)}</td></tr>")
    if pd.get("recommended"):
        names = [(titles or {}).get(i) or i for i in pd["recommended"][:10]]
        rows.append(
            "<tr><td>recommended</td><td><ol class='items'>"
            + "".join(f"<li>{_e(_short_name(str(n), 70))}</li>" for n in names)
            + "</ol></td></tr>"
        )
    demo = ", ".join(f"{k} {_e(v)}" for k, v in prof.get("demographics", {}).items())
    sid = f' id="user-{_e(uid)}"' if anchor else ""
    seg_link = segment_href.format(prof["segment"]["id"])
    return f"""<section class="block user-page"{sid} data-user="{_e(uid)}">
<h2>User {_e(uid)}</h2>
<div class="muted">segment <a href="{_e(seg_link)}">{_e(prof["segment"]["name"])}</a>
{f" · {demo}" if demo else ""}</div>
<div class="scroll"><table class="kv">{"".join(rows)}</table></div></section>"""


def item_titles(p: Personas) -> dict[str, str]:
    """Titles of every item a segment lists (recommendations of users are shown by title)."""
    out: dict[str, str] = {}
    for s in p.segment_list:
        for key in ("example_items", "top_items", "recommended_items"):
            for it in s.get(key, []) or []:
                if it.get("title"):
                    out[str(it["item_id"])] = str(it["title"])
    titles = p.meta.get("item_titles") or {}
    out.update({str(k): str(v) for k, v in titles.items()})
    return out


def sample_users(p: Personas, n: int, seed: int = 0) -> list[str]:
    """Up to ``n`` users spread over segments (the report's user pages)."""
    rng = np.random.default_rng(seed)
    seg = p.users.column("segment").to_numpy()
    ids = p.users.column("user").to_pylist()
    groups = [np.flatnonzero(seg == s["id"]) for s in p.segment_list] or [np.arange(len(ids))]
    queues = [rng.permutation(g).tolist() for g in groups]
    out: list[str] = []
    while len(out) < n and any(queues):  # round robin: every segment gets its turn
        for q in queues:
            if q and len(out) < n:
                out.append(ids[q.pop(0)])
    return out[:n]


def summary_html(p: Personas) -> str:
    cl = p.meta.get("clustering", {})
    stab = cl.get("stability", {})
    sil = cl.get("silhouette", {})
    k = cl.get("k")
    th = stab.get("time_halves") or {}
    halves = (
        f"; first vs second half of the period ARI {th['ari']} over {th['users_both_halves']:,} users"
        if th.get("ari") is not None
        else ""
    )
    unstable = [s for s in p.segment_list if s.get("stability_warning")]
    warn = (
        f'<div class="warn">{len(unstable)} segment(s) unstable under resampling: '
        + ", ".join(_e(s["name"]) for s in unstable)
        + "</div>"
        if unstable
        else ""
    )
    return f"""<section class="block" id="summary"><h2>Summary</h2>{warn}
<div class="scroll"><table class="kv"><tr><td>users profiled</td><td>{len(p):,}</td></tr>
<tr><td>segments</td><td>{k} ({_e(cl.get("method"))}; silhouette {_e(sil.get(str(k), "–"))};
bootstrap stability ARI {_e(stab.get("ari_mean", "–"))} ± {_e(stab.get("ari_std", "–"))}{halves})</td></tr>
<tr><td>privacy</td><td>ids pseudonymised (HMAC); segments under
{_e(cl.get("config", {}).get("k_min"))} users merged or suppressed
(merged {_e(cl.get("merged"))}, suppressed {_e(cl.get("suppressed"))})</td></tr>
<tr><td>data</td><td>{_e(p.meta.get("profiles", {}).get("events_table"))}, as of
{_e(p.meta.get("profiles", {}).get("as_of"))}</td></tr></table></div></section>"""


SEARCH_JS = """
function findUser(q){q=q.trim();if(!q)return null;
 var secs=document.querySelectorAll('section.user-page');
 for(var i=0;i<secs.length;i++){var u=secs[i].dataset.user;if(u===q||u.indexOf(q)===0)return u;}
 return null;}
document.getElementById('search-form').addEventListener('submit',function(ev){ev.preventDefault();
 var q=document.getElementById('user-search').value;var u=findUser(q);
 var out=document.getElementById('search-result');
 if(u){out.textContent='';location.hash='user-'+u;
   document.getElementById('user-'+u).scrollIntoView();}
 else{out.textContent='No sampled user matches '+q;}});
"""


class ReportParts:
    """The charts and notes of a report or dashboard page; charts without data are skipped
    and the reason is said once, in ``notes``."""

    def __init__(self, p: Personas, max_points: int = 5000) -> None:
        self.p = p
        self.notes: list[str] = []
        self.map = map_figure(p, max_points) if len(p) >= 3 else None
        if self.map is None:
            self.notes.append("Map: fewer than 3 users.")
        self.sizes = sizes_figure(p) if p.segment_list else None
        if p.segment_list and any(s.get("value_share") is None for s in p.segment_list):
            self.notes.append("Value share: not shown — no prices or purchases to value users by.")
        self.conversion = conversion_figure(p) if _has(p, "funnel") else None
        if self.conversion is None:
            reason = _signals(p).get("funnel", {}).get("reason", "no funnel events")
            self.notes.append(f"Conversion chart: not drawn — {reason}.")
        r_max = radar_range(p.segment_list)
        x_max = affinity_range(p.segment_list)
        self.radar = {s["id"]: radar_figure(s, r_max) for s in p.segment_list}
        self.affinity = {s["id"]: affinity_figure(s, x_max) for s in p.segment_list}
        no_radar = [s for s in p.segment_list if self.radar[s["id"]] is None]
        if no_radar:
            self.notes.append(
                "Behaviour radar: not drawn"
                + (
                    ""
                    if len(no_radar) == len(p.segment_list)
                    else f" for {len(no_radar)} segment(s)"
                )
                + " — fewer than 3 behaviour traits have data."
            )
        no_aff = [s for s in p.segment_list if self.affinity[s["id"]] is None]
        if no_aff:
            self.notes.append(
                "Over-represented keys: not drawn for "
                + ", ".join(_e(s["name"]) for s in no_aff)
                + " — no key reaches 1.1x the all-users share."
            )

    def notes_html(self) -> str:
        if not self.notes:
            return ""
        return (
            '<section class="block" id="not-shown"><h2>Not shown</h2><ul class="items">'
            + "".join(f"<li>{n}</li>" for n in self.notes)
            + "</ul></section>"
        )


def render_report(
    p: Personas, *, title: str = "Shop personas", n_user_pages: int = 30, seed: int = 0
) -> str:
    """The whole report as one HTML string (self-contained; see the module docstring)."""
    parts = ReportParts(p)
    first = [True]

    def fig(f: Any, div_id: str) -> str:
        out = _fig_html(f, div_id, first[0])
        first[0] = False
        return out

    blocks = []
    if parts.map is not None:
        blocks.append(f'<section class="block" id="map">{fig(parts.map, "segment-map")}</section>')
    if parts.sizes is not None:
        blocks.append(
            f'<section class="block" id="sizes">{fig(parts.sizes, "segment-sizes")}</section>'
        )
    blocks.append(
        f'<section class="block" id="compare"><h2>Segments beside all users</h2>{comparison_html(p)}</section>'
    )
    if parts.conversion is not None:
        blocks.append(
            f'<section class="block" id="funnels">{fig(parts.conversion, "segment-funnels")}</section>'
        )
    # Per segment, user pages: round robin, so each segment has example users with a page.
    users = sample_users(p, max(n_user_pages, 0), seed)
    seg_of = dict(
        zip(p.users.column("user").to_pylist(), p.users.column("segment").to_pylist(), strict=True)
    )
    cards, seg_pages = [], []
    for s in p.segment_list:
        charts = ""
        if parts.radar[s["id"]] is not None:
            radar = fig(parts.radar[s["id"]], f"radar-{s['id']}")
            charts += f'<div class="chart">{radar}</div>'
        if parts.affinity[s["id"]] is not None:
            bars = fig(parts.affinity[s["id"]], f"affinity-{s['id']}")
            charts += f'<div class="chart">{bars}</div>'

        export = segment_csv_link(p, s)
        cards.append(
            segment_card_html(
                s, charts, export=export, value_known=s.get("value_share") is not None
            )
        )
        ex = [u for u in users if seg_of.get(u) == s["id"]][:8]
        seg_pages.append(segment_page_html(p, s, example_users=ex, export=export))
    titles = item_titles(p)
    pages = []
    for u in users:
        prof = p.profile(u)
        if prof is not None:
            pages.append(user_section_html(prof, signals=_signals(p), titles=titles))
    user_links = " ".join(f'<a href="#user-{_e(u)}">{_e(u)}</a>' for u in users)
    options = "".join(f'<option value="{_e(u)}">' for u in users)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title><link rel="icon" href="data:,">
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>
<body><header><h1>{_e(title)}</h1><p>Profiles, segments and audiences — ids are pseudonyms;
segments below the privacy floor are not shown.</p></header><main>
{signals_html(p)}
{summary_html(p)}
{parts.notes_html()}
{"".join(blocks)}
<section class="block" id="segments"><h2>Segments</h2><div class="cards">{"".join(cards)}</div></section>
{"".join(seg_pages)}
<section class="block" id="users"><h2>Users</h2>
<form id="search-form"><div id="search"><input id="user-search" list="user-ids"
 placeholder="pseudonymised user id (p_…)" autocomplete="off"><button type="submit">Find</button>
 <span id="search-result"></span></div><datalist id="user-ids">{options}</datalist></form>
<p class="muted">Sampled users: {user_links}</p></section>
{"".join(pages)}
</main><script>{SEARCH_JS}</script></body></html>"""


def write_report(p: Personas, out: str | Path, **kw: Any) -> Path:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(p, **kw), encoding="utf-8")
    return path


def export_pngs(
    report: str | Path,
    out_dir: str | Path,
    *,
    charts: Sequence[str] = ("segment-map", "segment-sizes", "segment-funnels", "segments"),
    full_page: str | Path | None = None,
    chromium: str = CHROMIUM,
    browser: Any = None,
) -> list[Path]:
    """Screenshot the report's charts (by element id) with headless Chromium; PNG paths.

    ``full_page``: also write a screenshot of the first screen of the report there.
    ``browser``: an already launched Playwright browser (else one is started and closed).
    """
    if browser is not None:
        return _screenshots(browser, Path(report), Path(out_dir), charts, full_page)
    from playwright.sync_api import sync_playwright

    if not Path(chromium).exists():
        raise MissingFileError(f"{chromium}: Chromium is needed for PNG export")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            return _screenshots(b, Path(report), Path(out_dir), charts, full_page)
        finally:
            b.close()


def _screenshots(
    browser: Any,
    report: Path,
    out: Path,
    charts: Sequence[str],
    full_page: str | Path | None,
) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    try:
        page.goto(report.resolve().as_uri())
        page.wait_for_selector("#segment-map .main-svg", timeout=30_000)
        for cid in charts:
            el = page.query_selector(f"#{cid}")
            if el is None:
                continue
            path = out / f"{cid}.png"
            el.screenshot(path=str(path))
            written.append(path)
        if full_page is not None:
            page.screenshot(path=str(full_page))
            written.append(Path(full_page))
    finally:
        page.close()
    return written
