"""``FunnelPredictor``: per-task probabilities of click, add-to-cart and purchase for
(user, item) pairs, from a multi-task network trained on point-in-time impressions.

``fit(store)`` builds labelled impressions (:mod:`shopsight.prediction.examples`), holds out the
latest ``valid_fraction`` of time for early stopping and calibration, and trains a
:class:`~shopsight.prediction.model.FunnelNet`. ``predict(store, users, items)`` computes the
same features as of ``as_of`` (default: just after the store's last event) and returns
calibrated probabilities; unknown users get the new-user features and an empty history, unknown
items the padding embedding, no content and the training mean of every item-side feature. ``save(dir)`` writes safetensors + JSON
(no pickle); ``FunnelPredictor.load(dir)`` reads them back.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shopsight.errors import InputError, MissingFileError
from shopsight.prediction.calibration import Calibrator
from shopsight.prediction.examples import (
    TASKS,
    ExampleConfig,
    Examples,
    Vocab,
    build_examples,
    compute_features,
    temporal_split,
)

if TYPE_CHECKING:
    import torch

    from shopsight.data.store import Store

log = logging.getLogger("shopsight.prediction")

WEIGHTS_FILE = "predictor.safetensors"
CONFIG_FILE = "predictor.json"
FORMAT_VERSION = 1


PREDICTOR_SUBDIR = "predictor"  # a model folder keeps its funnel predictor here


def predictor_dir(model_dir: Path) -> Path:
    """``<model_dir>/predictor`` when it holds a predictor, else ``model_dir`` itself."""
    sub = model_dir / PREDICTOR_SUBDIR
    return sub if sub.is_dir() else model_dir


class PredictorError(InputError):
    """A predictor that cannot be trained, loaded or used as asked (one-line message)."""


class FunnelPredictor:
    """Multi-task funnel predictor (shared-bottom, MMoE or ESMM, with DIN attention).

    ``tasks`` restricts the outputs (single-task variants); ``train_on="click"`` trains only on
    clicked impressions (the classic conversion-model set-up, kept for comparison with ESMM).
    """

    def __init__(
        self,
        arch: str = "esmm",
        tasks: Sequence[str] = TASKS,
        *,
        attention: bool = True,
        hist_len: int = 20,
        content: str = "auto",
        content_dim: int = 32,
        emb_dim: int = 16,
        hidden: int = 128,
        n_experts: int = 4,
        dropout: float = 0.1,
        epochs: int = 6,
        patience: int = 2,
        batch_size: int = 1024,
        lr: float = 2e-3,
        weight_decay: float = 1e-6,
        calibration: str = "temperature",
        train_on: str | None = None,
        valid_fraction: float = 0.1,
        max_examples: int | None = None,
        seed: int = 0,
        threads: int | None = None,
    ) -> None:
        self.arch = arch
        self.tasks = tuple(tasks)
        self.attention = attention
        self.hist_len = hist_len
        self.content = content
        self.content_dim = content_dim
        self.emb_dim = emb_dim
        self.hidden = hidden
        self.n_experts = n_experts
        self.dropout = dropout
        self.epochs = epochs
        self.patience = patience
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.calibration = calibration
        self.train_on = train_on
        self.valid_fraction = valid_fraction
        self.max_examples = max_examples
        self.seed = seed
        self.threads = threads
        self.net_: Any = None
        self.vocab_: Vocab | None = None
        self.dense_names_: list[str] = []
        self.dense_mean_: np.ndarray | None = None
        self.dense_std_: np.ndarray | None = None
        self.calibrators_: dict[str, Calibrator] = {}
        self.content_source_: str = "none"
        self.history_: list[dict[str, float]] = []
        self.info_: dict[str, Any] = {}

    # -- parameters ----------------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        keys = [
            "arch",
            "attention",
            "hist_len",
            "content",
            "content_dim",
            "emb_dim",
            "hidden",
            "n_experts",
            "dropout",
            "epochs",
            "patience",
            "batch_size",
            "lr",
            "weight_decay",
            "calibration",
            "train_on",
            "valid_fraction",
            "max_examples",
            "seed",
            "threads",
        ]
        out = {k: getattr(self, k) for k in keys}
        out["tasks"] = list(self.tasks)
        return out

    @property
    def example_config(self) -> ExampleConfig:
        return ExampleConfig(hist_len=self.hist_len, seed=self.seed)

    # -- training ------------------------------------------------------------------------------
    def fit(self, store: Store, examples: Examples | None = None) -> FunnelPredictor:
        """Build point-in-time impressions from ``store`` and train on them."""
        from shopsight.prediction.content import item_content

        vocab = Vocab.from_store(store)
        if examples is None:
            from shopsight.data.support import require_funnel

            require_funnel(store, self.tasks)
            examples, vocab = build_examples(store, vocab, self.example_config)
        empty = [t for t in self.tasks if t in examples.labels and not examples.labels[t].any()]
        if empty:
            raise PredictorError(
                f"predict: no positive label for {', '.join(empty)}: no impression (a `view`) is "
                f"followed by a {' / '.join(empty)} event of the same user and item in its "
                "session or window, so every example would be negative"
            )
        if self.max_examples is not None and len(examples) > self.max_examples:
            examples = examples.take(np.arange(len(examples) - self.max_examples, len(examples)))
        content, source = item_content(store, vocab, self.content_dim, self.content, self.seed)
        train, valid, _ = temporal_split(examples.ts, (1.0 - self.valid_fraction, 1.0))
        if not len(valid):
            valid = train[-max(1, len(train) // 10) :]
        self.content_source_ = source
        return self.fit_examples(examples.take(train), examples.take(valid), vocab, content)

    def fit_examples(
        self, train: Examples, valid: Examples, vocab: Vocab, content: np.ndarray
    ) -> FunnelPredictor:
        """Train on prepared examples (the comparison harness builds them once for all models).

        ``threads`` applies while training only; torch's process-wide setting is restored.
        """
        import torch

        before = torch.get_num_threads()
        try:
            return self._fit_examples(train, valid, vocab, content)
        finally:
            torch.set_num_threads(before)

    def _fit_examples(
        self, train: Examples, valid: Examples, vocab: Vocab, content: np.ndarray
    ) -> FunnelPredictor:
        import torch

        from shopsight.prediction.model import ARCHS, FunnelNet, bce
        from shopsight.training.trainer import TrainResult, epoch_display

        if self.arch not in ARCHS:
            raise PredictorError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        Calibrator(self.calibration)  # fail before training, not after
        if self.threads:
            torch.set_num_threads(self.threads)
        if self.train_on is not None:
            if self.train_on not in TASKS:
                raise PredictorError(f"train_on must be one of {TASKS} or None")
            train = train.take(np.flatnonzero(train.labels[self.train_on] > 0))
            valid = valid.take(np.flatnonzero(valid.labels[self.train_on] > 0))
        if len(train) < 2:
            raise PredictorError(
                f"too few training examples ({len(train)}) to fit a predictor: examples are "
                "`view` impressions labelled by later click / add_to_cart / purchase events"
            )
        missing = [t for t in self.tasks if t not in train.labels]
        if missing:
            raise PredictorError(f"examples carry no labels for {missing}")
        torch.manual_seed(self.seed)
        self.vocab_ = vocab
        self.dense_names_ = list(train.dense_names)
        self.dense_mean_ = train.dense.mean(axis=0)
        self.dense_std_ = train.dense.std(axis=0) + 1e-6
        self.net_ = FunnelNet(
            train.dense.shape[1],
            vocab.n_items,
            len(vocab.cats) + 1,
            len(vocab.brands) + 1,
            torch.from_numpy(np.ascontiguousarray(content, dtype=np.float32)),
            torch.from_numpy(vocab.item_cat),
            torch.from_numpy(vocab.item_brand),
            arch=self.arch,
            tasks=self.tasks,
            emb_dim=self.emb_dim,
            hidden=self.hidden,
            n_experts=self.n_experts,
            attention=self.attention,
            dropout=self.dropout,
        )
        net = self.net_
        opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        tr = self._tensors(train)
        ys = torch.from_numpy(np.column_stack([train.labels[t] for t in self.tasks]))
        gen = torch.Generator().manual_seed(self.seed)
        best, best_state, bad = float("inf"), copy.deepcopy(net.state_dict()), 0
        self.history_ = []
        # the validation loss picks the epoch kept (lower is better); without validation
        # examples the training loss does
        result = TrainResult(
            max_epochs=self.epochs,
            metric_name="valid loss" if len(valid) else "train loss",
        )
        t0 = time.perf_counter()
        with epoch_display(True, self.epochs) as display:
            for epoch in range(self.epochs):
                e0 = time.perf_counter()
                net.train()
                perm = torch.randperm(len(train), generator=gen)
                total = 0.0
                for s in range(0, len(train), self.batch_size):
                    b = perm[s : s + self.batch_size]
                    out = net(tr[0][b], tr[1][b], tr[2][b])
                    loss = torch.stack(
                        [bce(out[t], ys[b, j]) for j, t in enumerate(self.tasks)]
                    ).sum()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    total += float(loss.detach()) * len(b)
                train_s = time.perf_counter() - e0
                v = self._valid_loss(valid) if len(valid) else total / len(train)
                row = {
                    "epoch": float(epoch + 1),
                    "loss": total / len(train),
                    "metric": v,
                    "train_loss": total / len(train),
                    "valid_loss": v,
                    "train_seconds": train_s,
                    "valid_seconds": time.perf_counter() - e0 - train_s,
                    "seconds": time.perf_counter() - e0,
                }
                self.history_.append(row)
                result.epochs_run = epoch + 1
                if v < best - 1e-5:
                    best, best_state, bad = v, copy.deepcopy(net.state_dict()), 0
                    result.best_epoch, result.best_metric = epoch + 1, v
                else:
                    bad += 1
                display(row, result)
                if bad >= self.patience:
                    result.stopped_early = True
                    result.stop_reason = "early_stopping"
                    result.stop_detail = (
                        f"early stopping: no {result.metric_name} improvement in {bad} epochs"
                    )
                    break
            if result.stop_reason is None:
                result.stop_reason = "max_epochs"
                result.stop_detail = f"all {self.epochs} epochs run (max_epochs)"
            result.history = self.history_
            result.seconds = time.perf_counter() - t0
            display.done(result)
        net.load_state_dict(best_state)
        net.eval()
        self.train_result_ = result
        self.info_ = {
            "n_train": len(train),
            "n_valid": len(valid),
            "train_seconds": time.perf_counter() - t0,
            "epochs_run": len(self.history_),
            "best_epoch": result.best_epoch,
            "stop_reason": result.stop_reason,
            # the rest of the run's record (its history is saved beside, as "history")
            "training": {k: v for k, v in result.to_dict().items() if k != "history"},
            "content_source": self.content_source_,
        }
        raw = self.predict_examples(valid, calibrated=False) if len(valid) else {}
        self.calibrators_ = {
            t: Calibrator(self.calibration).fit(raw[t], valid.labels[t])
            if raw
            else Calibrator("none")
            for t in self.tasks
        }
        return self

    def _tensors(self, ex: Examples) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        import torch

        if self.dense_mean_ is None or self.dense_std_ is None:
            raise PredictorError("predictor is not fitted")
        if list(ex.dense_names) != self.dense_names_:
            raise PredictorError("examples' features differ from the ones the model was trained on")
        dense = (ex.dense - self.dense_mean_) / self.dense_std_
        return (
            torch.from_numpy(np.ascontiguousarray(dense, dtype=np.float32)),
            torch.from_numpy(np.ascontiguousarray(ex.cats)),
            torch.from_numpy(np.ascontiguousarray(ex.hist)),
        )

    def _valid_loss(self, valid: Examples) -> float:
        import torch

        from shopsight.prediction.model import bce

        self.net_.eval()
        x = self._tensors(valid)
        total = 0.0
        with torch.no_grad():
            for s in range(0, len(valid), 8192):
                out = self.net_(x[0][s : s + 8192], x[1][s : s + 8192], x[2][s : s + 8192])
                for t in self.tasks:
                    y = torch.from_numpy(valid.labels[t][s : s + 8192])
                    total += float(bce(out[t], y)) * len(y)
        return total / len(valid)

    # -- inference -----------------------------------------------------------------------------
    def predict_examples(self, ex: Examples, calibrated: bool = True) -> dict[str, np.ndarray]:
        """Per-task probabilities for prepared examples."""
        import torch

        if self.net_ is None:
            raise PredictorError("predictor is not fitted: call fit() or load() first")
        self.net_.eval()
        x = self._tensors(ex)
        parts: dict[str, list[np.ndarray]] = {t: [] for t in self.tasks}
        with torch.no_grad():
            for s in range(0, len(ex), 8192):
                out = self.net_(x[0][s : s + 8192], x[1][s : s + 8192], x[2][s : s + 8192])
                for t in self.tasks:
                    parts[t].append(torch.exp(out[t][0]).numpy().astype(np.float64))
        res = {t: np.concatenate(v) if v else np.zeros(0) for t, v in parts.items()}
        if calibrated and self.calibrators_:
            res = {t: self.calibrators_[t].transform(p) for t, p in res.items()}
            if self.arch == "esmm":  # keep the funnel order after per-task calibration
                res["add_to_cart"] = np.minimum(res["add_to_cart"], res["click"])
                res["purchase"] = np.minimum(res["purchase"], res["add_to_cart"])
        return res

    def predict(
        self,
        store: Store,
        user_ids: Sequence[str],
        item_ids: Sequence[str],
        as_of: dt.datetime | str | None = None,
    ) -> dict[str, np.ndarray]:
        """Calibrated probabilities per task, one per (user, item) pair, as of ``as_of``."""
        return self.predict_examples(self.prepare(store, user_ids, item_ids, as_of))

    def prepare(
        self,
        store: Store,
        user_ids: Sequence[str],
        item_ids: Sequence[str],
        as_of: dt.datetime | str | None = None,
    ) -> Examples:
        """The pairs' features read from the store (the only part of :meth:`predict` that
        touches it: a server holds its store lock for this, not for the scoring)."""
        if self.vocab_ is None:
            raise PredictorError("predictor is not fitted: call fit() or load() first")
        if len(user_ids) != len(item_ids):
            raise PredictorError(f"{len(user_ids)} users but {len(item_ids)} items")
        t = self._as_of(store, as_of)
        ts = np.full(len(user_ids), np.datetime64(t, "us"))
        ex = compute_features(store, self.vocab_, user_ids, item_ids, ts, self.example_config)
        self._impute_unknown_items(ex)
        return ex

    _ITEM_COLUMNS = ("log_i_", "i_", "log_price", "price_known", "price_pct_in_cat")

    def _impute_unknown_items(self, ex: Examples) -> None:
        """Items outside the vocabulary are scored as an average training item.

        A new item has no history and often no catalogue row yet; its zero counts and missing
        price lie outside anything seen in training, so its item-side features take the
        training means instead.
        """
        unknown = ex.cats[:, 0] == 0
        if not unknown.any() or self.dense_mean_ is None:
            return
        cols = [j for j, n in enumerate(ex.dense_names) if n.startswith(self._ITEM_COLUMNS)]
        ex.dense[np.ix_(unknown, cols)] = self.dense_mean_[cols]

    @staticmethod
    def _as_of(store: Store, as_of: dt.datetime | str | None) -> dt.datetime:
        import pandas as pd

        from shopsight.data.store import fetch_one

        if as_of is not None:
            ts = pd.Timestamp(as_of)
            if ts.tzinfo is not None:
                ts = ts.tz_convert("UTC").tz_localize(None)
            out: dt.datetime = ts.to_pydatetime()
            return out
        table = "events_clean" if store.has_table("events_clean") else "events"
        row = fetch_one(store.conn, f'SELECT max("timestamp") FROM "{table}"')
        last = row[0] if row and row[0] is not None else dt.datetime(2000, 1, 1)
        return pd.Timestamp(last).to_pydatetime() + dt.timedelta(seconds=1)

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        from safetensors.torch import save_file

        if self.net_ is None or self.vocab_ is None:
            raise PredictorError("predictor is not fitted: nothing to save")
        import torch

        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().contiguous() for k, v in self.net_.state_dict().items()}
        tensors["__dense_mean"] = torch.from_numpy(np.asarray(self.dense_mean_, dtype=np.float32))
        tensors["__dense_std"] = torch.from_numpy(np.asarray(self.dense_std_, dtype=np.float32))
        save_file(tensors, str(out / WEIGHTS_FILE))
        cfg = {
            "format_version": FORMAT_VERSION,
            "params": self.get_params(),
            "vocab": json.loads(self.vocab_.to_json()),
            "dense_names": self.dense_names_,
            "calibrators": {t: c.to_dict() for t, c in self.calibrators_.items()},
            "content_source": self.content_source_,
            "history": self.history_,
            "info": self.info_,
        }
        (out / CONFIG_FILE).write_text(json.dumps(cfg, indent=1), encoding="utf-8")
        return out

    @classmethod
    def load(cls, path: str | Path) -> FunnelPredictor:
        import torch
        from safetensors.torch import load_file

        from shopsight.prediction.model import FunnelNet

        d = Path(path)
        cfg_path, w_path = d / CONFIG_FILE, d / WEIGHTS_FILE
        if not cfg_path.exists() or not w_path.exists():
            raise MissingFileError(f"{d}: no saved predictor ({CONFIG_FILE} + {WEIGHTS_FILE})")
        try:
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise PredictorError(f"{cfg_path}: not valid JSON ({exc.msg})") from None
        if cfg.get("format_version") != FORMAT_VERSION:
            raise PredictorError(
                f"{cfg_path}: unsupported format_version {cfg.get('format_version')}"
            )
        params = dict(cfg["params"])
        tasks = params.pop("tasks")
        arch = params.pop("arch")
        self = cls(arch, tasks, **params)
        self.vocab_ = Vocab.from_dict(cfg["vocab"])
        self.dense_names_ = list(cfg["dense_names"])
        self.calibrators_ = {t: Calibrator.from_dict(c) for t, c in cfg["calibrators"].items()}
        self.content_source_ = cfg.get("content_source", "none")
        self.history_ = cfg.get("history", [])
        self.info_ = cfg.get("info", {})
        state = load_file(str(w_path))
        self.dense_mean_ = state.pop("__dense_mean").numpy()
        self.dense_std_ = state.pop("__dense_std").numpy()
        self.net_ = FunnelNet(
            len(self.dense_names_),
            self.vocab_.n_items,
            len(self.vocab_.cats) + 1,
            len(self.vocab_.brands) + 1,
            state["content"],
            state["item_cat"],
            state["item_brand"],
            arch=self.arch,
            tasks=self.tasks,
            emb_dim=self.emb_dim,
            hidden=self.hidden,
            n_experts=self.n_experts,
            attention=self.attention,
            dropout=self.dropout,
        )
        self.net_.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()})
        self.net_.eval()
        return self
