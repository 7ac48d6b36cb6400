"""The generator: one catalogue for the whole shop, then users block by block.

Memory is bounded by the catalogue and one block of users; no users x items matrix exists. A
user's item choices are drawn exactly from ``softmax(affinity)`` by rejection: the affinity is
``taste(style, category) + brand loyalty + 0.3 quality - price misfit``, so items are proposed
from (brand, style) groups weighted by everything but the price misfit (a per-user vector over a
few hundred groups, then an item by quality within the group) and accepted with probability
``exp(-price misfit)`` (at most 1). The per-user mean and spread of the affinity under that
distribution, which standardise it for the funnel and ratings, are estimated from 64 draws.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np

from ._util import _a, _epoch, _ids, _sigmoid
from .config import ShopConfig
from .images import _render
from .world import (
    _BRAND_HEADS,
    _BRAND_TAILS,
    _BRAND_TIERS,
    _CART,
    _CLICK,
    _CLOSERS,
    _DETAILS,
    _FAV,
    _OPENERS,
    _PURCHASE,
    _REMOVE,
    _SEARCH,
    _SHARE,
    _SUMMARIES,
    _VIEW,
    AGE_BANDS,
    CATEGORIES,
    GENDERS,
    REGIONS,
    SEGMENTS,
    STYLES,
    BoolArray,
    CategoryDef,
    FloatArray,
    IntArray,
    StyleDef,
)

# Spawn keys of the random streams beside the catalogue's (which keep their historic ones).
_WORLD_KEY = 100
_BLOCK_KEY = 101
_BLOCK_STREAMS = ("users", "sessions", "funnel", "reviews", "bots", "noise")
_MOMENT_DRAWS = 64  # draws per user that estimate the mean / spread of its affinity
_GROUP_CELLS = 1_000_000  # users x item groups held at once while drawing items


@dataclass
class _Catalog:
    categories: tuple[CategoryDef, ...]
    styles: tuple[StyleDef, ...]
    brand_names: list[str]  # per brand index
    brand_category: IntArray
    brand_tier: IntArray
    brand_style: IntArray  # signature style of the brand
    item_ids: list[str]
    cat: IntArray
    style: IntArray
    brand: IntArray
    colour: IntArray  # index into the style palette
    material: IntArray
    noun: IntArray
    size: IntArray
    true_price: FloatArray
    listed_price: FloatArray
    price_z: FloatArray  # position of the item's log price within its category
    quality: FloatArray
    outliers: dict[int, str]  # item index -> kind


@dataclass
class _Users:
    """One block of users; indices are local to the block (``offset`` + index = global)."""

    offset: int
    user_ids: list[str]
    segment: IntArray  # -1 for bots
    bot: BoolArray
    signup: IntArray  # epoch seconds
    age: IntArray
    gender: IntArray
    region: IntArray
    style_pref: FloatArray
    cat_pref: FloatArray
    price_target: FloatArray
    price_tolerance: FloatArray
    loyalty: FloatArray
    fav_brands: IntArray  # (n, 2), -1 where a user has only one favourite
    activity: FloatArray  # sessions per week
    conversion: FloatArray


class _ItemSampler:
    """Exact draws from each user's softmax over items, by proposal + price rejection.

    Items are grouped by (brand, style, price band). A user's proposal weight of a group is
    ``exp(taste + loyalty)`` times the group's total ``exp(0.3 quality)`` times the best price fit
    any price in the band can have for that user; an item within the group comes from an alias
    table (O(1)), and is accepted with ``exp(best fit of the band - its own misfit)`` <= 1.
    """

    _BAND_EDGES = np.array([-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5])

    def __init__(self, cat: _Catalog, n_styles: int) -> None:
        self.cat = cat
        n_bands = len(self._BAND_EDGES) + 1
        band = np.searchsorted(self._BAND_EDGES, cat.price_z, side="right")
        key = (cat.brand * n_styles + cat.style) * n_bands + band
        keys, group = np.unique(key, return_inverse=True)  # non-empty groups only
        self.n_groups = len(keys)
        self.order = np.argsort(group, kind="stable")  # items grouped
        g_sorted = group[self.order]
        w = np.exp(0.3 * cat.quality[self.order])
        self.count = np.bincount(g_sorted, minlength=self.n_groups)
        self.first = np.r_[0, np.cumsum(self.count)[:-1]].astype(np.int64)
        total = np.bincount(g_sorted, weights=w, minlength=self.n_groups)
        self.log_total = np.log(total)
        self.prob, self.alias = _alias_tables(w, self.first, self.count)
        self.g_band = keys % n_bands
        self.g_style = (keys // n_bands) % n_styles
        self.g_brand = keys // n_bands // n_styles
        self.g_cat = cat.brand_category[self.g_brand]
        lo = np.r_[-np.inf, self._BAND_EDGES]
        hi = np.r_[self._BAND_EDGES, np.inf]
        self.g_lo, self.g_hi = lo[self.g_band], hi[self.g_band]

    def _best_fit(self, users: _Users, u: IntArray | slice, groups: IntArray | slice) -> FloatArray:
        """The smallest price misfit any price of the group's band has for each user (<= 0)."""
        t = users.price_target[u][:, None] if isinstance(u, slice) else users.price_target[u]
        tol = (
            users.price_tolerance[u][:, None] if isinstance(u, slice) else users.price_tolerance[u]
        )
        d = np.maximum(np.maximum(self.g_lo[groups] - t, t - self.g_hi[groups]), 0.0)
        out: FloatArray = -(d**2) / (2.0 * tol**2)
        return out

    def prepare(self, users: _Users) -> None:
        """Per-user group CDFs of these users (n x groups), flattened with user offsets."""
        logw = np.log(users.style_pref)[:, self.g_style] + np.log(users.cat_pref)[:, self.g_cat]
        fav = (self.g_brand[None, :] == users.fav_brands[:, :1]) | (
            self.g_brand[None, :] == users.fav_brands[:, 1:]
        )
        logw += 3.0 * users.loyalty[:, None] * fav
        del fav
        logw += self.log_total[None, :]
        logw += self._best_fit(users, slice(None), slice(None))
        logw -= logw.max(axis=1, keepdims=True)
        np.exp(logw, out=logw)
        np.cumsum(logw, axis=1, out=logw)
        logw /= logw[:, -1:]
        logw[:, -1] = 1.0
        logw += np.arange(len(logw))[:, None]
        self.users = users
        self.group_flat = logw.ravel()

    def affinity(self, users: _Users, u: IntArray, i: IntArray) -> FloatArray:
        """Planted affinity of (user, item) pairs: the log-odds of interest."""
        cat = self.cat
        a = np.log(users.style_pref[u, cat.style[i]]) + np.log(users.cat_pref[u, cat.cat[i]])
        a -= (cat.price_z[i] - users.price_target[u]) ** 2 / (2.0 * users.price_tolerance[u] ** 2)
        fav = (cat.brand[i] == users.fav_brands[u, 0]) | (cat.brand[i] == users.fav_brands[u, 1])
        a += 3.0 * users.loyalty[u] * fav
        a += 0.3 * cat.quality[i]
        return a

    def draw(self, u: IntArray, rng: np.random.Generator) -> IntArray:
        """One item per entry of ``u`` (indices into the prepared users)."""
        us, cat, g_n = self.users, self.cat, self.n_groups
        out = np.empty(len(u), dtype=np.int64)
        todo = np.arange(len(u))
        while len(todo):
            uu = u[todo]
            r = rng.random(len(todo)) * (1.0 - 1e-12)
            g = np.searchsorted(self.group_flat, uu + r, side="right") - uu * g_n
            g = np.clip(g, 0, g_n - 1)
            k = self.first[g] + (rng.random(len(todo)) * self.count[g]).astype(np.int64)
            k = np.where(rng.random(len(todo)) < self.prob[k], k, self.alias[k])
            item = self.order[k]
            misfit = (cat.price_z[item] - us.price_target[uu]) ** 2 / (
                2.0 * us.price_tolerance[uu] ** 2
            )
            # proposal carried exp(best fit); accept exp(-misfit) / exp(best fit) <= 1
            ok = rng.random(len(todo)) < np.exp(-misfit - self._best_fit(us, uu, g))
            out[todo[ok]] = item[ok]
            todo = todo[~ok]
        return out


def _alias_tables(w: FloatArray, first: IntArray, count: IntArray) -> tuple[FloatArray, IntArray]:
    """Walker/Vose alias tables for each group's slice of ``w`` (positions are global)."""
    prob = np.ones(len(w))
    alias = np.arange(len(w), dtype=np.int64)
    for f, c in zip(first.tolist(), count.tolist(), strict=True):
        if c < 2:
            continue
        p = (w[f : f + c] * (c / w[f : f + c].sum())).tolist()
        small = [k for k in range(c) if p[k] < 1.0]
        large = [k for k in range(c) if p[k] >= 1.0]
        while small and large:
            s, g = small.pop(), large.pop()
            prob[f + s] = p[s]
            alias[f + s] = f + g
            p[g] -= 1.0 - p[s]
            (small if p[g] < 1.0 else large).append(g)
    return prob, alias


def _slice_users(users: _Users, lo: int, hi: int) -> _Users:
    fields: dict[str, Any] = {
        k: (v[lo:hi] if isinstance(v, (np.ndarray, list)) else v) for k, v in vars(users).items()
    }
    fields["offset"] = users.offset + lo
    return _Users(**fields)


class _ShopGenerator:
    def __init__(self, config: ShopConfig) -> None:
        self.cfg = config
        streams = np.random.SeedSequence(config.seed).spawn(8)
        self.catalog_rng = np.random.default_rng(streams[0])
        self.images_rng = np.random.default_rng(streams[7])
        self.start = _epoch(date.fromisoformat(config.start_date))
        self.end = self.start + config.days * 86400
        self.segments = SEGMENTS[: config.n_segments]
        self.cat = self._catalog()
        self.seg_styles, self.seg_cats = self._segment_tastes()
        self.sampler = _ItemSampler(self.cat, config.n_styles)

    def block_rngs(self, block: int) -> dict[str, np.random.Generator]:
        seq = np.random.SeedSequence(self.cfg.seed, spawn_key=(_BLOCK_KEY, block))
        return {
            n: np.random.default_rng(s)
            for n, s in zip(_BLOCK_STREAMS, seq.spawn(len(_BLOCK_STREAMS)), strict=True)
        }

    # -- catalogue ---------------------------------------------------------------------------
    def _catalog(self) -> _Catalog:
        cfg, rng = self.cfg, self.catalog_rng
        cats = CATEGORIES[: cfg.n_categories]
        styles = STYLES[: cfg.n_styles]
        n_brands = cfg.n_categories * cfg.brands_per_category
        combos = [h + t for h in _BRAND_HEADS for t in _BRAND_TAILS]
        pick = rng.choice(len(combos), size=n_brands, replace=False)
        brand_names = [combos[i] for i in pick]
        brand_category = np.repeat(np.arange(cfg.n_categories), cfg.brands_per_category)
        # Every category gets budget, mid and premium brands in a shuffled order.
        brand_tier = np.concatenate(
            [
                rng.permutation(np.arange(cfg.brands_per_category) % len(_BRAND_TIERS))
                for _ in range(cfg.n_categories)
            ]
        ).astype(np.int64)
        brand_style = rng.integers(0, cfg.n_styles, n_brands)

        n = cfg.n_items
        cat = rng.permutation(np.arange(n) % cfg.n_categories).astype(np.int64)
        brand = (
            cat * cfg.brands_per_category + rng.integers(0, cfg.brands_per_category, n)
        ).astype(np.int64)
        # Brands lean towards a signature style, so brand and style are correlated as in life.
        style = np.where(
            rng.random(n) < 0.5, brand_style[brand], rng.integers(0, cfg.n_styles, n)
        ).astype(np.int64)
        colour = rng.integers(0, min(len(s.palette) for s in styles), n)
        material = rng.integers(0, min(len(c.materials) for c in cats), n)
        noun = rng.integers(0, min(len(c.nouns) for c in cats), n)
        n_sizes = np.array([len(c.sizes) for c in cats])
        size = np.floor(rng.random(n) * n_sizes[cat]).astype(np.int64)
        median = np.array([c.median_price for c in cats])[cat]
        sigma = np.array([c.price_sigma for c in cats])[cat]
        tier_shift = np.array([_BRAND_TIERS[t][1] for t in brand_tier])[brand]
        log_price = np.log(median) + tier_shift + rng.normal(0.0, 1.0, n) * sigma
        raw = np.exp(log_price)
        # Shop-style prices: x.99 above 10, cents below.
        true_price = np.where(raw >= 10, np.maximum(np.round(raw) - 0.01, 9.99), np.round(raw, 2))
        lp = np.log(true_price)
        price_z = np.zeros(n)
        for c in range(cfg.n_categories):
            m = cat == c
            sd = lp[m].std()
            price_z[m] = (lp[m] - lp[m].mean()) / (sd if sd > 0 else 1.0)
        quality = rng.normal(0.0, 1.0, n)

        # Catalogue typos: the listed price is off by 100x; transactions still use the true one.
        listed = true_price.copy()
        n_out = round(cfg.outlier_price_fraction * n)
        outliers: dict[int, str] = {}
        if n_out:
            idx = np.sort(rng.choice(n, size=n_out, replace=False))
            for k, i in enumerate(idx):
                if k % 2 == 0:
                    listed[i] = round(true_price[i] * 100, 2)
                    outliers[int(i)] = "x100"
                else:
                    listed[i] = max(0.01, round(true_price[i] / 100, 2))
                    outliers[int(i)] = "/100"
        return _Catalog(
            categories=cats,
            styles=styles,
            brand_names=brand_names,
            brand_category=brand_category.astype(np.int64),
            brand_tier=brand_tier,
            brand_style=brand_style.astype(np.int64),
            item_ids=_ids("i", n),
            cat=cat,
            style=style,
            brand=brand,
            colour=colour.astype(np.int64),
            material=material.astype(np.int64),
            noun=noun.astype(np.int64),
            size=size,
            true_price=true_price,
            listed_price=listed,
            price_z=price_z,
            quality=quality,
            outliers=outliers,
        )

    def item_texts(self) -> tuple[list[str], list[str], list[str]]:
        cat = self.cat
        rng = np.random.default_rng(
            np.random.SeedSequence(self.cfg.seed, spawn_key=(_WORLD_KEY, 1))
        )
        titles, descs, attrs = [], [], []
        for i in range(self.cfg.n_items):
            cdef = cat.categories[cat.cat[i]]
            sdef = cat.styles[cat.style[i]]
            brand = cat.brand_names[cat.brand[i]]
            colour = sdef.palette[cat.colour[i]][0]
            material = cdef.materials[cat.material[i]]
            noun = cdef.nouns[cat.noun[i]]
            w = [sdef.words[j] for j in rng.permutation(len(sdef.words))[:3]]
            use = cdef.uses[rng.integers(len(cdef.uses))]
            leaf = cdef.path.split(" > ")[-1].lower()
            titles.append(
                f"{brand} {w[0].title()} {colour.title()} {material.title()} {noun.title()}"
            )
            opener = (
                f"{_a(w[0]).capitalize()} {w[0]} {noun} in {colour} {material}, made for {use}.",
                f"This {w[1]} {noun} from {brand} pairs {colour} tones with {material}.",
                f"{brand} brings {_a(w[0])} {w[0]}, {w[1]} look to {leaf} with this {colour} {noun}.",
            )[rng.integers(3)]
            middle = (
                f"Its {w[1]} design and {w[2]} details suit {use}.",
                f"Expect {_a(w[2])} {w[2]} finish and {material} you can feel.",
                f"{_a(w[2]).capitalize()} {w[2]} {leaf} piece with {_a(sdef.pattern)} {sdef.pattern} motif.",
            )[rng.integers(3)]
            closer = f"Size: {cdef.sizes[cat.size[i]]}. Category: {cdef.path}."
            descs.append(f"{opener} {middle} {closer}")
            attrs.append(
                json.dumps(
                    {
                        "colour": colour,
                        "material": material,
                        "size": cdef.sizes[cat.size[i]],
                        "pattern": sdef.pattern if rng.random() < 0.8 else "plain",
                        "brand_tier": _BRAND_TIERS[cat.brand_tier[cat.brand[i]]][0],
                    },
                    ensure_ascii=False,
                )
            )
        return titles, descs, attrs

    def _segment_tastes(self) -> tuple[list[list[int]], list[list[int]]]:
        """Favourite styles (by name; names not in play replaced) and categories per segment."""
        cfg = self.cfg
        rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(_WORLD_KEY, 0)))
        style_names = [s.name for s in self.cat.styles]
        used: set[int] = set()
        seg_styles: list[list[int]] = []
        for sdef in self.segments:
            fav = [style_names.index(nm) for nm in sdef.styles if nm in style_names]
            seg_styles.append(fav)
            used.update(fav)
        spare = [i for i in rng.permutation(cfg.n_styles).tolist() if i not in used]
        spare += rng.permutation(cfg.n_styles).tolist()
        for fav in seg_styles:
            while len(fav) < 2:
                cand = spare.pop(0)
                if cand not in fav:
                    fav.append(cand)
        # Favourite categories: consecutive pairs of a permutation, so segments differ.
        perm = rng.permutation(cfg.n_categories).tolist()
        seg_cats = [
            sorted({perm[(2 * k) % cfg.n_categories], perm[(2 * k + 1) % cfg.n_categories]})
            for k in range(len(self.segments))
        ]
        return seg_styles, seg_cats

    # -- users ---------------------------------------------------------------------------------
    def users(self, block: int, rng: np.random.Generator) -> _Users:
        cfg, cat = self.cfg, self.cat
        lo, hi = cfg.block_range(block)
        n = hi - lo
        # Bots by cumulative rounding, so the blocks' counts add up to round(fraction * n_users).
        n_bots = round(cfg.bot_fraction * hi) - round(cfg.bot_fraction * lo)
        bot = np.zeros(n, dtype=bool)
        bot[rng.choice(n, size=n_bots, replace=False)] = True
        shares = np.array([s.share for s in self.segments])
        segment = np.full(n, -1, dtype=np.int64)
        humans = np.flatnonzero(~bot)
        # Exact segment sizes from the shares (largest remainder), then shuffled over users.
        quota = shares / shares.sum() * len(humans)
        counts = np.floor(quota).astype(np.int64)
        counts[np.argsort(-(quota - counts), kind="stable")[: len(humans) - counts.sum()]] += 1
        segment[humans] = rng.permutation(np.repeat(np.arange(len(self.segments)), counts))

        def taste(favs: list[int], size: int, focus: float) -> FloatArray:
            base = np.full(size, (1.0 - focus) / size)
            base[favs] += focus / len(favs)
            return base

        style_pref = np.full((n, cfg.n_styles), 1.0 / cfg.n_styles)
        cat_pref = np.full((n, cfg.n_categories), 1.0 / cfg.n_categories)
        price_target = np.zeros(n)
        tolerance = np.ones(n)
        loyalty = np.zeros(n)
        activity = np.zeros(n)
        conversion = np.zeros(n)
        age = np.zeros(n, dtype=np.int64)
        gender = rng.choice(len(GENDERS), size=n, p=[0.48, 0.46, 0.06]).astype(np.int64)
        region = rng.integers(0, len(REGIONS), n)
        concentration = 15.0  # individual variation around the segment taste
        for k, sdef in enumerate(self.segments):
            m = np.flatnonzero(segment == k)
            if not len(m):
                continue
            sp = taste(self.seg_styles[k], cfg.n_styles, sdef.focus)
            cp = taste(self.seg_cats[k], cfg.n_categories, sdef.focus)
            style_pref[m] = rng.dirichlet(sp * concentration, size=len(m))
            cat_pref[m] = rng.dirichlet(cp * concentration, size=len(m))
            price_target[m] = sdef.price_z + rng.normal(0, 0.4, len(m))
            tolerance[m] = sdef.price_tolerance
            loyalty[m] = np.clip(sdef.brand_loyalty + rng.normal(0, 0.08, len(m)), 0, 1)
            activity[m] = sdef.sessions_per_week * rng.lognormal(0.0, 0.3, len(m))
            conversion[m] = sdef.conversion + rng.normal(0, 0.25, len(m))
            w = np.array(sdef.age_weights)
            age[m] = rng.choice(len(AGE_BANDS), size=len(m), p=w / w.sum())
        age[bot] = rng.integers(0, len(AGE_BANDS), int(bot.sum()))
        # Preferences floor, so log-affinities stay finite.
        style_pref = np.maximum(style_pref, 1e-4)
        cat_pref = np.maximum(cat_pref, 1e-4)

        # Two favourite brands per user: 8 tries of a category drawn from their taste and a brand
        # within it preferring the user's styles; the first two distinct brands are kept.
        bpc, tries = cfg.brands_per_category, 8
        cdf = np.cumsum(cat_pref / cat_pref.sum(axis=1, keepdims=True), axis=1)
        c = (rng.random((n, tries))[:, :, None] > cdf[:, None, :]).sum(axis=2)
        c = np.minimum(c, cfg.n_categories - 1)
        cands = c[:, :, None] * bpc + np.arange(bpc)
        w = 1.0 + 3.0 * style_pref[np.arange(n)[:, None, None], cat.brand_style[cands]]
        pick = np.argmax(np.log(w) + rng.gumbel(size=w.shape), axis=2)
        tried = np.take_along_axis(cands, pick[:, :, None], axis=2)[:, :, 0]
        first = tried[:, 0]
        other = tried != first[:, None]
        second = np.where(other.any(axis=1), tried[np.arange(n), np.argmax(other, axis=1)], -1)
        fav_brands = np.stack([first, second], axis=1)
        fav_brands = np.where(
            (second >= 0)[:, None], np.sort(fav_brands, axis=1), fav_brands
        ).astype(np.int64)

        # 75% signed up before the window (up to two years), the rest during its first 80%.
        before = rng.random(n) < 0.75
        signup_days = np.where(
            before,
            -rng.integers(1, 730, n),
            rng.integers(0, max(1, int(cfg.days * 0.8)), n),
        )
        signup = self.start + signup_days * 86400 + rng.integers(0, 86400, n)
        width = max(4, len(str(cfg.n_users - 1)))
        return _Users(
            offset=lo,
            user_ids=[f"u{i:0{width}d}" for i in range(lo, hi)],
            segment=segment,
            bot=bot,
            signup=signup.astype(np.int64),
            age=age,
            gender=gender,
            region=region.astype(np.int64),
            style_pref=style_pref,
            cat_pref=cat_pref,
            price_target=price_target,
            price_tolerance=tolerance,
            loyalty=loyalty,
            fav_brands=fav_brands,
            activity=activity,
            conversion=conversion,
        )

    # -- behaviour -------------------------------------------------------------------------------
    def sessions(self, users: _Users, rng: np.random.Generator) -> tuple[IntArray, IntArray]:
        """(user, start second) per human session, before overlap fixing."""
        cfg = self.cfg
        humans = np.flatnonzero(~users.bot)
        first_day = np.clip((users.signup - self.start) // 86400, 0, cfg.days - 1)
        active_days = cfg.days - first_day
        lam = users.activity * active_days / 7.0
        n_sess = np.maximum(1, rng.poisson(lam[humans]))
        s_user = np.repeat(humans, n_sess)
        seg = users.segment[s_user]
        weekend = np.array([s.weekend_factor for s in self.segments])[seg]
        # Day: uniform over the user's active days, thinned by the weekday rhythm (rejection).
        day = np.empty(len(s_user), dtype=np.int64)
        todo = np.arange(len(s_user))
        start_dow = date.fromisoformat(cfg.start_date).weekday()
        while len(todo):
            fd = first_day[s_user[todo]]
            d = fd + (rng.random(len(todo)) * (cfg.days - fd)).astype(np.int64)
            is_we = (start_dow + d) % 7 >= 5
            w = np.where(is_we, weekend[todo], 1.0) / np.maximum(weekend[todo], 1.0)
            ok = rng.random(len(todo)) < w
            day[todo[ok]] = d[ok]
            todo = todo[~ok]
        peaks = [np.array(s.peak_hours) for s in self.segments]
        hour = np.empty(len(s_user))
        for k, p in enumerate(peaks):
            m = np.flatnonzero(seg == k)
            hour[m] = p[rng.integers(0, len(p), len(m))] + rng.normal(0, 1.3, len(m))
        sec = (np.mod(hour, 24.0) * 3600).astype(np.int64)
        start = self.start + day * 86400 + sec
        # The signup day may start after the sampled hour: never act before signing up.
        start = np.maximum(start, users.signup[s_user] + 60)
        return s_user.astype(np.int64), start.astype(np.int64)

    def behaviour(self, users: _Users, rngs: dict[str, np.random.Generator]) -> dict[str, Any]:
        """A block's human sessions, in slices of users small enough that their group CDFs
        (users x groups) stay within a few tens of MB."""
        n_u = len(users.user_ids)
        step = max(1, _GROUP_CELLS // self.sampler.n_groups)
        mu, sd = np.zeros(n_u), np.ones(n_u)
        parts = []
        n_sessions = 0
        queries: list[str] = []
        for lo in range(0, n_u, step):
            part = _slice_users(users, lo, min(n_u, lo + step))
            beh = self._behaviour(part, rngs)
            ev = beh["events"]
            ev["user"] += lo
            ev["session"] = np.where(ev["session"] >= 0, ev["session"] + n_sessions, -1)
            ev["query"] = np.where(ev["query"] >= 0, ev["query"] + len(queries), -1)
            mu[lo : lo + step], sd[lo : lo + step] = beh["mu"], beh["sd"]
            n_sessions += beh["n_sessions"]
            queries += beh["queries"]
            parts.append(ev)
        events = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        sampler = self.sampler

        def aff_z(u: IntArray, i: IntArray) -> FloatArray:
            out: FloatArray = (sampler.affinity(users, u, i) - mu[u]) / sd[u]
            return out

        return {"events": events, "queries": queries, "aff_z": aff_z, "n_sessions": n_sessions}

    def _behaviour(self, users: _Users, rngs: dict[str, np.random.Generator]) -> dict[str, Any]:
        cat, sampler = self.cat, self.sampler
        rng, frng = rngs["sessions"], rngs["funnel"]
        sampler.prepare(users)
        draw = sampler.draw
        # Mean and spread of each user's affinity under its own item distribution.
        n_u = len(users.user_ids)
        mu = np.zeros(n_u)
        sd = np.ones(n_u)
        people = np.flatnonzero(~users.bot)
        if len(people):
            mu_u = np.repeat(people, _MOMENT_DRAWS)
            a = sampler.affinity(users, mu_u, draw(mu_u, rng))
            a = a.reshape(len(people), _MOMENT_DRAWS)
            mu[people] = a.mean(axis=1)
            sd[people] = np.maximum(a.std(axis=1), 1e-9)

        def aff_z(u: IntArray, i: IntArray) -> FloatArray:
            out: FloatArray = (sampler.affinity(users, u, i) - mu[u]) / sd[u]
            return out

        s_user, s_start = self.sessions(users, rng)
        n_s = len(s_user)
        seg = users.segment[s_user]
        vps = np.array([s.views_per_session for s in self.segments])[seg]
        n_views = np.minimum(1 + rng.poisson(vps - 1.0), 30)
        max_len = int(n_views.max()) if n_s else 1
        views = np.full((n_s, max_len), -1, dtype=np.int64)
        views[:, 0] = draw(s_user, rng)
        k_cand = 6
        for t in range(1, max_len):
            act = np.flatnonzero(n_views > t)
            u = s_user[act]
            cands = draw(np.repeat(u, k_cand), rng).reshape(-1, k_cand)
            prev = views[act, t - 1][:, None]
            # Sequential structure: prefer candidates close to the previous item.
            score = (
                1.5 * (cat.cat[cands] == cat.cat[prev])
                + 1.0 * (cat.style[cands] == cat.style[prev])
                + 0.5 * (cat.brand[cands] == cat.brand[prev])
                + rng.gumbel(size=cands.shape)
            )
            score[cands == prev] = -np.inf
            views[act, t] = cands[np.arange(len(act)), np.argmax(score, axis=1)]

        # One row per view: funnel outcomes.
        vs, vt = np.nonzero(views >= 0)  # row-major: sessions in order, steps in order
        vi = views[vs, vt]
        vu = s_user[vs]
        vseg = seg[vs]
        z = aff_z(vu, vi)
        conv = users.conversion[vu]
        click = frng.random(len(vi)) < _sigmoid(-1.1 + 0.9 * z + conv)
        cart = click & (frng.random(len(vi)) < _sigmoid(-1.5 + 0.9 * z + conv))
        buy = cart & (frng.random(len(vi)) < _sigmoid(-0.5 + 0.7 * z + conv))
        remove = cart & ~buy & (frng.random(len(vi)) < 0.5)
        fav_rate = np.array([s.favorite_rate for s in self.segments])[vseg]
        share_rate = np.array([s.share_rate for s in self.segments])[vseg]
        fav = click & (frng.random(len(vi)) < fav_rate)
        share = click & (frng.random(len(vi)) < share_rate)

        # Events as (session, order key, type, item); keys keep the funnel order in a session.
        parts_s, parts_k, parts_t, parts_i = [], [], [], []

        def add(mask: BoolArray, key: IntArray, et: int) -> None:
            parts_s.append(vs[mask])
            parts_k.append(key[mask])
            parts_t.append(np.full(int(mask.sum()), et, dtype=np.int64))
            parts_i.append(vi[mask])

        base = vt * 8
        add(np.ones(len(vi), dtype=bool), base, _VIEW)
        add(click, base + 1, _CLICK)
        add(fav, base + 2, _FAV)
        add(share, base + 3, _SHARE)
        add(cart, base + 4, _CART)
        tail = max_len * 8
        add(remove, tail + vt, _REMOVE)
        add(buy, tail + max_len + vt, _PURCHASE)
        search_rate = np.array([s.search_rate for s in self.segments])[seg]
        has_search = rng.random(n_s) < search_rate
        srch = np.flatnonzero(has_search)
        parts_s.append(srch)
        parts_k.append(np.full(len(srch), -1, dtype=np.int64))
        parts_t.append(np.full(len(srch), _SEARCH, dtype=np.int64))
        parts_i.append(np.full(len(srch), -1, dtype=np.int64))
        es = np.concatenate(parts_s)
        ek = np.concatenate(parts_k)
        et = np.concatenate(parts_t)
        ei = np.concatenate(parts_i)
        order = np.lexsort((ek, es))
        es, ek, et, ei = es[order], ek[order], et[order], ei[order]

        # Think time before each event, by type (seconds, at least 1 so order is unambiguous).
        mean_gap = np.array([0, 35, 8, 5, 6, 15, 20, 60, 0], dtype=np.float64)[et]
        min_gap = np.array([0, 3, 1, 1, 1, 2, 2, 10, 0], dtype=np.int64)[et]
        gap = min_gap + rng.exponential(1.0, len(et)) * mean_gap
        gap = np.floor(gap).astype(np.int64)
        first = np.r_[True, es[1:] != es[:-1]]
        gap[first] = 0
        cs = np.cumsum(gap)
        first_idx = np.flatnonzero(first)
        offset = cs - np.repeat(cs[first_idx], np.diff(np.r_[first_idx, len(es)]))
        duration = np.zeros(n_s, dtype=np.int64)
        np.maximum.at(duration, es, offset)

        # A user's sessions never overlap: push each start past the previous end + 10 min.
        s_order = np.lexsort((s_start, s_user))
        start = s_start.copy()
        su = s_user[s_order].tolist()
        st = s_start[s_order].tolist()
        du = duration[s_order].tolist()
        prev_user, prev_end = -1, 0
        for j in range(len(su)):
            if su[j] == prev_user and st[j] < prev_end + 600:
                st[j] = prev_end + 600
            prev_user, prev_end = su[j], st[j] + du[j]
        start[s_order] = st
        keep_s = start + duration < self.end
        # Session ids in time order, so they read naturally.
        kept = np.flatnonzero(keep_s)
        kept = kept[np.lexsort((kept, start[kept]))]
        sess_id = np.full(n_s, -1, dtype=np.int64)
        sess_id[kept] = np.arange(len(kept))

        keep_e = keep_s[es]
        ev = {
            "user": s_user[es][keep_e],
            "item": ei[keep_e],
            "type": et[keep_e],
            "ts": (start[es] + offset)[keep_e],
            "session": sess_id[es][keep_e],
            "order": ek[keep_e],
        }
        # Searches: a query derived from the first item the session then views.
        srch_keep = srch[keep_s[srch]]
        queries = self._queries(views[srch_keep, 0], seg[srch_keep], rng)
        q_of_session = np.full(n_s, -1, dtype=np.int64)
        q_of_session[srch_keep] = np.arange(len(srch_keep))
        ev["query"] = np.where(ev["type"] == _SEARCH, q_of_session[es][keep_e], -1)
        ev["value"] = np.where(ev["type"] == _PURCHASE, cat.true_price[ev["item"]], np.nan)
        return {
            "events": ev,
            "queries": queries,
            "mu": mu,
            "sd": sd,
            "n_sessions": len(kept),
        }

    def _queries(self, items: IntArray, seg: IntArray, rng: np.random.Generator) -> list[str]:
        cat = self.cat
        out = []
        for i, k in zip(items.tolist(), seg.tolist(), strict=True):
            cdef = cat.categories[cat.cat[i]]
            sdef = cat.styles[cat.style[i]]
            noun = cdef.nouns[cat.noun[i]]
            form = int(rng.integers(5))
            if form == 0:
                q = f"{sdef.words[rng.integers(len(sdef.words))]} {noun}"
            elif form == 1:
                q = f"{sdef.palette[cat.colour[i]][0]} {noun}"
            elif form == 2:
                q = f"{cat.brand_names[cat.brand[i]]} {noun}"
            elif form == 3:
                q = f"{cdef.materials[cat.material[i]]} {noun}"
            else:
                q = f"{sdef.words[0]} {cdef.path.split(' > ')[-1]}"
            prefixes = self.segments[k].query_prefixes
            if prefixes and rng.random() < 0.5:
                q = f"{prefixes[rng.integers(len(prefixes))]} {q}"
            out.append(q.lower())
        return out

    def bots(self, users: _Users, rng: np.random.Generator) -> dict[str, IntArray]:
        """Scrapers: bursts of uniform random views/clicks a second or two apart, no purchases."""
        cfg = self.cfg
        bots = np.flatnonzero(users.bot)
        if not len(bots):
            empty = np.zeros(0, dtype=np.int64)
            return {k: empty for k in ("user", "item", "type", "ts", "burst")}
        n_bursts = rng.integers(4, 10, len(bots))
        b_user = np.repeat(bots, n_bursts)
        b_len = rng.integers(80, 250, len(b_user))
        b_start = self.start + rng.integers(0, (cfg.days - 1) * 86400, len(b_user))
        burst = np.repeat(np.arange(len(b_user)), b_len)
        gap = rng.integers(1, 3, len(burst))
        first = np.r_[True, burst[1:] != burst[:-1]]
        gap[first] = 0
        cs = np.cumsum(gap)
        first_idx = np.flatnonzero(first)
        offset = cs - np.repeat(cs[first_idx], b_len)
        return {
            "user": b_user[burst],
            "item": rng.integers(0, cfg.n_items, len(burst)),
            "type": np.where(rng.random(len(burst)) < 0.85, _VIEW, _CLICK).astype(np.int64),
            "ts": b_start[burst] + offset,
            "burst": burst,
        }

    # -- reviews ---------------------------------------------------------------------------------
    def reviews(
        self, users: _Users, beh: dict[str, Any], rng: np.random.Generator
    ) -> list[dict[str, Any]]:
        cat, ev = self.cat, beh["events"]
        buy = np.flatnonzero(ev["type"] == _PURCHASE)
        u, i, ts = ev["user"][buy], ev["item"][buy], ev["ts"][buy]
        rate = np.array([s.review_rate for s in self.segments])[users.segment[u]]
        pick = rng.random(len(buy)) < rate
        verified = np.ones(len(buy), dtype=bool)
        # A few unverified reviews from users who only clicked.
        clk = np.flatnonzero(ev["type"] == _CLICK)
        extra = clk[rng.random(len(clk)) < 0.004]
        u = np.r_[u[pick], ev["user"][extra]]
        i = np.r_[i[pick], ev["item"][extra]]
        ts = np.r_[ts[pick], ev["ts"][extra]]
        verified = np.r_[verified[pick], np.zeros(len(extra), dtype=bool)]
        delay = (3600 + rng.exponential(4 * 86400, len(u))).astype(np.int64)
        ts = ts + delay
        sat = 0.9 * beh["aff_z"](u, i) + 0.6 * cat.quality[i] + rng.normal(0, 0.6, len(u))
        # Some deliveries disappoint regardless of taste (defects), more often for low-quality
        # items: the J-shaped rating distribution of real shops, with a fat 1-star tail.
        defect = rng.random(len(u)) < 0.16 * _sigmoid(-1.5 * cat.quality[i])
        sat -= 3.0 * defect
        rating = 1 + np.searchsorted(np.array([-1.4, -0.7, 0.0, 0.7]), sat)
        # One review per user and item, none after the end of history.
        ok = ts < self.end
        order = np.lexsort((ts, i, u))
        seen: set[tuple[int, int]] = set()
        out: list[dict[str, Any]] = []
        for j in order.tolist():
            key = (int(u[j]), int(i[j]))
            if not ok[j] or key in seen:
                continue
            seen.add(key)
            r = int(rating[j])
            summary, text = self._review_text(int(i[j]), r, rng)
            lam = 0.6 + (1.5 if r <= 2 else 0.0) + 0.02 * len(text.split())
            out.append(
                {
                    "user_idx": key[0],
                    "item_idx": key[1],
                    "rating": r,
                    "summary": summary,
                    "text": text,
                    "ts": int(ts[j]),
                    "helpful_votes": int(rng.poisson(lam)),
                    "verified": bool(verified[j]),
                }
            )
        out.sort(key=lambda d: (d["ts"], d["user_idx"], d["item_idx"]))
        return out

    def _review_text(self, i: int, rating: int, rng: np.random.Generator) -> tuple[str, str]:
        cat = self.cat
        cdef = cat.categories[cat.cat[i]]
        sdef = cat.styles[cat.style[i]]
        noun = cdef.nouns[cat.noun[i]]
        colour = sdef.palette[cat.colour[i]][0]
        material = cdef.materials[cat.material[i]]
        summ = _SUMMARIES[rating]
        open_ = _OPENERS[rating]
        detail = _DETAILS[rating]
        close = _CLOSERS[rating]
        summary = summ[rng.integers(len(summ))]
        text = " ".join(
            [
                open_[rng.integers(len(open_))].format(noun=noun),
                detail[rng.integers(len(detail))].format(
                    colour=colour, material=material, style=sdef.words[0], noun=noun
                ),
                close[rng.integers(len(close))],
            ]
        )
        return summary, text

    # -- images ----------------------------------------------------------------------------------
    def images(self, out: Any) -> None:
        cat, rng = self.cat, self.images_rng
        out.mkdir(parents=True, exist_ok=True)
        for i, item_id in enumerate(cat.item_ids):
            img = _render(cat.styles[cat.style[i]], int(cat.colour[i]), self.cfg.image_size, rng)
            img.save(out / f"{item_id}.png", format="PNG", optimize=False, compress_level=6)
