"""``shopsight explain --json`` and ``GET /recommend/{user}?explain=true`` agree: same user and
model -> the same items with the same reasons (both call shopsight.app.explain)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from serving_support import Shop, ThreadServer, copy_store
from typer.testing import CliRunner

from shopsight.cli import app as cli_app
from shopsight.models.artifact import load_artifact
from shopsight.serving.app import create_app


def test_cli_and_api_explain_the_same_items_with_the_same_reasons(
    shop: Shop, tmp_path: Path
) -> None:
    store = copy_store(shop, tmp_path / "store")
    art = load_artifact(shop.model)
    users = [str(art.user_ids[i]) for i in (0, 5, 17)]
    cli: dict[str, list[dict[str, object]]] = {}
    for user in users:
        res = CliRunner().invoke(
            cli_app,
            ["explain", "--store", str(store), "--model", str(shop.model), "--user", user,
             "-k", "5", "--json"],
        )  # fmt: skip
        assert res.exit_code == 0, res.stderr
        cli[user] = json.loads(res.stdout)["recommendations"]
    with ThreadServer(create_app(store, shop.model, read_only=True)) as srv:
        for user in users:
            r = httpx.get(
                f"{srv.url}/recommend/{user}", params={"k": 5, "explain": True}, timeout=60
            )
            assert r.status_code == 200, r.text
            api = r.json()["items"]
            ours = cli[user]
            assert [it["item_id"] for it in api] == [e["item_id"] for e in ours]
            for it, e in zip(api, ours, strict=True):
                ex = it["explanation"]
                assert ex["reason"] == e["reason"]
                assert ex["history"] == e["history"]
                assert ex["modalities"] == e["modalities"]
                # a reason names a title or an item id, never the model's internal index
                past = e["history"][0] if e["history"] else None  # type: ignore[index]
                if past is not None:
                    assert (past["title"] or past["item_id"]) in e["reason"]  # type: ignore[operator]
