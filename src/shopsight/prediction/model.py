"""Multi-task funnel networks: shared-bottom, MMoE and ESMM, with DIN-style attention.

Every network reads the same inputs: standardised dense features, the candidate item (id,
category, brand embeddings plus a projection of its content vector) and the user's recent items
(same representation). A DIN-style attention (Zhou et al., 2018) scores each recent item against
the candidate with an MLP over ``[q, k, q - k, q * k]``; the masked softmax of those scores pools
the history into a candidate-specific interest vector.

Architectures (``arch``):

``shared_bottom``
    one MLP shared by all tasks, one small tower per task.
``mmoe``
    Multi-gate Mixture-of-Experts (Ma et al., 2018): ``n_experts`` expert MLPs, each task mixes
    them with its own softmax gate.
``esmm``
    Entire Space Multi-task Model (Ma et al., 2018) over the whole funnel: towers give
    ``P(click)``, ``P(cart | click)`` and ``P(purchase | cart)``; the outputs are the products
    ``P(cart) = P(click) P(cart | click)`` and ``P(purchase) = P(cart) P(purchase | cart)``,
    each trained with its own label on every impression, so the conditional towers never see
    only the (biased) clicked subset.

``forward`` returns, per task, ``(log p, log(1 - p))`` so the loss is a stable binary
cross-entropy for products of probabilities too.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from shopsight.errors import InputError
from shopsight.training.layers import Dropout

ARCHS = ("shared_bottom", "mmoe", "esmm")
FUNNEL_TASKS = ("click", "add_to_cart", "purchase")


def _mlp(sizes: Sequence[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.ReLU(), Dropout(dropout)]
    return nn.Sequential(*layers)


class DINAttention(nn.Module):
    """Candidate-aware pooling of the history (masked softmax over an MLP score)."""

    def __init__(self, dim: int, hidden: int = 32) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(4 * dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, q: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        qq = q.unsqueeze(1).expand_as(keys)
        s = self.score(torch.cat([qq, keys, qq - keys, qq * keys], dim=-1)).squeeze(-1)
        s = s.masked_fill(~mask, -1e9)
        w = torch.softmax(s, dim=1) * mask  # an all-padding history pools to zero
        return torch.einsum("bl,bld->bd", w, keys)


class FunnelNet(nn.Module):
    """One network for one architecture and a subset of the funnel tasks."""

    def __init__(
        self,
        n_dense: int,
        n_items: int,
        n_cats: int,
        n_brands: int,
        content: torch.Tensor,
        item_cat: torch.Tensor,
        item_brand: torch.Tensor,
        *,
        arch: str = "esmm",
        tasks: Sequence[str] = FUNNEL_TASKS,
        emb_dim: int = 16,
        hidden: int = 128,
        tower: int = 32,
        n_experts: int = 4,
        attention: bool = True,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise InputError(f"arch must be one of {ARCHS}, got {arch!r}")
        if arch == "esmm" and tuple(tasks) != FUNNEL_TASKS:
            raise InputError(f"esmm models the whole funnel: tasks must be {FUNNEL_TASKS}")
        bad = [t for t in tasks if t not in FUNNEL_TASKS]
        if bad or not tasks:
            raise InputError(f"tasks must be a non-empty subset of {FUNNEL_TASKS}, got {tasks}")
        self.arch, self.tasks, self.attention = arch, tuple(tasks), attention
        self.register_buffer("content", content.float())
        self.register_buffer("item_cat", item_cat.long())
        self.register_buffer("item_brand", item_brand.long())
        self.item_emb = nn.Embedding(n_items, emb_dim, padding_idx=0)
        self.cat_emb = nn.Embedding(n_cats, emb_dim, padding_idx=0)
        self.brand_emb = nn.Embedding(n_brands, emb_dim, padding_idx=0)
        self.content_proj = nn.Linear(content.shape[1], emb_dim, bias=False)
        for emb in (self.item_emb, self.cat_emb, self.brand_emb):
            nn.init.normal_(emb.weight, std=0.05)
        self.din = DINAttention(emb_dim) if attention else None
        d_in = n_dense + 3 * emb_dim
        if arch == "mmoe":
            self.experts = nn.ModuleList([_mlp([d_in, hidden], dropout) for _ in range(n_experts)])
            self.gates = nn.ModuleList([nn.Linear(d_in, n_experts) for _ in self.tasks])
        else:
            self.bottom = _mlp([d_in, hidden, hidden], dropout)
        self.towers = nn.ModuleList(
            [nn.Sequential(nn.Linear(hidden, tower), nn.ReLU(), nn.Linear(tower, 1)) for _ in tasks]
        )

    def item_repr(self, idx: torch.Tensor) -> torch.Tensor:
        content: torch.Tensor = self.content  # type: ignore[assignment]
        item_cat: torch.Tensor = self.item_cat  # type: ignore[assignment]
        item_brand: torch.Tensor = self.item_brand  # type: ignore[assignment]
        rep = (
            self.item_emb(idx)
            + self.cat_emb(item_cat[idx])
            + self.brand_emb(item_brand[idx])
            + self.content_proj(content[idx])
        )
        return rep * (idx > 0).unsqueeze(-1)

    def logits(
        self, dense: torch.Tensor, cats: torch.Tensor, hist: torch.Tensor
    ) -> list[torch.Tensor]:
        q = self.item_repr(cats[:, 0])
        keys = self.item_repr(hist)
        mask = hist > 0
        if self.din is not None:
            interest = self.din(q, keys, mask)
        else:
            n = mask.sum(1, keepdim=True).clamp(min=1)
            interest = keys.sum(1) / n
        x = torch.cat([dense, q, interest, q * interest], dim=1)
        if self.arch == "mmoe":
            ex = torch.stack([e(x) for e in self.experts], dim=1)  # (b, K, h)
            hs = [torch.einsum("bk,bkh->bh", torch.softmax(g(x), dim=1), ex) for g in self.gates]
        else:
            h = self.bottom(x)
            hs = [h] * len(self.tasks)
        return [tw(h).squeeze(-1) for tw, h in zip(self.towers, hs, strict=True)]

    def forward(
        self, dense: torch.Tensor, cats: torch.Tensor, hist: torch.Tensor
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        ls = self.logits(dense, cats, hist)
        if self.arch != "esmm":
            return {
                t: (F.logsigmoid(lg), F.logsigmoid(-lg))
                for t, lg in zip(self.tasks, ls, strict=True)
            }
        out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        logp = torch.zeros_like(ls[0])
        for t, lg in zip(self.tasks, ls, strict=True):
            logp = logp + F.logsigmoid(lg)  # chain rule of the funnel
            log1mp = torch.log(-torch.expm1(logp.clamp(max=-1e-6)))
            out[t] = (logp, log1mp)
        return out


def bce(out: tuple[torch.Tensor, torch.Tensor], y: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy from ``(log p, log(1 - p))``."""
    logp, log1mp = out
    return -(y * logp + (1.0 - y) * log1mp).mean()
