"""Schemathesis against the live OpenAPI spec of a real server: no input yields a 5xx.

Every operation (admin and writes included) is explored with the admin token, past the auth
check, in the examples, coverage, fuzzing and stateful phases (the stateful phase follows the
schema's links: events -> recommend -> similar / persona / forget ...). Forget is the real one
(``shopsight.privacy.forget``: store, feature cache, spool and the served model folder, here a
copy). The 5xx count is read from the
server's own Prometheus counters, so it covers every request schemathesis made.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from serving_support import TOKEN, Shop, ThreadServer, auth, copy_store
from test_serving_hooks import FakePersonas, FakePredictor, Recorder

from shopsight.serving.app import create_app


def _requests(url: str) -> dict[tuple[str, str, str], int]:
    """The server's own request counts by (method, route template, status)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url + "/metrics", headers=auth()).text
    out: dict[tuple[str, str, str], int] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "shopsight_requests_total":
                lb = sample.labels
                out[(lb["method"], lb["route"], lb["status"])] = int(sample.value)
    return out


@pytest.mark.slow
def test_schemathesis_finds_no_server_error(shop: Shop, tmp_path: Path) -> None:
    cli = Path(sys.executable).with_name("schemathesis")
    if not cli.exists():
        pytest.skip("schemathesis CLI not installed")
    rec = Recorder()
    model = tmp_path / "models" / "model"  # forget folds users out of it: a copy
    shutil.copytree(shop.model, model)
    app = create_app(
        copy_store(shop, tmp_path),
        model,
        token=TOKEN,
        predictor_loader=lambda d: FakePredictor(),
        personas_loader=lambda d: FakePersonas(),
        explain_fn=rec.explain,
    )
    with ThreadServer(app) as srv:
        proc = subprocess.run(
            [
                str(cli),
                "run",
                f"{srv.url}/openapi.json",
                "--checks",
                "not_a_server_error",
                "--max-examples",
                "25",
                "--phases",
                "examples,coverage,fuzzing,stateful",
                "--workers",
                "1",
                "--seed",
                "1",
                "-H",
                f"Authorization: Bearer {TOKEN}",
                "--suppress-health-check",
                "all",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        counts = _requests(srv.url)
    out = proc.stdout + proc.stderr
    by_status: dict[str, int] = {}
    for (_, _, status), n in counts.items():
        by_status[status] = by_status.get(status, 0) + n
    forget = {s: n for (m, r, s), n in counts.items() if r == "/admin/forget/{user_id}"}
    server_errors = sum(n for s, n in by_status.items() if s.startswith("5"))
    total = sum(by_status.values())
    print(out[-2500:])
    print(f"server-side: {total} requests, by status {sorted(by_status.items())}")
    print(f"POST /admin/forget/{{user_id}} by status: {sorted(forget.items())}")
    print(f"5xx responses: {server_errors}")
    assert server_errors == 0, by_status
    assert proc.returncode == 0, out[-4000:]
    summary = out[out.rfind("Test cases:") :]
    assert "passed" in summary and "failed" not in summary, out[-4000:]
    # the run went past authentication: most answers are not 401/403
    assert by_status.get("200", 0) > 100 and by_status.get("401", 0) < total / 10, by_status
    assert "Stateful" in out or "stateful" in out, out[-2000:]
    assert forget.get("200", 0) > 0, forget  # the real forget ran, past auth and validation
