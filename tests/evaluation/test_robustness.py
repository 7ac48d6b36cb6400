"""Robustness: injected noise lands in the raw tables, cleaning removes bots, the shilling
detector removes the fake accounts, and the attacked item gains far less exposure with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopsight.data.clean import CleanConfig, clean_store
from shopsight.data.ingest import ingest_files
from shopsight.data.store import Store
from shopsight.data.synthetic import ShopConfig, generate_shop
from shopsight.evaluation.robustness import (
    BotUsers,
    RandomClicks,
    RobustnessError,
    Scenario,
    ShillingAttack,
    copy_store,
    detect_shilling,
    evaluate_robustness,
    inject_noise,
    pick_target,
)

# Small problems: one torch and one BLAS thread (see tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A raw (ingested, not cleaned) small synthetic shop."""
    root = tmp_path_factory.mktemp("robust")
    files = generate_shop(root / "files", ShopConfig.small(seed=3, images=False))
    with Store(root / "base.duckdb") as store:
        ingest_files(store, files.data_files())
    return root / "base.duckdb"


def count(store: Store, sql: str) -> int:
    return int(store.conn.execute(sql).fetchall()[0][0])


def test_random_clicks_are_real_users_clicking(base: Path, tmp_path: Path) -> None:
    with Store(copy_store(base, tmp_path / "s.duckdb")) as store:
        behavioural = count(
            store,
            "SELECT count(*) FROM events WHERE event_type IN "
            "('view','click','add_to_cart','remove_from_cart','purchase','favorite','share')",
        )
        users = count(store, "SELECT count(DISTINCT user_id) FROM events")
        rep = inject_noise(store, RandomClicks(0.1), seed=1)
        assert rep.rows_added == round(0.1 * behavioural) and not rep.fake_users
        assert count(store, "SELECT count(*) FROM events WHERE source = 'noise:random_clicks'") == (
            rep.rows_added
        )
        assert count(store, "SELECT count(DISTINCT user_id) FROM events") == users
        assert (
            count(
                store,
                "SELECT count(*) FROM events WHERE source LIKE 'noise:%' AND event_type <> 'click'",
            )
            == 0
        )


def test_cleaning_removes_injected_bots(base: Path, tmp_path: Path) -> None:
    with Store(copy_store(base, tmp_path / "s.duckdb")) as store:
        rep = inject_noise(store, BotUsers(0.02), seed=2)
        assert len(rep.fake_users) == 6 and rep.rows_added > 6 * 4 * 80
        clean_store(store)
        left = count(store, "SELECT count(*) FROM events_clean WHERE user_id LIKE 'noise-bot-%'")
        assert left == 0


def test_detector_flags_exactly_the_shilling_accounts(base: Path, tmp_path: Path) -> None:
    with Store(copy_store(base, tmp_path / "s.duckdb")) as store:
        clean_store(store)
        assert detect_shilling(store, table="events_clean").flagged == []  # no attack: nothing
        target = pick_target(store, seed=0)
        rep = inject_noise(store, ShillingAttack(0.05, target=target), seed=3)
        assert rep.target == target and len(rep.fake_users) == 15
        assert (
            count(
                store,
                f"SELECT count(DISTINCT user_id) FROM events WHERE item_id = '{target}' "
                "AND event_type = 'purchase' AND user_id LIKE 'noise-shill-%'",
            )
            == 15
        )
        clean_store(store, CleanConfig(shilling=False))  # rate-based bot rules only: all pass
        left = count(store, "SELECT count(*) FROM events_clean WHERE user_id LIKE 'noise-shill-%'")
        assert left > 0
        found = detect_shilling(store, table="events_clean")
        assert sorted(found.flagged) == sorted(rep.fake_users)
        assert found.pushed_items == [target]
        # The default cleaning runs the same detector as its `shilling` step.
        report = clean_store(store)
        step = next(s for s in report.steps if s.step == "shilling" and s.table == "events")
        assert step.detail["flagged"] == 15 and step.detail["pushed_items"] == [target]
        left = count(store, "SELECT count(*) FROM events_clean WHERE user_id LIKE 'noise-shill-%'")
        assert left == 0
        with pytest.raises(RobustnessError, match="unknown item"):
            inject_noise(store, ShillingAttack(target="no-such-item"))


def test_shilling_target_gains_far_less_exposure_after_cleaning(base: Path, tmp_path: Path) -> None:
    result = evaluate_robustness(
        base,
        workdir=tmp_path,
        scenarios=[Scenario("clean data"), Scenario("+shilling", (ShillingAttack(0.05),))],
        defences=("none", "clean+shilling"),
        model="als",
        model_params={"factors": 16, "num_threads": 1},
    )
    rows = {(r["scenario"], r["defence"]): r for r in result.rows}
    exposure = {key: r["target_exposure"] for key, r in rows.items()}
    gain_raw = exposure[("+shilling", "none")] - exposure[("clean data", "none")]
    gain_defended = (
        exposure[("+shilling", "clean+shilling")] - exposure[("clean data", "clean+shilling")]
    )
    assert gain_raw >= 0.03  # the attack works on the raw data
    assert gain_defended <= 0.25 * gain_raw  # ... and far less after cleaning
    assert rows[("+shilling", "clean+shilling")]["shilling_users_removed"] == 15
    for r in result.rows:
        assert 0 < r["ndcg@10"] < 1 and r["users_evaluated"] > 100
    assert rows[("clean data", "none")]["ndcg@10_change"] == 0.0
    assert "| +shilling | none |" in result.table()
