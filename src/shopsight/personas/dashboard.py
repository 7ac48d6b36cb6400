"""Live personas dashboard: a FastAPI router the serving API mounts (or ``shopsight dashboard``).

Routes (all read-only, ids pseudonymised):

``GET /dashboard``                  HTML: summary, search box, segment map, segment cards
``GET /dashboard/search?q=ID``      redirect to the user's page (raw id or pseudonym) or back
``GET /dashboard/user/{user_id}``   HTML page of one user (raw id or pseudonym; 404 if unknown)
``GET /dashboard/segment/{id}``     HTML page of one segment (items, example users, comparison)
``GET /dashboard/segment/{id}.csv`` the segment's members (pseudonyms) as CSV
``GET /dashboard/plotly.js``        the bundled Plotly library (no CDN: works offline)
``GET /dashboard/api/segments``     JSON segments
``GET /dashboard/api/users/{id}``   JSON profile
``GET /dashboard/api/map``          JSON map points (sampled)
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import APIRouter

    from shopsight.personas.core import Personas


def _plotly_js_path() -> Path:
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def _page(title: str, body: str) -> str:
    from shopsight.personas.report import CSS

    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>{html.escape(title)}</title><link rel="icon" href="data:,">
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{CSS}.user-page,.segment-page{{display:block}}</style>
<script src="/dashboard/plotly.js"></script></head><body>
<header><h1><a href="/dashboard" style="color:#fff;text-decoration:none">Shop personas</a></h1>
<p>Live dashboard — ids are pseudonyms; segments below the privacy floor are not shown.</p></header>
<main><section class="block"><form id="search-form" action="/dashboard/search" method="get">
<div id="search"><input id="user-search" name="q" placeholder="user id or pseudonym (p_…)"
 autocomplete="off"><button type="submit">Find</button></div></form></section>
{body}</main></body></html>"""


def _fig_div(fig: Any, div_id: str) -> str:
    out: str = fig.to_html(
        full_html=False, include_plotlyjs=False, div_id=div_id, config={"displaylogo": False}
    )
    return out


def create_router(personas: Personas, *, max_map_points: int = 5000) -> APIRouter:
    """The dashboard routes over one :class:`Personas` (see the module docstring)."""
    from fastapi import APIRouter, HTTPException, Query
    from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

    from shopsight.personas.report import (
        ReportParts,
        comparison_html,
        item_titles,
        sample_users,
        segment_card_html,
        segment_page_html,
        signals_html,
        summary_html,
        user_section_html,
    )

    router = APIRouter()
    p = personas
    cache: dict[str, Any] = {}  # built on first use: mounting the router stays cheap

    def parts() -> ReportParts:
        if "parts" not in cache:
            cache["parts"] = ReportParts(p, max_map_points)
        out: ReportParts = cache["parts"]
        return out

    def card(s: dict[str, Any], charts: str = "") -> str:
        sid = s["id"]
        return segment_card_html(
            s,
            charts,
            link=f"/dashboard/segment/{sid}",
            export=f'<a href="/dashboard/segment/{sid}.csv">export {s["size"]:,} users (CSV)</a>',
            value_known=s.get("value_share") is not None,
        )

    @router.get("/dashboard", response_class=HTMLResponse)
    def dashboard(missing: str | None = None) -> HTMLResponse:
        note = (
            f'<p id="search-result">No user {html.escape(missing)} in these personas.</p>'
            if missing
            else ""
        )
        cards = "".join(card(s) for s in p.segment_list)
        blocks = []
        if parts().map is not None:
            blocks.append(
                f'<section class="block" id="map">{_fig_div(parts().map, "segment-map")}</section>'
            )
        if parts().sizes is not None:
            blocks.append(
                f'<section class="block" id="sizes">{_fig_div(parts().sizes, "segment-sizes")}'
                "</section>"
            )
        blocks.append(
            '<section class="block" id="compare"><h2>Segments beside all users</h2>'
            f"{comparison_html(p)}</section>"
        )
        if parts().conversion is not None:
            blocks.append(
                f'<section class="block" id="funnels">'
                f"{_fig_div(parts().conversion, 'segment-funnels')}</section>"
            )
        body = f"""{note}{signals_html(p)}{summary_html(p)}{parts().notes_html()}{"".join(blocks)}
<section class="block" id="segments"><h2>Segments</h2><div class="cards">{cards}</div></section>"""
        return HTMLResponse(_page("Personas dashboard", body))

    @router.get("/dashboard/plotly.js")
    def plotly_js() -> FileResponse:
        return FileResponse(_plotly_js_path(), media_type="application/javascript")

    @router.get("/dashboard/search")
    def search(q: str = Query("", max_length=200)) -> RedirectResponse:
        hits = p.search(q, limit=1)
        if hits:
            return RedirectResponse(f"/dashboard/user/{hits[0]}", status_code=303)
        from urllib.parse import quote

        return RedirectResponse(f"/dashboard?missing={quote(q)}", status_code=303)

    @router.get("/dashboard/user/{user_id}", response_class=HTMLResponse)
    def user_page(user_id: str) -> HTMLResponse:
        prof = p.profile(user_id)
        if prof is None:
            body = f'<section class="block"><h2>Unknown user</h2><p>No user {html.escape(user_id)}.</p></section>'
            return HTMLResponse(_page("Unknown user", body), status_code=404)
        seg = next((s for s in p.segment_list if s["id"] == prof["segment"]["id"]), None)
        body = user_section_html(
            prof,
            anchor=False,
            signals=p.meta.get("signals") or {},
            titles=item_titles(p),
            segment_href="/dashboard/segment/{}",
        )
        if seg is not None:
            body += f'<section class="block"><h2>Their segment</h2>{card(seg)}</section>'
        return HTMLResponse(_page(f"User {prof['user']}", body))

    def _segment(segment_id: int) -> dict[str, Any]:
        seg = next((s for s in p.segment_list if s["id"] == segment_id), None)
        if seg is None:
            raise HTTPException(status_code=404, detail=f"unknown segment {segment_id}")
        return seg

    @router.get("/dashboard/segment/{segment_id}.csv")
    def segment_csv(segment_id: int) -> Response:
        _segment(segment_id)
        return Response(
            p.segment_csv(segment_id),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="segment-{segment_id}.csv"'},
        )

    @router.get("/dashboard/segment/{segment_id}", response_class=HTMLResponse)
    def segment_page(segment_id: int) -> HTMLResponse:
        seg = _segment(segment_id)
        members = set(p.segment_users(segment_id))
        examples = [u for u in sample_users(p, 12 * max(len(p.segment_list), 1)) if u in members]
        charts = ""
        for fig, div in (
            (parts().radar.get(segment_id), "radar"),
            (parts().affinity.get(segment_id), "affinity"),
        ):
            if fig is not None:
                charts += f'<div class="chart">{_fig_div(fig, f"{div}-{segment_id}")}</div>'
        export = f'<a href="/dashboard/segment/{segment_id}.csv">export (CSV)</a>'
        body = segment_page_html(
            p,
            seg,
            example_users=examples[:8],
            user_href="/dashboard/user/{}",
            anchor=False,
            export=export,
        )
        body += f'<section class="block">{charts}</section>' if charts else ""
        return HTMLResponse(_page(f"Segment {seg['name']}", body))

    @router.get("/dashboard/api/segments")
    def api_segments() -> list[dict[str, Any]]:
        return p.segments()

    @router.get("/dashboard/api/users/{user_id}")
    def api_user(user_id: str) -> dict[str, Any]:
        prof = p.profile(user_id)
        if prof is None:
            raise HTTPException(status_code=404, detail=f"unknown user {user_id}")
        return prof

    @router.get("/dashboard/api/map")
    def api_map(limit: int = Query(5000, ge=1, le=100_000)) -> dict[str, list[Any]]:
        return p.map_points(max_points=limit)

    return router


def create_app(personas: Personas) -> Any:
    """A FastAPI app with only the dashboard (what ``shopsight dashboard`` serves)."""
    from fastapi import FastAPI
    from fastapi.responses import RedirectResponse

    app = FastAPI(title="shopsight personas dashboard")
    app.include_router(create_router(personas))

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/dashboard")

    return app
