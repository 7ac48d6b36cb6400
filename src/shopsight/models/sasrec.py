"""SASRec: next-item recommendation with causal self-attention (Kang & McAuley, ICDM 2018).

A user is their time-ordered item sequence. Each position's input is the item's embedding plus a
learned position embedding (positions count back from the most recent item, as in SASRec's
left-padded windows), optionally plus

- a **behaviour-type** embedding (view / click / add_to_cart / purchase / ... of the event), and
- projected **item content** (text and/or image vectors from :mod:`shopsight.models.content`,
  one linear map added to the ID embedding, used for inputs and outputs alike, so items with
  content but few interactions still get a meaningful vector).

``n_layers`` pre-LayerNorm transformer blocks with causal attention (a position sees only itself
and earlier items; padding is masked out of attention) turn position ``t`` into a prediction of
item ``t + 1``; the score of an item is the dot product with its (tied) embedding.

Training follows the strong modern baselines: every position of every training window is a
target (the standard all-prefix objective), and the default loss is the **full softmax
cross-entropy** over the catalogue, which beats SASRec's original binary loss with one sampled
negative by a wide margin (Klenitskiy & Vasilev, RecSys 2023; Petrov & Macdonald, RecSys 2023).
``loss="sampled_softmax"`` (softmax over the target and ``n_negatives`` uniform negatives shared
by a batch) and ``loss="bce"`` (the original) are there for very large catalogues. Histories
longer than ``max_len`` are cut into consecutive windows of ``max_len`` targets (the last window
is the one SASRec trains on; the earlier ones are extra data). Adam, early stopping on NDCG@10
of ``valid`` (the leave-one-out item), the best epoch's weights kept: all through the shared
:class:`~shopsight.training.trainer.Trainer` (checkpoints, DDP, progress).

Consecutive events on the same item (a view, then a click, then an add-to-cart of one product)
are one step of the sequence (``collapse_repeats``), carrying the event type with the highest
implicit-feedback weight, so the model learns to predict the next *product*, not to repeat the
current one.

Scoring: ``score(users)`` encodes each user's history as of ``fit`` (kept in the model, the
last ``max_len`` steps); :meth:`SASRec.score_sequences` encodes any batch of sequences (e.g. a
history plus the validation item, for the leave-one-out test) and ``score_history`` /
``recommend_history`` fold in one new user. Everything runs on CPU; ``device="cuda"`` moves
training and scoring to a GPU when there is one.

An output bias per item, initialised to the log-frequency of each item as a training target,
lets training start from the popularity model rather than spend its first epochs learning it;
with it and lr 3e-3 the model reaches its best validation score in about ten epochs.

Defaults (chosen once, on Amazon Beauty's validation items, see ``bench/sasrec_beauty.py``):
dim 64, 2 blocks, 2 heads, feed-forward 4 x dim, ``max_len`` 50, dropout 0.5 on embeddings /
residuals / attention, full cross-entropy, Adam lr 3e-3, batch 128 windows, gradient norm
clipped at 5, at most 200 epochs, early stopping after 5 evaluations without improvement.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from shopsight import distributed as D
from shopsight.data.dataset import EVENT_TYPES
from shopsight.errors import DataError, InputError
from shopsight.models.base import FloatArray, IntArray, Recommender
from shopsight.models.content import ContentMixin, ItemContent, fuse, torch_threads
from shopsight.training.layers import Dropout
from shopsight.training.trainer import (
    TrainConfig,
    Trainer,
    TrainResult,
    derive_seed,
    ranking_ndcg,
)

if TYPE_CHECKING:
    from shopsight.data.dataset import Dataset

Loss = Literal["ce", "sampled_softmax", "bce"]
N_EVENT_CODES = len(EVENT_TYPES)  # behaviour embedding rows: event code + 1 (0 is padding)


def _check(name: str, value: Any, ok: bool, expected: str) -> None:
    if not ok:
        raise InputError(f"SASRec: {name}={value!r}: expected {expected}")


# =============================================================================================
# The network
# =============================================================================================


class _Block(nn.Module):
    """Pre-LayerNorm transformer block: attention and feed-forward, each with a residual."""

    def __init__(self, hidden: int, n_heads: int, ff: int, dropout: float, attn_dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.attn_dropout = attn_dropout
        self.ln1 = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.ln2 = nn.LayerNorm(hidden)
        self.ff1 = nn.Linear(hidden, ff)
        self.ff2 = nn.Linear(ff, hidden)
        self.drop = Dropout(dropout)
        self.attn_drop = Dropout(attn_dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, last: bool = False) -> torch.Tensor:
        """``last``: only the last position's output (keys and values still read every
        position): what scoring needs of the final block, a third of its arithmetic."""
        b, length, h = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(h, dim=-1)
        if last:
            q, x, allowed, length = q[:, -1:], x[:, -1:], allowed[..., -1:, :], 1
        heads = (self.n_heads, h // self.n_heads)
        q = q.reshape(b, length, *heads).transpose(1, 2)
        k, v = (t.reshape(b, -1, *heads).transpose(1, 2) for t in (k, v))
        if self.training and self.attn_dropout > 0.0 and x.device.type == "cpu":
            # What SDPA's math path does, with the cheap dropout mask.
            w = (q @ k.transpose(-2, -1)).mul_(q.shape[-1] ** -0.5)
            w = torch.softmax(w.masked_fill_(~allowed, float("-inf")), dim=-1)
            a = self.attn_drop(w) @ v
        else:
            a = F.scaled_dot_product_attention(
                q, k, v, attn_mask=allowed, dropout_p=self.attn_dropout if self.training else 0.0
            )
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(b, length, h)))
        return x + self.drop(self.ff2(self.drop(F.gelu(self.ff1(self.ln2(x))))))


class _ChunkedLogSumExp(torch.autograd.Function):
    """``logsumexp(h @ table.T + bias, dim=1)`` without materialising the full logits.

    The catalogue is processed in blocks of items; the backward pass recomputes each block's
    logits instead of storing them, so memory stays bounded for any catalogue size (the idea
    of Wijmans et al., "Cut Your Losses in Large-Vocabulary Language Models", 2024), for one
    extra matrix product.
    """

    @staticmethod
    def forward(
        ctx: Any, h: torch.Tensor, table: torch.Tensor, bias: torch.Tensor, block: int
    ) -> torch.Tensor:
        lse = torch.full((h.shape[0],), float("-inf"), dtype=h.dtype, device=h.device)
        for s in range(0, table.shape[0], block):
            logits = (table[s : s + block] @ h.T).add_(bias[s : s + block, None])  # (block, N)
            lse = torch.logaddexp(lse, torch.logsumexp(logits, dim=0))
        ctx.save_for_backward(h, table, bias, lse)
        ctx.block = block
        return lse

    @staticmethod
    def backward(
        ctx: Any, grad: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, None]:
        h, table, bias, lse = ctx.saved_tensors
        grad_h = torch.zeros_like(h)
        grad_table = torch.empty_like(table)
        grad_bias = torch.empty_like(bias)
        for s in range(0, table.shape[0], ctx.block):
            t = table[s : s + ctx.block]
            # d lse / d logits = softmax; times the incoming gradient.
            p = (t @ h.T).add_(bias[s : s + ctx.block, None]).sub_(lse).exp_().mul_(grad)
            torch.mm(p, h, out=grad_table[s : s + ctx.block])
            grad_bias[s : s + ctx.block] = p.sum(dim=1)
            grad_h.addmm_(p.T, t)
        return grad_h, grad_table, grad_bias, None


class LogitsBuffer:
    """One step's ``(N, items)`` logits, written into memory reused from step to step.

    A fresh buffer of this size comes from the OS page by page (faults and zeroing at first
    touch): the logits' matrix product ran 15-30% slower into fresh memory than into reused
    memory here. The buffer is lent to one forward and returned by its backward; a forward
    while it is lent (or without a backward to come) gets fresh memory instead.
    """

    def __init__(self) -> None:
        self._buf: torch.Tensor | None = None
        self.lent = False

    def take(self, n: int, m: int, like: torch.Tensor) -> torch.Tensor:
        if self.lent:
            return torch.empty(n, m, dtype=like.dtype, device=like.device)
        buf = self._buf
        if (
            buf is None
            or buf.numel() < n * m
            or buf.dtype != like.dtype
            or buf.device != like.device
        ):
            buf = self._buf = torch.empty(n * m, dtype=like.dtype, device=like.device)
        self.lent = True
        return buf[: n * m].view(n, m)

    def give_back(self) -> None:
        self.lent = False

    def release(self) -> None:
        self._buf, self.lent = None, False

    def __deepcopy__(self, memo: dict[int, Any]) -> LogitsBuffer:
        return LogitsBuffer()  # scratch memory: a copy of the net starts without it

    def __getstate__(self) -> dict[str, Any]:
        return {"_buf": None, "lent": False}


class _SoftmaxCE(torch.autograd.Function):
    """Per-row full-softmax cross-entropy ``logsumexp(h @ table.T + bias) - logit[target]``.

    Autograd's composition (addmm, logsumexp, a gather for the target's logit) allocates and
    sweeps the ``(N, items)`` logits about ten times per step. Here the bias rides in the
    matrix product as an extra column (``[h, 1] @ [table, bias].T``: no copy of the bias into
    the output), the logits become ``exp(logit)`` in place and are kept, and the backward
    never sweeps them elementwise: the softmax's row scaling is applied to the small
    ``(N, hidden)`` side of its two matrix products and the target's ``-1`` changes N
    elements. Three GEMMs and two passes over the logits (exp, sum) per step. The usual
    shift by the row maximum (two more passes) is made only when a row's sum of
    exponentials leaves [1e-30, 1e30] (logits beyond about +-60), where float32 would lose
    it: then the step's logits are recomputed with the shift.
    """

    @staticmethod
    def forward(
        ctx: Any,
        h: torch.Tensor,
        table: torch.Tensor,
        bias: torch.Tensor,
        target: torch.Tensor,
        buffer: LogitsBuffer | None,
    ) -> torch.Tensor:
        ones = torch.ones(h.shape[0], 1, dtype=h.dtype, device=h.device)
        h1 = torch.cat([h, ones], dim=1)
        tb = torch.cat([table, bias[:, None]], dim=1)
        n, m = h.shape[0], table.shape[0]
        e = buffer.take(n, m, h) if buffer is not None else h.new_empty(n, m)
        torch.mm(h1, tb.T, out=e)  # (N, items) logits
        pos = e.gather(1, target[:, None]).squeeze(1)
        total = e.exp_().sum(dim=1, keepdim=True)
        if bool(total.min() > 1e-30) and bool(total.max() < 1e30):
            lse = total.log()
        else:  # large logits: shift each row by its maximum
            torch.mm(h1, tb.T, out=e)
            top = e.amax(dim=1, keepdim=True)
            total = e.sub_(top).exp_().sum(dim=1, keepdim=True)
            lse = top + total.log()
        ctx.save_for_backward(h1, tb, target, e, total)
        ctx.buffer = buffer
        return lse.squeeze(1) - pos

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(
        ctx: Any, grad: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, None, None]:
        h1, tb, target, e, total = ctx.saved_tensors
        # d loss / d logits = grad * (softmax - onehot) = c * (e - total * onehot), c the row
        # scale grad / total: N elements change, the rest of e is used as it is.
        e[torch.arange(e.shape[0], device=e.device), target] -= total[:, 0]
        c = grad[:, None] / total
        g_h1 = (e @ tb).mul_(c)
        g_tb = e.T @ (h1 * c)
        if ctx.buffer is not None:
            ctx.buffer.give_back()
        d = tb.shape[1] - 1
        return g_h1[:, :d], g_tb[:, :d], g_tb[:, d], None, None


#: Above this many logits per batch (N targets x catalogue) the loss is computed in blocks.
MAX_DENSE_LOGITS = 1 << 27  # 512 MB of float32


def full_softmax_lse(h: torch.Tensor, table: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Log-partition of the full softmax of ``h @ table.T + bias``, per row of ``h``.

    Dense (fastest) while the logits fit in :data:`MAX_DENSE_LOGITS`; in blocks of items
    beyond, so memory stays bounded for any catalogue size.
    """
    n = h.shape[0] * table.shape[0]
    if n <= MAX_DENSE_LOGITS:
        return torch.logsumexp(torch.addmm(bias, h, table.T), dim=1)
    block = max(1, MAX_DENSE_LOGITS // 16 // max(h.shape[0], 1))
    out: torch.Tensor = _ChunkedLogSumExp.apply(h, table, bias, block)
    return out


class SASRecNet(nn.Module):
    """Embeddings + causal transformer; item index 0 is padding, item ``i`` is row ``i + 1``."""

    def __init__(
        self,
        n_items: int,
        *,
        hidden: int,
        n_layers: int,
        n_heads: int,
        ff: int,
        max_len: int,
        dropout: float,
        attn_dropout: float,
        events: bool,
        content: FloatArray | None,
        seed: int,
    ) -> None:
        super().__init__()
        self.max_len = max_len
        self.item = nn.Embedding(n_items + 1, hidden, padding_idx=0)
        self.pos = nn.Embedding(max_len, hidden)
        self.event = nn.Embedding(N_EVENT_CODES + 1, hidden, padding_idx=0) if events else None
        self.content_proj: nn.Linear | None = None
        if content is not None:
            padded = np.vstack([np.zeros((1, content.shape[1]), np.float32), content])
            self.register_buffer("content", torch.from_numpy(padded), persistent=False)
            self.content_proj = nn.Linear(content.shape[1], hidden, bias=False)
        self.emb_norm = nn.LayerNorm(hidden)
        self.drop = Dropout(dropout)
        self.blocks = nn.ModuleList(
            _Block(hidden, n_heads, ff, dropout, attn_dropout) for _ in range(n_layers)
        )
        self.out_norm = nn.LayerNorm(hidden)
        # Per-item output bias (row 0: padding), initialised to the log prior of each item
        # as a target (set_prior): training starts from the popularity model instead of
        # spending its first thousand steps learning it.
        self.bias = nn.Parameter(torch.zeros(n_items + 1))
        self.logits_buffer = LogitsBuffer()
        self._init(seed)

    @torch.no_grad()
    def set_prior(self, counts: npt.NDArray[np.float64]) -> None:
        """Output bias = centred log(count + 1) of each item as a training target."""
        prior = np.log1p(np.asarray(counts, np.float64))
        prior -= prior.mean()
        self.bias[1:] = torch.from_numpy(prior.astype(np.float32))

    def _init(self, seed: int) -> None:
        # BERT-style N(0, 0.02) (as S3-Rec / ICLRec), from a private generator: the weights
        # depend on the seed only.
        gen = torch.Generator().manual_seed(derive_seed(seed, 0x5A5))
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.Embedding):
                nn.init.normal_(m.weight, std=0.02, generator=gen)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        with torch.no_grad():
            self.item.weight[0].zero_()
            if self.event is not None:
                self.event.weight[0].zero_()

    def item_table(self) -> torch.Tensor:
        """``(n_items + 1, hidden)``: ID embedding plus projected content (row 0: padding)."""
        w = self.item.weight
        if self.content_proj is not None:
            w = w + self.content_proj(self.content)
        return w

    def encode(
        self,
        items: torch.Tensor,
        events: torch.Tensor | None,
        table: torch.Tensor | None = None,
        last: bool = False,
    ) -> torch.Tensor:
        """Hidden states ``(B, L, hidden)`` of left-padded ``(B, L)`` item rows (0 = padding);
        ``last``: only the last position's, ``(B, 1, hidden)`` (what scoring reads)."""
        length = items.shape[1]
        table = self.item_table() if table is None else table
        x = F.embedding(items, table)
        # Positions count back from the most recent step: the last column is max_len - 1.
        pos = torch.arange(self.max_len - length, self.max_len, device=items.device)
        x = x + self.pos(pos)[None]
        if self.event is not None and events is not None:
            x = x + self.event(events)
        x = self.drop(self.emb_norm(x))
        pad = items == 0
        causal = torch.ones(length, length, dtype=torch.bool, device=items.device).tril()
        # A position attends to itself and to earlier non-padding positions (itself always, so
        # no attention row is empty and padding rows stay finite).
        eye = torch.eye(length, dtype=torch.bool, device=items.device)
        allowed = (causal[None] & ~pad[:, None, :]) | eye[None]
        for i, block in enumerate(self.blocks):
            x = block(x, allowed[:, None], last=last and i == len(self.blocks) - 1)
        return self.out_norm(x)

    def forward(
        self,
        items: torch.Tensor,
        events: torch.Tensor | None,
        targets: torch.Tensor,
        negatives: torch.Tensor | None,
        loss: str,
        scale: float,
    ) -> torch.Tensor:
        """Summed loss over the non-padding targets of a batch, times ``scale``."""
        table = self.item_table()
        h = self.encode(items, events, table)
        # A target counts when it has an item before it (the first step of a history is never
        # a target: predicting it from padding would only teach popularity).
        keep = (targets > 0) & (items > 0)
        h, t = h[keep], targets[keep]
        if loss == "ce" and h.shape[0] * (table.shape[0] - 1) <= MAX_DENSE_LOGITS:
            # the reused buffer only where a backward will return it
            buffer = self.logits_buffer if torch.is_grad_enabled() else None
            ce: torch.Tensor = _SoftmaxCE.apply(h, table[1:], self.bias[1:], t - 1, buffer)
            return scale * ce.sum()
        pos_logit = (h * table[t]).sum(-1) + self.bias[t]
        if loss == "ce":
            return scale * (full_softmax_lse(h, table[1:], self.bias[1:]) - pos_logit).sum()
        assert negatives is not None
        if loss == "sampled_softmax":
            # Negatives shared by the batch; an accidental hit of the target is masked out.
            neg_logit = torch.addmm(self.bias[negatives], h, table[negatives].T)
            neg_logit = neg_logit.masked_fill(negatives[None, :] == t[:, None], float("-inf"))
            logits = torch.cat([pos_logit[:, None], neg_logit], dim=1)
            return scale * (torch.logsumexp(logits, dim=1) - pos_logit).sum()
        neg = negatives[keep]  # (N, n_negatives) per target
        neg_logit = torch.einsum("nh,nkh->nk", h, table[neg]) + self.bias[neg]
        valid = (neg != t[:, None]).float()
        # Mean over the negatives: one positive against one (averaged) negative, as SASRec's
        # original loss, whatever n_negatives is (a sum would drown the positive term).
        neg_nll = (F.logsigmoid(-neg_logit) * valid).sum(-1) / valid.sum(-1).clamp(min=1.0)
        nll = -F.logsigmoid(pos_logit) - neg_nll
        return scale * nll.sum()


# =============================================================================================
# Sequences
# =============================================================================================


def _collapse(
    items: IntArray, events: IntArray, weights: FloatArray, indptr: IntArray
) -> tuple[IntArray, IntArray, IntArray]:
    """Merge runs of consecutive rows on the same item (within a user) into one step.

    The step keeps the event of the run's highest weight (ties: the latest). Returns the
    collapsed items, events and the new per-user ``indptr``.
    """
    n = len(items)
    if n == 0:
        return items, events, indptr
    user_start = np.zeros(n, bool)
    user_start[indptr[:-1][indptr[:-1] < n]] = True
    new_run = user_start.copy()
    new_run[1:] |= items[1:] != items[:-1]
    run_id = np.cumsum(new_run) - 1
    # Order rows by (run, weight, position): the last row of each run is its strongest.
    order = np.lexsort((np.arange(n), weights, run_id))
    last_of_run = np.ones(n, bool)
    last_of_run[:-1] = run_id[order][1:] != run_id[order][:-1]
    best = order[last_of_run]  # one row per run, in run order
    starts = np.flatnonzero(new_run)
    n_users = len(indptr) - 1
    user_of_row = np.repeat(np.arange(n_users), np.diff(indptr))
    counts = np.bincount(user_of_row[starts], minlength=n_users).astype(np.int64)
    new_indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return items[starts], events[best], new_indptr


def _windows(
    items: IntArray, events: IntArray, indptr: IntArray, max_len: int
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int8]]:
    """Training windows: ``(W, max_len + 1)`` left-padded item (index + 1) and event rows.

    A history of n steps gives windows ending at n, n - max_len, n - 2 max_len, ... (each with
    at least 2 steps: one input, one target), so every step but the first is a target once.
    """
    lengths = np.diff(indptr)
    ends: list[npt.NDArray[np.int64]] = []
    users: list[npt.NDArray[np.int64]] = []
    for k in range(int(np.ceil(max(lengths.max(initial=0) - 1, 0) / max_len))):
        e = lengths - k * max_len
        ok = e >= 2
        ends.append(e[ok])
        users.append(np.flatnonzero(ok))
    if not ends:
        return np.zeros((0, max_len + 1), np.int32), np.zeros((0, max_len + 1), np.int8)
    end = np.concatenate(ends)
    user = np.concatenate(users)
    width = max_len + 1
    start = np.maximum(end - width, 0)
    n_w = len(end)
    out_i = np.zeros((n_w, width), np.int32)
    out_e = np.zeros((n_w, width), np.int8)
    col = np.arange(width)
    for_len = end - start
    # Column c of window w holds step start + c - (width - len) for c >= width - len.
    offset = width - for_len
    mask = col[None, :] >= offset[:, None]
    src = indptr[user][:, None] + start[:, None] + col[None, :] - offset[:, None]
    out_i[mask] = items[src[mask]] + 1
    out_e[mask] = events[src[mask]] + 1
    order = np.lexsort((end, user))  # deterministic order, independent of the loop above
    return out_i[order], out_e[order]


def _bucketed_batches(
    lengths: IntArray, batch_size: int, rng: np.random.Generator, bucket_batches: int = 64
) -> Iterator[IntArray]:
    """Shuffled batches of window indices, each of windows of similar length.

    Windows are shuffled, cut into buckets of ``bucket_batches`` batches, sorted by length
    within a bucket and cut into batches, and the batches are shuffled: batches stay random
    samples of the data while padding (wasted attention and dropout work) nearly vanishes.
    """
    perm = rng.permutation(len(lengths))
    span = batch_size * bucket_batches
    batches: list[IntArray] = []
    for start in range(0, len(perm), span):
        chunk = perm[start : start + span]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    for b in rng.permutation(len(batches)):
        yield batches[b]


def _length_batches(
    rows: IntArray, lengths: IntArray, batch_size: int, tokens: int = 16384
) -> Iterator[IntArray]:
    """Consecutive runs of ``rows`` (sorted by ``lengths``, ascending) of at most
    ``batch_size`` rows and at most ``tokens`` padded positions each (rows x the run's
    longest): a call with a few long histories among many short ones does not pad every
    row to the longest (scoring 1,024 Beauty users at once: 50 positions a row padded,
    about 9 real)."""
    start, n = 0, len(rows)
    while start < n:
        # the run [start, end): end - start rows, padded to lengths[end - 1]
        width = np.maximum(lengths[start : start + batch_size], 1)
        fits = np.arange(1, len(width) + 1) * width <= max(tokens, int(width[0]))
        end = start + max(1, int(np.flatnonzero(fits)[-1]) + 1)
        yield rows[start:end]
        start = end


def _left_pad(
    seqs: Sequence[npt.NDArray[np.int64]], max_len: int, offset: int = 1
) -> npt.NDArray[np.int64]:
    """``(n, L)`` rows, the last ``max_len`` entries of each sequence (+ ``offset``), left-padded."""
    length = max(1, min(max_len, max((len(s) for s in seqs), default=1)))
    out = np.zeros((len(seqs), length), np.int64)
    for r, s in enumerate(seqs):
        s = np.asarray(s, np.int64)[-length:]
        if len(s):
            out[r, length - len(s) :] = s + offset
    return out


# =============================================================================================
# The recommender
# =============================================================================================


class SASRec(ContentMixin, Recommender):
    """Self-attentive sequential recommendation (see the module docstring).

    Parameters
    ----------
    dim, n_layers, n_heads, ff_mult:
        embedding size, transformer blocks, attention heads, feed-forward width / dim.
    max_len:
        most recent steps the model looks at.
    dropout, attn_dropout:
        dropout on embeddings, residual branches and feed-forward; on attention weights.
    loss:
        ``"ce"`` (full softmax), ``"sampled_softmax"`` or ``"bce"`` (both with ``n_negatives``
        uniform negatives: shared by the batch for sampled softmax, per target for BCE).
    epochs, batch_size, lr, weight_decay, grad_clip:
        optimisation (Adam; ``batch_size`` windows per step).
    patience, eval_every, valid_users:
        early stopping on NDCG@10 of ``valid`` (evaluations without improvement; epochs between
        evaluations; users sampled for it, None: all).
    behavior:
        add a behaviour-type embedding of each step's event type.
    collapse_repeats:
        merge consecutive events on the same item into one step.
    modalities, feature_cache:
        item content added to the item embeddings (``()``: ID only, the default); see
        :mod:`shopsight.models.content`.
    device:
        ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when available).
    num_threads:
        torch threads while fitting and scoring (0: leave torch's setting; 1 is often fastest
        on small shared machines).
    seed:
        initialisation, batch order, dropout and negatives.
    """

    name = "sasrec"

    def __init__(
        self,
        dim: int = 64,
        n_layers: int = 2,
        n_heads: int = 2,
        ff_mult: int = 4,
        max_len: int = 50,
        dropout: float = 0.5,
        attn_dropout: float = 0.5,
        loss: Loss = "ce",
        n_negatives: int = 256,
        epochs: int = 200,
        batch_size: int = 128,
        lr: float = 3e-3,
        weight_decay: float = 0.0,
        grad_clip: float | None = 5.0,
        patience: int | None = 3,
        eval_every: int = 1,
        valid_users: int | None = 10000,
        behavior: bool = True,
        collapse_repeats: bool = True,
        modalities: Sequence[str] = (),
        feature_cache: str | None = None,
        device: str = "cpu",
        num_threads: int = 0,
        seed: int = 0,
    ) -> None:
        self.dim = dim
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.ff_mult = ff_mult
        self.max_len = max_len
        self.dropout = dropout
        self.attn_dropout = attn_dropout
        self.loss = loss
        self.n_negatives = n_negatives
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.grad_clip = grad_clip
        self.patience = patience
        self.eval_every = eval_every
        self.valid_users = valid_users
        self.behavior = behavior
        self.collapse_repeats = collapse_repeats
        self.modalities = tuple(modalities)  # a JSON round trip gives a list back
        self.feature_cache = feature_cache
        self.device = device
        self.num_threads = num_threads
        self.seed = seed

    # -- validation and set-up -----------------------------------------------------------------
    def _validate(self) -> None:
        _check("hidden", self.dim, self.dim >= 1, "an integer >= 1")
        _check(
            "n_heads",
            self.n_heads,
            self.n_heads >= 1 and self.dim % self.n_heads == 0,
            f"a divisor of dim={self.dim}",
        )
        _check("n_layers", self.n_layers, self.n_layers >= 0, "an integer >= 0")
        _check("ff_mult", self.ff_mult, self.ff_mult >= 1, "an integer >= 1")
        _check("max_len", self.max_len, self.max_len >= 1, "an integer >= 1")
        for name in ("dropout", "attn_dropout"):
            v = getattr(self, name)
            _check(name, v, 0.0 <= v < 1.0, "a probability in [0, 1)")
        _check(
            "loss",
            self.loss,
            self.loss in ("ce", "sampled_softmax", "bce"),
            "ce, sampled_softmax or bce",
        )
        _check("n_negatives", self.n_negatives, self.n_negatives >= 1, "an integer >= 1")
        _check("batch_size", self.batch_size, self.batch_size >= 1, "an integer >= 1")
        _check(
            "device",
            self.device,
            self.device in ("cpu", "cuda", "auto") or str(self.device).startswith("cuda:"),
            "cpu, cuda, cuda:N or auto",
        )

    def _torch_device(self) -> torch.device:
        ctx = D.current()
        if ctx.backend == "nccl":  # one GPU per DDP rank
            return torch.device(ctx.device)
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if str(self.device).startswith("cuda") and not torch.cuda.is_available():
            return torch.device("cpu")  # a model trained on a GPU still scores on a CPU
        return torch.device(self.device)

    def _build_net(self, content: FloatArray | None, events: bool) -> SASRecNet:
        return SASRecNet(
            self.n_items_,
            hidden=self.dim,
            n_layers=self.n_layers,
            n_heads=self.n_heads,
            ff=self.ff_mult * self.dim,
            max_len=self.max_len,
            dropout=self.dropout,
            attn_dropout=self.attn_dropout,
            events=events,
            content=content,
            seed=self.seed,
        )

    def _content_matrix(self) -> FloatArray | None:
        content: ItemContent | None = getattr(self, "content_", None)
        if content is None:
            return None
        return fuse(content)

    # -- fitting --------------------------------------------------------------------------------
    def _fit(self, dataset: Dataset, valid: Dataset | None) -> None:
        self._validate()
        with torch_threads(self.num_threads):
            self._train(dataset, valid)

    def _train(self, dataset: Dataset, valid: Dataset | None) -> None:
        if self.modalities:
            self.content_ = self._resolve_content(dataset)
        items, events, indptr = dataset.item, dataset.event.astype(np.int64), dataset.seq_indptr
        if self.collapse_repeats:
            items, events, indptr = _collapse(items, events, dataset.row_weights(), indptr)
        self._set_histories(items, events, indptr)
        self.event_by_weight_ = _event_by_weight(dataset)
        self.default_event_ = int(np.bincount(events).argmax()) if len(events) else 0
        use_events = bool(self.behavior) and len(np.unique(events)) > 1
        device = self._torch_device()
        net = self._build_net(self._content_matrix(), use_events)
        net.set_prior(np.bincount(items, minlength=self.n_items_).astype(np.float64))
        net = net.to(device)
        win_i, win_e = _windows(items, events, indptr, self.max_len)
        win_len = (win_i > 0).sum(axis=1).astype(np.int64)
        if not len(win_i):
            raise DataError("SASRec: no user has 2 or more steps; nothing to learn from")
        self.net_ = net
        try:
            self.train_result_: TrainResult = Trainer(net, self._train_config()).fit(
                lambda epoch: self._batches(win_i, win_e, win_len, epoch, device),
                self._validation(valid),
            )
        finally:
            net.logits_buffer.release()  # up to MAX_DENSE_LOGITS floats, not kept past the fit
        net.eval()

    def _train_config(self) -> TrainConfig:
        # Fused Adam: one pass over the parameters instead of a dozen per tensor.
        return TrainConfig.from_params(self.get_params(), optimizer="adam", fused_optimizer=True)

    def _batches(
        self,
        win_i: npt.NDArray[np.int32],
        win_e: npt.NDArray[np.int8],
        win_len: IntArray,
        epoch: int,
        device: torch.device,
    ) -> Iterator[tuple[Any, ...]]:
        """This rank's share of each global batch of windows (a pure function of seed, epoch)."""
        ctx = D.current()
        rng = np.random.default_rng(derive_seed(self.seed, epoch, 0x5E0))
        use_events = self.net_.event is not None
        for idx in _bucketed_batches(win_len, self.batch_size, rng):
            n_targets = int(win_len[idx].sum()) - len(idx)
            local, _ = D.shard(idx, ctx)
            wi, we = win_i[local], win_e[local]
            # Trim the all-padding columns of this batch (left padding).
            width = int((wi > 0).sum(axis=1).max()) if len(wi) else 2
            wi, we = wi[:, -width:], we[:, -width:]
            inputs = torch.from_numpy(wi[:, :-1].astype(np.int64)).to(device)
            targets = torch.from_numpy(wi[:, 1:].astype(np.int64)).to(device)
            evs = torch.from_numpy(we[:, :-1].astype(np.int64)).to(device) if use_events else None
            negatives = None
            if self.loss == "sampled_softmax":
                negatives = torch.from_numpy(
                    rng.integers(1, self.n_items_ + 1, self.n_negatives, dtype=np.int64)
                ).to(device)
            elif self.loss == "bce":
                shape = (*targets.shape, self.n_negatives)
                negatives = torch.from_numpy(
                    rng.integers(1, self.n_items_ + 1, shape, dtype=np.int64)
                ).to(device)
            scale = ctx.world_size / max(n_targets, 1)
            yield inputs, evs, targets, negatives, self.loss, scale

    def _validation(self, valid: Dataset | None) -> Any:
        if valid is None or len(valid) == 0:
            return None
        targets, seen = valid.implicit, self.seen_

        def metric() -> float:
            # one scores buffer for the batches of this evaluation, dropped after it
            buf = torch.empty((0, self.n_items_), dtype=torch.float32)

            def score(users: IntArray) -> tuple[torch.Tensor, IntArray]:
                nonlocal buf
                if buf.shape[0] < len(users):
                    buf = torch.empty((len(users), self.n_items_), dtype=torch.float32)
                return self._score_for_validation(users, buf[: len(users)])

            return ranking_ndcg(
                score, seen, targets, k=10, max_users=self.valid_users, seed=self.seed
            )

        metric.metric_name = "NDCG@10"  # type: ignore[attr-defined]
        return metric

    # -- histories --------------------------------------------------------------------------------
    def _set_histories(self, items: IntArray, events: IntArray, indptr: IntArray) -> None:
        """Keep each user's last ``max_len`` steps (what scoring a known user reads)."""
        lengths = np.diff(indptr)
        keep = np.minimum(lengths, self.max_len)
        new_indptr = np.concatenate([[0], np.cumsum(keep)]).astype(np.int64)
        rows = (
            np.concatenate(
                [np.arange(e - k, e) for e, k in zip(indptr[1:], keep, strict=True)]
            ).astype(np.int64)
            if len(keep)
            else np.zeros(0, np.int64)
        )
        self.hist_indptr_: IntArray = new_indptr
        self.hist_items_: IntArray = items[rows].astype(np.int64)
        self.hist_events_: IntArray = events[rows].astype(np.int64)

    def _history(self, u: int) -> tuple[IntArray, IntArray]:
        s = slice(int(self.hist_indptr_[u]), int(self.hist_indptr_[u + 1]))
        return self.hist_items_[s], self.hist_events_[s]

    # -- scoring ---------------------------------------------------------------------------------
    @torch.no_grad()
    def score_sequences(
        self,
        sequences: Sequence[npt.ArrayLike],
        events: Sequence[npt.ArrayLike] | None = None,
        batch_size: int = 1024,
    ) -> FloatArray:
        """Scores ``(len(sequences), n_items)`` for time-ordered item-index sequences.

        ``events``: per sequence the event codes (``Dataset.event``) of its steps; default: the
        most common event type in training. An empty sequence scores by popularity.
        Consecutive repeats are merged like in training when ``collapse_repeats``.
        """
        self._check_fitted()
        seqs: list[IntArray] = [np.asarray(s, np.int64) for s in sequences]
        evs: list[IntArray]
        if events is None:
            evs = [np.full(len(s), self._default_event(), np.int64) for s in seqs]
        else:
            evs = [np.asarray(e, np.int64) for e in events]
            if len(evs) != len(seqs) or any(
                len(e) != len(s) for e, s in zip(evs, seqs, strict=True)
            ):
                raise ValueError("score_sequences: events must match the sequences in length")
        for s in seqs:
            if len(s) and (s.min() < 0 or s.max() >= self.n_items_):
                raise ValueError(f"score_sequences: item indices outside [0, {self.n_items_})")
        if self.collapse_repeats:
            pairs = [_collapse_one(s, e) for s, e in zip(seqs, evs, strict=True)]
            seqs, evs = [p[0] for p in pairs], [p[1] for p in pairs]
        with torch_threads(self.num_threads):
            return self._score_padded(seqs, evs, batch_size).numpy()

    @torch.no_grad()
    def _score_padded(
        self,
        seqs: Sequence[IntArray],
        evs: Sequence[IntArray],
        batch_size: int,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Scores ``(len(seqs), n_items)`` on the CPU, as a tensor (``.numpy()`` shares it),
        written into ``out`` when given. Sequences already in order of length are scored
        straight into their rows (no scatter)."""
        if out is None:
            out = torch.empty((len(seqs), self.n_items_), dtype=torch.float32)
        net = self.net_
        net.eval()
        device = next(net.parameters()).device
        table = net.item_table()
        lengths = np.array([len(s) for s in seqs], np.int64)
        empty = lengths == 0
        if empty.any():
            out[torch.from_numpy(np.flatnonzero(empty))] = torch.from_numpy(
                np.asarray(self.item_popularity_, np.float32)
            )
        # Rows in order of length: a batch is as wide as its longest row, so sorting removes
        # nearly all padding positions (most histories are far shorter than max_len).
        rows = np.flatnonzero(~empty)
        rows = rows[np.argsort(lengths[rows], kind="stable")]
        for part in _length_batches(rows, np.minimum(lengths[rows], self.max_len), batch_size):
            items = torch.from_numpy(_left_pad([seqs[r] for r in part], self.max_len)).to(device)
            ev = None
            if net.event is not None:
                ev = torch.from_numpy(_left_pad([evs[r] for r in part], self.max_len)).to(device)
            h = net.encode(items, ev, table, last=True)[:, -1]
            first = int(part[0])
            if device.type == "cpu" and bool((np.diff(part) == 1).all()):  # consecutive rows
                torch.addmm(net.bias[1:], h, table[1:].T, out=out[first : first + len(part)])
            else:
                scores = torch.addmm(net.bias[1:], h, table[1:].T).float().cpu()
                out.index_copy_(0, torch.from_numpy(part), scores)
        return out

    def _score(self, users: IntArray) -> FloatArray:
        hist = [self._history(int(u)) for u in users]
        return self.score_sequences([h[0] for h in hist], [h[1] for h in hist])

    def _score_for_validation(
        self, users: IntArray, out: torch.Tensor
    ) -> tuple[torch.Tensor, IntArray]:
        """Scores of ``users`` into ``out`` in order of history length, and that order
        (:func:`~shopsight.training.trainer.ranking_ndcg` sums over users, so rows need not
        follow ``users``): each run of rows is written by its matrix product in place, with
        no scatter into a fresh matrix. The stored histories are already collapsed."""
        order = np.argsort(np.diff(self.hist_indptr_)[users], kind="stable")
        hist = [self._history(int(u)) for u in users[order]]
        with torch_threads(self.num_threads):
            self._score_padded([h[0] for h in hist], [h[1] for h in hist], 1024, out)
        return out, order

    def _default_event(self) -> int:
        return int(self.default_event_) if hasattr(self, "default_event_") else 0

    def _fold_in(self, items: IntArray, weights: FloatArray) -> FloatArray:
        """Encode the given history (in the given order, oldest first).

        Event types are recovered from the weights where the fitted dataset's weight map is
        unambiguous (e.g. purchase = 8), else the most common training event is assumed.
        """
        if not len(items):
            return self.item_popularity_.copy()
        lut = self.event_by_weight_
        w = np.asarray(weights, np.float32)
        ev = np.array([lut.get(float(x), self._default_event()) for x in w.tolist()], np.int64)
        if self.collapse_repeats:  # as in training: a run keeps its strongest event
            items, ev, _ = _collapse(items, ev, w, np.array([0, len(items)]))
        return self.score_sequences([items], [ev])[0]

    def item_embeddings(self) -> FloatArray:
        with torch.no_grad():
            return self.net_.item_table()[1:].float().cpu().numpy().copy()

    # -- persistence -------------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        out = {f"net.{k}": v.detach().cpu().numpy() for k, v in self.net_.state_dict().items()}
        out["hist_indptr"] = self.hist_indptr_
        out["hist_items"] = self.hist_items_
        out["hist_events"] = self.hist_events_
        if getattr(self, "content_", None) is not None:
            out.update(self._content_state())
        return out

    def _load_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        if any(k.startswith("content.") for k in arrays):
            self._load_content_state(arrays)
        self.hist_indptr_ = arrays["hist_indptr"]
        self.hist_items_ = arrays["hist_items"]
        self.hist_events_ = arrays["hist_events"]
        self.event_by_weight_ = {float(k): int(v) for k, v in meta["event_by_weight"].items()}
        self.default_event_ = int(meta["default_event"])
        net = self._build_net(self._content_matrix(), bool(meta["events"]))
        net.load_state_dict(
            {
                k[4:]: torch.from_numpy(np.array(v))
                for k, v in arrays.items()
                if k.startswith("net.")
            }
        )
        self.net_ = net.to(self._torch_device()).eval()

    def _meta(self) -> dict[str, Any]:
        result = getattr(self, "train_result_", None)
        return {
            "events": self.net_.event is not None,
            "event_by_weight": {str(k): v for k, v in self.event_by_weight_.items()},
            "default_event": self._default_event(),
            **({"training": result.to_dict()} if result is not None else {}),
        }


def _collapse_one(items: IntArray, events: IntArray) -> tuple[IntArray, IntArray]:
    """:func:`_collapse` for one sequence, keeping the latest event of a run (no weights)."""
    if len(items) < 2:
        return items, events
    last = np.ones(len(items), bool)
    last[:-1] = items[1:] != items[:-1]
    return items[last], events[last]


def _event_by_weight(dataset: Dataset) -> dict[float, int]:
    """Weight -> event code for the weights that name one event type present in the data."""
    present = set(np.unique(dataset.event).tolist())
    by_w: dict[float, list[int]] = {}
    for code, t in enumerate(EVENT_TYPES):
        w = dataset.weights[t]
        if code in present and not isinstance(w, str):
            by_w.setdefault(float(w), []).append(code)
    return {w: codes[0] for w, codes in by_w.items() if len(codes) == 1}


__all__ = ["SASRec", "SASRecNet"]
