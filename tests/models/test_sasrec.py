"""SASRec: learns planted sequential patterns, uses behaviour types, and its plumbing is exact.

The data are tiny planted worlds built with ``Dataset.from_arrays``: every user walks a fixed
successor map over the catalogue (item ``i`` is followed by ``succ[i]``), so the next item is
determined by the *last* item alone. A bag-of-items model cannot predict it; a sequential model
that learned the map ranks it first. Random ranking gives NDCG@10 of about 10 / n_items.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from shopsight.data.dataset import EVENT_CODE, Dataset
from shopsight.data.split import leave_last_out
from shopsight.models import sasrec as sasrec_module
from shopsight.models.base import Recommender
from shopsight.models.sasrec import (
    SASRec,
    _collapse,
    _windows,
    full_softmax_lse,
)
from shopsight.training.layers import keep_mask

N_ITEMS = 120
# Small and fast, but enough to learn a 120-item successor map in a few seconds.
FAST: dict[str, Any] = {
    "dim": 32,
    "n_layers": 1,
    "n_heads": 2,
    "dropout": 0.1,
    "attn_dropout": 0.1,
    "epochs": 25,
    "batch_size": 64,
    "lr": 5e-3,
    "patience": None,
    "num_threads": 1,
}


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def walk_dataset(
    n_users: int = 300,
    n_items: int = N_ITEMS,
    seed: int = 0,
    behaviour: bool = False,
) -> tuple[Dataset, np.ndarray]:
    """Users walking a successor map; with ``behaviour`` the map depends on the event type.

    Without behaviour: next = succ[item]. With behaviour each step is a view or a purchase
    (at random) and next = succ_view[item] after a view, succ_buy[item] after a purchase.
    """
    rng = np.random.default_rng(seed)
    succ_view = rng.permutation(n_items)
    succ_buy = rng.permutation(n_items)
    users, items, events = [], [], []
    for u in range(n_users):
        length = int(rng.integers(6, 14))
        cur = int(rng.integers(n_items))
        for _ in range(length):
            ev = "purchase" if behaviour and rng.random() < 0.5 else "view"
            users.append(u)
            items.append(cur)
            events.append(ev)
            cur = int(succ_buy[cur] if ev == "purchase" else succ_view[cur])
    ds = Dataset.from_arrays(
        user_ids=[f"u{u:04d}" for u in range(n_users)],
        item_ids=[f"i{i:04d}" for i in range(n_items)],
        user=users,
        item=items,
        event=np.array(events),
    )
    return ds, succ_view


def next_item_metrics(model: SASRec, ds: Dataset, k: int = 10) -> tuple[float, float]:
    """Leave-one-out NDCG@k and HR@1 of each user's last item, history = everything before."""
    split = leave_last_out(ds.user, ds.timestamp, valid_k=0)
    train, _, test = ds.split(split)
    seqs, evs = [], []
    targets = []
    for u in np.unique(test.user):
        s = train.user_sequence(int(u))
        seqs.append(s["item"])
        evs.append(s["event"].astype(np.int64))
        targets.append(int(test.user_sequence(int(u))["item"][0]))
    scores = model.score_sequences(seqs, evs)
    t = np.asarray(targets)
    target_score = scores[np.arange(len(t)), t]
    rank = (scores > target_score[:, None]).sum(axis=1)
    ndcg = float(np.where(rank < k, 1.0 / np.log2(rank + 2.0), 0.0).mean())
    return ndcg, float((rank == 0).mean())


def next_item_ndcg(model: SASRec, ds: Dataset, k: int = 10) -> float:
    return next_item_metrics(model, ds, k)[0]


@pytest.fixture(scope="module")
def walk() -> tuple[Dataset, Dataset, Dataset]:
    ds, _ = walk_dataset()
    train, valid, _ = ds.split(leave_last_out(ds.user, ds.timestamp))
    assert valid is not None
    return ds, train, valid


@pytest.fixture(scope="module")
def trained(walk: tuple[Dataset, Dataset, Dataset]) -> SASRec:
    _, train, valid = walk
    return SASRec(**FAST).fit(train, valid)


def test_learns_the_planted_sequential_pattern(
    walk: tuple[Dataset, Dataset, Dataset], trained: SASRec
) -> None:
    _, train, _ = walk
    ndcg = next_item_ndcg(trained, train)
    print(
        f"\nSASRec next-item NDCG@10 on the planted walk: {ndcg:.3f} (random ~{10 / N_ITEMS:.3f})"
    )
    assert ndcg > 0.6, ndcg
    # early stopping looked at the validation items and kept the best epoch
    result = trained.train_result_
    assert result.best_epoch is not None and result.best_metric is not None
    assert result.best_metric > 0.5
    assert all("metric" in row for row in result.history)


def test_order_matters(trained: SASRec) -> None:
    """Not a bag of items: the same items in another order predict another next item."""
    rng = np.random.default_rng(1)
    seqs = [rng.choice(N_ITEMS, 5, replace=False) for _ in range(20)]
    fwd = trained.score_sequences(seqs).argmax(axis=1)
    rev = trained.score_sequences([s[::-1] for s in seqs]).argmax(axis=1)
    assert (fwd != rev).mean() > 0.8


def test_known_users_score_their_fitted_history(
    walk: tuple[Dataset, Dataset, Dataset], trained: SASRec
) -> None:
    _, train, _ = walk
    users = np.arange(10)
    direct = trained.score(users)
    via_history = np.stack([trained.score_history(train.sequences()[u]) for u in users])
    assert np.allclose(direct, via_history, atol=1e-5)
    # only the last max_len steps count
    short = SASRec(**{**FAST, "epochs": 1, "max_len": 3}).fit(train)
    seq = train.sequences()[0]
    assert np.allclose(short.score_history(seq), short.score_history(seq[-3:]), atol=1e-6)


def test_behaviour_types_are_used() -> None:
    """When the next item depends on the event type, the behaviour embedding is needed.

    Each step is a view or a purchase at random and the two have different successor maps:
    without the event type the model can only rank both candidates on top (HR@1 about 0.5).
    """
    ds, _ = walk_dataset(n_users=300, behaviour=True, seed=2)
    train = ds.subset(leave_last_out(ds.user, ds.timestamp, valid_k=0).train)
    with_b = SASRec(**FAST, behavior=True).fit(train)
    without = SASRec(**FAST, behavior=False).fit(train)
    (ndcg_a, hit_a), (ndcg_b, hit_b) = next_item_metrics(with_b, ds), next_item_metrics(without, ds)
    print(
        f"\nbehaviour-dependent walk: HR@1 {hit_a:.3f} / NDCG@10 {ndcg_a:.3f} with the behaviour "
        f"embedding, {hit_b:.3f} / {ndcg_b:.3f} without"
    )
    assert hit_a > 0.85 and hit_b < 0.7


@pytest.mark.parametrize("loss", ["sampled_softmax", "bce"])
def test_sampled_losses_learn(walk: tuple[Dataset, Dataset, Dataset], loss: Any) -> None:
    _, train, _ = walk
    model = SASRec(**{**FAST, "epochs": 25}, loss=loss, n_negatives=32).fit(train)
    ndcg = next_item_ndcg(model, train)
    assert ndcg > 0.3, (loss, ndcg)


def test_deterministic_and_save_load_identical(
    walk: tuple[Dataset, Dataset, Dataset], trained: SASRec, tmp_path: Path
) -> None:
    _, train, valid = walk
    again = SASRec(**FAST).fit(train, valid)
    users = np.array([0, 5, 17, -1, train.n_users + 3])
    assert np.array_equal(trained.score(users), again.score(users))
    loaded = Recommender.load(trained.save(tmp_path / "sasrec"))
    assert isinstance(loaded, SASRec)
    assert np.array_equal(loaded.score(users), trained.score(users))
    hist = np.array([3, 9, 27])
    assert np.array_equal(loaded.score_history(hist), trained.score_history(hist))
    assert np.array_equal(loaded.item_embeddings(), trained.item_embeddings())


def test_item_content_in_the_input_embedding(
    walk: tuple[Dataset, Dataset, Dataset], tmp_path: Path
) -> None:
    """Content vectors are projected into the item embeddings and saved with the model."""
    _, train, _ = walk
    rng = np.random.default_rng(0)
    text = rng.normal(size=(N_ITEMS, 16)).astype(np.float32)
    mask = np.ones(N_ITEMS, bool)
    mask[:5] = False
    model = SASRec(**{**FAST, "epochs": 3}, modalities=["text"])
    model.set_item_features({"text": text}, masks={"text": mask}).fit(train)
    assert model.net_.content_proj is not None
    loaded = Recommender.load(model.save(tmp_path / "m"))
    assert isinstance(loaded, SASRec)
    assert loaded.get_params()["modalities"] == ("text",)
    assert np.array_equal(loaded.score([0, 1]), model.score([0, 1]))
    assert np.array_equal(loaded.content_.features["text"], model.content_.features["text"])


def test_chunked_softmax_matches_dense(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    h = torch.randn(37, 8, dtype=torch.float64, requires_grad=True)
    table = torch.randn(101, 8, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(101, dtype=torch.float64, requires_grad=True)
    g = torch.randn(37, dtype=torch.float64)
    dense = full_softmax_lse(h, table, bias)
    grads_dense = torch.autograd.grad((dense * g).sum(), (h, table, bias))
    monkeypatch.setattr(sasrec_module, "MAX_DENSE_LOGITS", 600)  # blocks of 1 item
    chunked = full_softmax_lse(h, table, bias)
    grads_chunked = torch.autograd.grad((chunked * g).sum(), (h, table, bias))
    assert torch.allclose(dense, chunked)
    for a, b in zip(grads_dense, grads_chunked, strict=True):
        assert torch.allclose(a, b)


def test_loss_counts_exactly_the_targets_with_an_input(
    walk: tuple[Dataset, Dataset, Dataset],
) -> None:
    """The summed loss covers the (input, target) pairs of the windows, nothing more: the first
    step of a history, preceded by padding, is no target (the batch loss scale assumes so)."""
    _, train, _ = walk
    model = SASRec(**{**FAST, "epochs": 0}).fit(train)
    net = model.net_.eval()
    win_i, _ = _windows(train.item, train.event.astype(np.int64), train.seq_indptr, model.max_len)
    w = torch.from_numpy(win_i[:16].astype(np.int64))
    inputs, targets = w[:, :-1], w[:, 1:]
    with torch.no_grad():
        total = float(net(inputs, None, targets, None, "ce", 1.0))
        h = net.encode(inputs, None)
        table = net.item_table()
        logits = h @ table[1:].T + net.bias[1:]
        pairs = (inputs > 0) & (targets > 0)
        manual = torch.nn.functional.cross_entropy(
            logits[pairs], targets[pairs] - 1, reduction="sum"
        )
    assert int(pairs.sum()) == int((w > 0).sum()) - len(w)  # one input-only step per window
    assert np.isclose(total, float(manual), rtol=1e-5)


def test_windows_cover_every_target_once() -> None:
    items = np.arange(120, dtype=np.int64) % 37
    events = np.zeros(120, np.int64)
    indptr = np.array([0, 120])
    win_i, _ = _windows(items, events, indptr, max_len=50)
    # windows end at 120, 70, 20: targets are steps 1..119, each once
    assert win_i.shape == (3, 51)
    # a target is a step with a step before it in the same window
    targets = np.concatenate([w[1:][(w[1:] > 0) & (w[:-1] > 0)] for w in win_i]) - 1
    assert len(targets) == 119
    assert sorted(targets.tolist()) == sorted(items[1:].tolist())
    inputs_then_targets = [(w[:-1], w[1:]) for w in win_i]
    for inp, tgt in inputs_then_targets:
        ok = (inp > 0) & (tgt > 0)
        assert ((inp[ok] - 1 + 1) % 37 == (tgt[ok] - 1) % 37).all()  # target follows input
    # short histories: 1 step gives no window, 2 steps give one
    win_short, _ = _windows(np.array([4, 5, 6]), np.zeros(3, np.int64), np.array([0, 1, 3]), 50)
    assert len(win_short) == 1 and list(win_short[0, -2:]) == [6, 7]


def test_collapse_merges_repeats_keeping_the_strongest_event() -> None:
    view, cart, buy = EVENT_CODE["view"], EVENT_CODE["add_to_cart"], EVENT_CODE["purchase"]
    items = np.array([1, 1, 1, 2, 2, 1, 3, 3])
    events = np.array([view, buy, cart, view, view, view, cart, view])
    weights = np.array([1.0, 8.0, 4.0, 1.0, 1.0, 1.0, 4.0, 1.0], np.float32)
    indptr = np.array([0, 6, 8])  # user 0: rows 0-5, user 1: rows 6-7
    it, ev, ptr = _collapse(items, events, weights, indptr)
    assert it.tolist() == [1, 2, 1, 3]
    assert ev.tolist() == [buy, view, view, cart]
    assert ptr.tolist() == [0, 3, 4]


def test_bad_parameters_are_named() -> None:
    ds, _ = walk_dataset(n_users=20)
    with pytest.raises(ValueError, match="n_heads"):
        SASRec(dim=30, n_heads=4).fit(ds)
    with pytest.raises(ValueError, match="loss"):
        SASRec(loss="hinge").fit(ds)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dropout"):
        SASRec(dropout=1.0).fit(ds)


def test_training_reports_itself_max_epochs(
    walk: tuple[Dataset, Dataset, Dataset], trained: SASRec, tmp_path: Path
) -> None:
    """The fixture's real fit (25 epochs, no patience): every epoch recorded, best = argmax."""
    import json

    r = trained.train_result_
    assert r.stop_reason == "max_epochs" and r.epochs_run == FAST["epochs"] == r.max_epochs
    assert len(r.history) == r.epochs_run and r.metric_name == "NDCG@10"
    metrics = [row["metric"] for row in r.history]
    assert r.best_epoch == int(np.argmax(metrics)) + 1 and r.best_metric == max(metrics)
    assert all(row["seconds"] > 0 and row["valid_seconds"] > 0 for row in r.history)
    # the manifest beside the weights
    meta = json.loads((trained.save(tmp_path / "m") / "config.json").read_text())["meta"]
    assert meta["training"]["stop_reason"] == "max_epochs"
    assert meta["training"]["best_epoch"] == r.best_epoch
    assert len(meta["training"]["history"]) == r.epochs_run


def test_training_reports_itself_early_stopping(
    walk: tuple[Dataset, Dataset, Dataset],
) -> None:
    _, train, valid = walk
    model = SASRec(**{**FAST, "epochs": 60, "patience": 2}).fit(train, valid)
    r = model.train_result_
    assert r.stop_reason == "early_stopping" and r.stopped_early
    assert r.epochs_run < 60 and len(r.history) == r.epochs_run
    metrics = [row["metric"] for row in r.history]
    assert r.best_epoch == int(np.argmax(metrics)) + 1
    # stopped exactly `patience` evaluations after the best one
    assert r.epochs_run == r.best_epoch + 2


def test_fused_cross_entropy_matches_autograd() -> None:
    torch.manual_seed(0)
    h = torch.randn(9, 6, dtype=torch.float64, requires_grad=True)
    table = torch.randn(13, 6, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(13, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 13, (9,))
    weight = torch.rand(9, dtype=torch.float64)
    got = sasrec_module._SoftmaxCE.apply(h, table, bias, target, None)
    (got * weight).sum().backward()
    grads = [x.grad.clone() for x in (h, table, bias)]
    for x in (h, table, bias):
        x.grad = None
    want = torch.nn.functional.cross_entropy(h @ table.T + bias, target, reduction="none")
    (want * weight).sum().backward()
    assert torch.allclose(got, want)
    for g, x in zip(grads, (h, table, bias), strict=True):
        assert torch.allclose(g, x.grad)


@pytest.mark.parametrize(("scale", "shift"), [(1.0, 0.0), (40.0, 0.0), (1.0, -100.0)])
def test_fused_cross_entropy_in_float32_with_a_reused_buffer(scale: float, shift: float) -> None:
    # scale 40: logits in the hundreds (exp overflows float32); shift -100: every exp
    # underflows. Both need the row-maximum shift: same loss and gradients as autograd.
    torch.manual_seed(1)
    n, m, d = 50, 300, 8
    target = torch.randint(0, m, (n,))
    h0, t0 = torch.randn(n, d) * scale**0.5, torch.randn(m, d) * scale**0.5
    b0 = torch.randn(m) + shift
    want_h, want_t, want_b = (x.double().requires_grad_() for x in (h0, t0, b0))
    want = torch.nn.functional.cross_entropy(want_h @ want_t.T + want_b, target, reduction="none")
    want.sum().backward()
    buffer = sasrec_module.LogitsBuffer()
    for _ in range(2):  # the second step writes into the buffer the first one returned
        h, t, b = (x.clone().requires_grad_() for x in (h0, t0, b0))
        got = sasrec_module._SoftmaxCE.apply(h, t, b, target, buffer)
        assert buffer.lent
        got.sum().backward()
        assert not buffer.lent
        assert torch.allclose(got.double(), want, rtol=1e-4, atol=1e-3)
        for g, w in ((h.grad, want_h.grad), (t.grad, want_t.grad), (b.grad, want_b.grad)):
            assert torch.allclose(g.double(), w, rtol=1e-3, atol=1e-4)
    # a forward while the buffer is lent gets memory of its own
    lent = buffer.take(2, 3, h0)
    assert buffer.lent and lent.shape == (2, 3)
    fresh = buffer.take(2, 3, h0)
    assert fresh.shape == (2, 3) and fresh.data_ptr() != lent.data_ptr()
    buffer.release()
    assert not buffer.lent


def test_scoring_encodes_only_the_last_position_and_agrees_with_the_full_pass() -> None:
    torch.manual_seed(0)
    net = sasrec_module.SASRecNet(
        30,
        hidden=16,
        n_layers=2,
        n_heads=2,
        ff=32,
        max_len=8,
        dropout=0.0,
        attn_dropout=0.0,
        events=False,
        content=None,
        seed=0,
    ).eval()
    items = torch.tensor([[0, 0, 0, 3, 4, 5, 6, 7], [1, 2, 3, 4, 5, 6, 7, 8], [0] * 7 + [9]])
    with torch.no_grad():
        full = net.encode(items, None)[:, -1]
        last = net.encode(items, None, last=True)
    assert last.shape == (3, 1, 16)
    assert torch.allclose(full, last[:, -1], atol=1e-6)


@pytest.mark.parametrize("p", [0.5, 0.2])
def test_cheap_dropout_mask_keeps_the_expected_share_unbiased(p: float) -> None:
    torch.manual_seed(0)
    x = torch.ones(200, 500)
    m = keep_mask(x, p)
    cut = round(p * 256)
    kept = (m > 0).float().mean().item()
    assert abs(kept - (256 - cut) / 256) < 0.005  # 100,000 draws: sd about 0.0016
    assert torch.allclose(m[m > 0], torch.tensor(256.0 / (256 - cut)))
    assert abs(m.mean().item() - 1.0) < 0.01  # inverted dropout: the mean is kept
    # every byte position of the 64-bit draws is used and uniform (no stuck high bit)
    m2 = keep_mask(torch.ones(7 * 20000), 0.5).view(-1, 7)
    assert ((m2 > 0).float().mean(dim=0) - 0.5).abs().max() < 0.02


def test_training_attention_matches_sdpa_without_dropout() -> None:
    torch.manual_seed(0)
    block = sasrec_module._Block(16, 2, 32, dropout=0.0, attn_dropout=0.3)
    x = torch.randn(5, 7, 16)
    pad = torch.zeros(5, 7, dtype=torch.bool)
    pad[:, :3] = torch.arange(3)[None] < torch.tensor([0, 1, 2, 3, 0])[:, None]
    causal = torch.ones(7, 7, dtype=torch.bool).tril()
    allowed = ((causal[None] & ~pad[:, None, :]) | torch.eye(7, dtype=torch.bool)[None])[:, None]
    block.eval()
    want = block(x, allowed)
    block.train()
    block.attn_drop.p = 0.0  # the manual training path, with nothing dropped
    got = block(x, allowed)
    assert torch.allclose(got, want, atol=1e-6)


def test_scores_do_not_depend_on_the_batch(trained: SASRec) -> None:
    ds, _ = walk_dataset(n_users=40, seed=3)
    seqs = [ds.user_sequence(u)["item"][: 1 + u % 9] for u in range(40)]
    seqs[5] = seqs[5][:0]  # an empty history scores by popularity
    together = trained.score_sequences(seqs, batch_size=16)
    alone = np.vstack([trained.score_sequences([s], batch_size=1) for s in seqs])
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-5)


def test_scoring_batches_follow_the_lengths_not_only_the_row_count() -> None:
    rng = np.random.default_rng(0)
    lengths = np.sort(np.r_[rng.integers(3, 10, 900), rng.integers(40, 51, 124)])
    rows = np.arange(len(lengths)) + 7
    runs = list(sasrec_module._length_batches(rows, lengths, batch_size=1024, tokens=4096))
    assert np.array_equal(np.concatenate(runs), rows)  # every row once, in order
    padded = 0
    for run in runs:
        width = lengths[run - 7].max()
        assert len(run) <= 1024 and (len(run) * width <= 4096 or len(run) == 1)
        padded += len(run) * width
    # one run of 1,024 rows would pad every row to 50 positions
    assert padded < 0.4 * 1024 * 50
    single = list(sasrec_module._length_batches(rows[:3], np.array([5000, 6000, 7000]), 8, 100))
    assert [len(r) for r in single] == [1, 1, 1]


def test_validation_scores_are_the_models_scores_in_its_own_order(
    trained: SASRec, walk: tuple[Dataset, Dataset, Dataset]
) -> None:
    train, valid, _ = walk
    users = np.arange(train.n_users, dtype=np.int64)[::3]
    buf = torch.full((len(users), trained.n_items_), float("nan"))
    got, order = trained._score_for_validation(users, buf)
    assert got.data_ptr() == buf.data_ptr()  # written in place, every row
    assert sorted(order.tolist()) == list(range(len(users)))
    want = trained._score(users[order])
    assert np.allclose(got.numpy(), want, atol=1e-5)
    # the NDCG computed from it is the one of the plain scorer
    metric = trained._validation(valid)
    from shopsight.training.trainer import ranking_ndcg

    plain = ranking_ndcg(trained._score, trained.seen_, valid.implicit, k=10, max_users=None)
    trained.valid_users = None
    try:
        assert metric() == pytest.approx(plain)
    finally:
        trained.valid_users = FAST.get("valid_users", 10000)


def test_scores_land_in_their_own_rows_whatever_the_length_order(trained: SASRec) -> None:
    # lengths 2, 4, 3, 5: sorted, the run is rows [0, 2, 1, 3], which spans 0..3 but is not
    # in row order (a run written in place must be consecutive rows, not just the right span)
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, trained.n_items_, n) for n in (2, 4, 3, 5)]
    together = trained.score_sequences(seqs)
    for row, seq in zip(together, seqs, strict=True):
        assert np.allclose(row, trained.score_sequences([seq])[0], rtol=1e-5, atol=1e-5)
