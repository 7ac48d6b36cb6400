"""``/online/report`` (JSON) and ``/online`` (HTML): the online report of what this server served.

Both need a token (either one; a browser signs in at ``/login``): they show the shop's
business figures. The pending impressions are
flushed first, so the report includes every list served so far.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import HTMLResponse

from shopsight.serving import schemas as S
from shopsight.serving.routes.params import ReadAuth
from shopsight.serving.runtime import AUTH_ERRORS, RT, Runtime, jsonable

# Either token (checked by AuthMiddleware), so the HTML page opens in a signed-in browser.
router = APIRouter(tags=["online"], dependencies=ReadAuth, responses=AUTH_ERRORS)

WindowQ = Annotated[
    float, Query(gt=0, le=30 * 86400, description="Seconds after serving an event is credited.")
]
KQ = Annotated[int, Query(ge=1, le=1000, description="CTR@k: positions counted.")]
ControlQ = Annotated[str | None, Query(max_length=100, description="The control variant.")]


def _report(rt: Runtime, window_s: float, k: int, control: str | None) -> dict[str, Any]:
    from shopsight.evaluation.online import OnlineReportError, online_report

    if rt.impressions is not None:
        rt.impressions.flush()
    try:
        with rt.store_lock:
            return online_report(
                rt.store, window_s=window_s, k=k, control=control, store_path=rt.store_path
            )
    except OnlineReportError as exc:
        raise HTTPException(404, str(exc)) from None


@router.get("/online/report", response_model=S.OnlineReportOut)
def online_report_json(
    rt: RT, window_s: WindowQ = 3600.0, k: KQ = 10, control: ControlQ = None
) -> dict[str, Any]:
    """CTR@k, conversion, revenue per impression, coverage and novelty per model version and
    A/B variant, with 95% intervals, lift, p-value and sample size (see docs/online.md)."""
    return jsonable(_report(rt, window_s, k, control))  # type: ignore[no-any-return]


@router.get("/online", response_class=HTMLResponse)
def online_page(
    rt: RT, window_s: WindowQ = 3600.0, k: KQ = 10, control: ControlQ = None
) -> HTMLResponse:
    """The same report as a page."""
    from shopsight.evaluation.online import render_html

    return HTMLResponse(render_html(_report(rt, window_s, k, control)))
