"""Schemathesis against the live OpenAPI spec of a real server: no input yields a 5xx."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from serving_support import TOKEN, Shop, ThreadServer, copy_store
from test_serving_hooks import FakePersonas, FakePredictor, Recorder

from shopsight.serving.app import create_app


@pytest.mark.slow
def test_schemathesis_finds_no_server_error(shop: Shop, tmp_path: Path) -> None:
    cli = Path(sys.executable).with_name("schemathesis")
    if not cli.exists():
        pytest.skip("schemathesis CLI not installed")
    rec = Recorder()
    app = create_app(
        copy_store(shop, tmp_path),
        shop.model,
        token=TOKEN,
        predictor_loader=lambda d: FakePredictor(),
        personas_loader=lambda d: FakePersonas(),
        explain_fn=rec.explain,
        forget_fn=rec.forget,
    )
    with ThreadServer(app) as srv:
        # With the token, so that write and admin endpoints are explored past the auth check.
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
                "examples,coverage,fuzzing",
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
            timeout=300,
        )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    summary = out[out.rfind("Test cases:") :]
    assert "passed" in summary and "failed" not in summary, out[-4000:]
    print(out[-1500:])
