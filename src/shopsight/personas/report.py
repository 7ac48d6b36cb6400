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

import html
import json
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
    "purchase_propensity",
    "view_to_buy",
    "search_share",
    "social_share",
    "price_z",
    "night_share",
    "weekend_share",
    "brand_concentration",
    "monetary",
)
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#222;background:#f6f7f9}
header{background:#1f2a44;color:#fff;padding:16px 28px}header h1{margin:0 0 4px;font-size:22px}
header p{margin:0;opacity:.85}main{padding:16px 28px;max-width:1280px}
section.block{background:#fff;border-radius:8px;padding:14px 18px;margin:14px 0;box-shadow:0 1px 3px #0002}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(460px,1fr));gap:14px}
.segment-card{background:#fff;border-radius:8px;padding:12px 14px;box-shadow:0 1px 3px #0002;border-top:5px solid #888}
.segment-card h3{margin:2px 0 6px;font-size:17px}.muted{color:#667;font-size:13px}
.thumbs img{width:64px;height:64px;border-radius:4px;margin:2px;border:1px solid #ddd;object-fit:cover}
table.kv{border-collapse:collapse;font-size:13px}table.kv td{padding:2px 8px 2px 0;vertical-align:top}
.bar{display:inline-block;height:10px;background:#4C78A8;border-radius:2px;vertical-align:middle}
.chip{display:inline-block;background:#eef;border-radius:10px;padding:1px 8px;margin:2px;font-size:12px}
#search{display:flex;gap:8px;align-items:center}#search input{padding:6px 8px;width:360px;font-size:14px}
#search-result{font-size:13px;color:#a33}
.user-page{display:none}.user-page:target{display:block}
.hours{display:flex;align-items:flex-end;height:48px;gap:1px}.hours span{width:8px;background:#72B7B2}
a{color:#2659b3}
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


def map_figure(p: Personas, max_points: int = 5000) -> Any:
    import plotly.graph_objects as go

    pts = p.map_points(max_points=max_points)
    names = {s["id"]: s["name"] for s in p.segment_list}
    fig = go.Figure()
    seg_arr = np.array(pts["segment"])
    for seg in sorted(set(pts["segment"])):
        m = np.flatnonzero(seg_arr == seg)
        fig.add_trace(
            go.Scattergl(
                x=[pts["x"][i] for i in m],
                y=[pts["y"][i] for i in m],
                mode="markers",
                name=names.get(seg, "suppressed (< k_min)"),
                text=[pts["user"][i] for i in m],
                hovertemplate="%{text}<extra>%{fullData.name}</extra>",
                marker={"size": 5, "color": _color(seg), "opacity": 0.7},
            )
        )
    fig.update_layout(
        title="Users on a 2-D map of their behaviour + content vectors, coloured by segment",
        height=520,
        margin={"l": 30, "r": 10, "t": 50, "b": 30},
        legend={"orientation": "h", "y": -0.08},
        xaxis={"title": "component 1"},
        yaxis={"title": "component 2"},
    )
    return fig


def sizes_figure(p: Personas) -> Any:
    import plotly.graph_objects as go

    segs = p.segment_list
    names = [s["name"] for s in segs]
    fig = go.Figure(
        [
            go.Bar(name="share of users", x=names, y=[s["share"] for s in segs]),
            go.Bar(name="share of value", x=names, y=[s["value_share"] for s in segs]),
        ]
    )
    fig.update_layout(
        title="Segment size and value share",
        barmode="group",
        height=380,
        yaxis={"tickformat": ".0%"},
        margin={"l": 40, "r": 10, "t": 50, "b": 120},
    )
    return fig


def funnel_figure(p: Personas) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    steps = ["views", "clicks", "carts", "purchases"]
    for s in p.segment_list:
        f = s["funnel"]
        per_user = [f.get(k, 0.0) / max(s["size"], 1) for k in steps]
        fig.add_trace(
            go.Funnel(
                name=s["name"],
                y=steps,
                x=per_user,
                textinfo="value+percent initial",
                texttemplate="%{value:.1f}",
                marker={"color": _color(s["id"])},
            )
        )
    fig.update_layout(
        title="Funnel per segment (events per user)",
        height=420,
        margin={"l": 80, "r": 10, "t": 50, "b": 30},
    )
    return fig


def radar_figure(seg: dict[str, Any]) -> Any:
    import plotly.graph_objects as go

    traits = seg.get("traits", {})
    names = [t for t in RADAR_TRAITS if t in traits]
    z = [float(traits[t]["z"]) for t in names]
    fig = go.Figure(
        go.Scatterpolar(
            r=z + z[:1],
            theta=[n.replace("_", " ") for n in names + names[:1]],
            fill="toself",
            name=seg["name"],
            line={"color": _color(seg["id"])},
        )
    )
    fig.update_layout(
        height=320,
        margin={"l": 90, "r": 90, "t": 40, "b": 30},
        polar={"radialaxis": {"range": [-2, 2], "tickvals": [-2, -1, 0, 1, 2]}},
        showlegend=False,
        title={"text": "behaviour vs. all users (z)", "font": {"size": 12}},
    )
    return fig


def affinity_figure(seg: dict[str, Any]) -> Any:
    import plotly.graph_objects as go

    rows = []
    for kind in ("category", "style", "keyword", "brand"):
        for o in seg.get("over_represented", {}).get(kind, [])[:3]:
            rows.append((f"{kind}: {o['key']}", float(o["lift"])))
    rows = rows[:10][::-1]
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
        margin={"l": 200, "r": 10, "t": 30, "b": 40},
        title={"text": "over-represented (lift)", "font": {"size": 12}},
        xaxis={"title": "lift"},
    )
    return fig


# -- HTML fragments ----------------------------------------------------------------------------


def segment_card_html(seg: dict[str, Any], charts: str = "") -> str:
    thumbs = "".join(
        f'<img alt="{_e(it.get("title"))}" title="{_e(it.get("title"))}" src="{it["thumbnail"]}">'
        for it in seg.get("example_items", [])
        if it.get("thumbnail")
    )
    examples = ", ".join(
        _e(it.get("title") or it["item_id"]) for it in seg.get("example_items", [])
    )
    vis = "".join(
        f'<img alt="{_e(v["key"])}" title="{_e(v["key"])}" src="{u}">'
        for v in seg.get("visual_style", [])
        for u in v.get("thumbnails", [])[:2]
    )
    life = ", ".join(f"{k} {v}" for k, v in seg.get("lifecycle", {}).items())
    demo = "; ".join(
        f"{k}: " + ", ".join(f"{_e(r['key'])} (x{r['lift']:.1f})" for r in rows)
        for k, rows in seg.get("demographics", {}).items()
        if rows
    )
    stab = seg.get("stability_jaccard")
    return f"""<div class="segment-card" id="segment-{seg["id"]}" style="border-top-color:{_color(seg["id"])}">
<h3>{_e(seg["name"])}</h3>
<div class="muted">{seg["size"]:,} users ({seg["share"]:.0%}) · {seg["value_share"]:.0%} of value ·
price band {_e(seg["price_band"])}{f" · stability {stab:.2f}" if stab is not None else ""}</div>
<p>{_e(seg["description"])}</p>
<div class="thumbs">{thumbs}</div>
<div class="muted">Examples: {examples or "–"}</div>
{f'<div class="muted">Visual style:</div><div class="thumbs">{vis}</div>' if vis else ""}
<table class="kv"><tr><td>view-to-buy</td><td>{_fmt(seg.get("view_to_buy"), 3)}</td>
<td>cart abandonment</td><td>{_fmt(seg.get("cart_abandonment"), 2)}</td></tr>
<tr><td>purchase propensity</td><td>{_fmt(seg.get("purchase_propensity"), 3)}</td>
<td>mean RFM</td><td>{_fmt(seg.get("rfm_score"), 2)}</td></tr>
<tr><td>lifecycle</td><td colspan="3">{_e(life)}</td></tr>
{f'<tr><td>demographics</td><td colspan="3">{demo}</td></tr>' if demo else ""}</table>
{charts}</div>"""


def _chips(items: Sequence[dict[str, Any]]) -> str:
    return "".join(
        f'<span class="chip">{_e(it["key"])} {float(it["weight"]):.0%}</span>' for it in items
    )


def user_section_html(prof: dict[str, Any], anchor: bool = True) -> str:
    """A user's page: affinities, price, rhythm, funnel, RFM, reviews, predictions."""
    uid = prof["user"]
    hours = prof["rhythm"].get("hours") or [0.0] * 24
    mx = max(max(hours), 1.0)
    bars = "".join(
        f'<span title="{h}:00 UTC: {v:g}" style="height:{max(2, int(46 * v / mx))}px"></span>'
        for h, v in enumerate(hours)
    )
    aff = "".join(
        f"<tr><td>{_e(kind)}</td><td>{_chips(items)}</td></tr>"
        for kind, items in prof["affinities"].items()
    )
    vis = prof.get("visual_style") or {}
    vis_html = (
        f"<tr><td>visual style</td><td>{_e(vis.get('cluster'))} "
        + "".join(f'<img src="{u}" alt="">' for u in vis.get("thumbnails", [])[:4])
        + "</td></tr>"
        if vis
        else ""
    )
    r, f, pr, rv = prof["rfm"], prof["funnel"], prof["price"], prof["reviews"]
    rh, pd, act = prof["rhythm"], prof["prediction"], prof["activity"]
    demo = ", ".join(f"{k} {_e(v)}" for k, v in prof.get("demographics", {}).items())
    sid = f' id="user-{_e(uid)}"' if anchor else ""
    return f"""<section class="block user-page"{sid} data-user="{_e(uid)}">
<h2>User {_e(uid)}</h2>
<div class="muted">segment <a href="#segment-{prof["segment"]["id"]}">{_e(prof["segment"]["name"])}</a>
{f" · {demo}" if demo else ""}</div>
<table class="kv">
<tr><td>activity</td><td>{act["n_events"]} events, {act["n_items"]} items, {_fmt(rh["sessions"], 0)} sessions,
{act["n_purchases"]} purchases; first {_e(act["first_ts"])}, last {_e(act["last_ts"])}</td></tr>
{aff}{vis_html}
<tr><td>price</td><td>average {_fmt(pr["avg_price"])} · position in category {_fmt(pr["price_z"])} σ ·
band {_e(pr["band"])} · sensitivity {_fmt(pr["sensitivity"])}</td></tr>
<tr><td>rhythm</td><td><div class="hours">{bars}</div>peak hour {_fmt(rh["peak_hour"], 1)} UTC ·
weekend share {_fmt(rh["weekend_share"])} · session {_fmt(rh["session_minutes"], 1)} min,
{_fmt(rh["events_per_session"], 1)} events</td></tr>
<tr><td>funnel</td><td>browsed {_fmt(f["items_browsed"], 0)} · carted {_fmt(f["items_carted"], 0)} ·
bought {_fmt(f["items_bought"], 0)} · view-to-buy {_fmt(f["view_to_buy"], 3)} ·
cart abandonment {_fmt(f["cart_abandonment"])}</td></tr>
<tr><td>RFM</td><td>recency {_fmt(r["recency_days"], 1)} d · frequency {_fmt(r["frequency"], 0)} ·
monetary {_fmt(r["monetary"])} · R{r["r"]} F{r["f"]} M{r["m"]} · lifecycle <b>{_e(r["lifecycle"])}</b></td></tr>
<tr><td>reviews</td><td>{_fmt(rv["n_reviews"], 0)} reviews · mean rating {_fmt(rv["mean_rating"])} ·
rating bias {_fmt(rv["rating_bias"])} · sentiment {_fmt(rv["sentiment"])}</td></tr>
<tr><td>prediction</td><td>purchase propensity {_fmt(pd["purchase_propensity"], 3)} ({_e(pd["propensity_source"])})
{f" · next category {_e(pd['next_category'])}" if pd.get("next_category") else ""}</td></tr>
</table></section>"""


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
    return f"""<section class="block" id="summary"><h2>Summary</h2>
<table class="kv"><tr><td>users profiled</td><td>{len(p):,}</td></tr>
<tr><td>segments</td><td>{k} ({_e(cl.get("method"))}; silhouette {_e(sil.get(str(k), "–"))};
bootstrap stability ARI {_e(stab.get("ari_mean", "–"))} ± {_e(stab.get("ari_std", "–"))}{halves})</td></tr>
<tr><td>privacy</td><td>ids pseudonymised (HMAC); segments under
{_e(cl.get("config", {}).get("k_min"))} users merged or suppressed
(merged {_e(cl.get("merged"))}, suppressed {_e(cl.get("suppressed"))})</td></tr>
<tr><td>data</td><td>{_e(p.meta.get("profiles", {}).get("events_table"))}, as of
{_e(p.meta.get("profiles", {}).get("as_of"))}</td></tr></table></section>"""


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


def render_report(
    p: Personas, *, title: str = "Shop personas", n_user_pages: int = 30, seed: int = 0
) -> str:
    """The whole report as one HTML string (self-contained; see the module docstring)."""
    parts = [_fig_html(map_figure(p), "segment-map", True)]
    parts.append(_fig_html(sizes_figure(p), "segment-sizes", False))
    parts.append(_fig_html(funnel_figure(p), "segment-funnels", False))
    cards = []
    for s in p.segment_list:
        radar = _fig_html(radar_figure(s), f"radar-{s['id']}", False)
        bars = _fig_html(affinity_figure(s), f"affinity-{s['id']}", False)
        charts = f'<div class="chart">{radar}</div><div class="chart">{bars}</div>'

        cards.append(segment_card_html(s, charts))
    users = sample_users(p, n_user_pages, seed)
    pages = []
    for u in users:
        prof = p.profile(u)
        if prof is not None:
            pages.append(user_section_html(prof))
    user_links = " ".join(f'<a href="#user-{_e(u)}">{_e(u)}</a>' for u in users)
    options = "".join(f'<option value="{_e(u)}">' for u in users)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title><link rel="icon" href="data:,">
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>
<body><header><h1>{_e(title)}</h1><p>Profiles, segments and audiences — ids are pseudonyms;
segments below the privacy floor are not shown.</p></header><main>
{summary_html(p)}
<section class="block" id="map">{parts[0]}</section>
<section class="block" id="sizes">{parts[1]}</section>
<section class="block" id="funnels">{parts[2]}</section>
<section class="block" id="segments"><h2>Segments</h2><div class="cards">{"".join(cards)}</div></section>
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


def report_json(p: Personas) -> str:
    """The segments as JSON (for tooling next to the HTML)."""
    return json.dumps(p.segments(), default=str)
