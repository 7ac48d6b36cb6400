"""A deterministic synthetic online shop with planted ground truth.

This is the default data behind ``make demo`` and the fixture for every later stage. Everything a
model is supposed to discover is planted on purpose and written to ``ground_truth.json``:

* **segments**: each user belongs to one latent segment (bargain hunters, brand loyalists, ...)
  with its own taste over styles and categories, price band, brand loyalty, activity, conversion
  and time-of-day rhythm. Behaviour and content features should recover them by clustering.
* **styles**: each item has one of a few discrete styles. The style drives who likes the item
  *and* how it looks (palette, shape, pattern of its PNG) and reads (style words in its title and
  description), so content-based models can recommend cold items.
* **funnel**: view -> click -> add_to_cart -> purchase, each step more likely the better the
  user-item affinity (style + category + price fit + brand) and the user's conversion propensity.
* **sequences**: within a session the next item tends to share the previous item's category,
  style or brand.
* **reviews**: ratings follow satisfaction (affinity + item quality + noise); review text uses
  template phrases whose sentiment follows the rating.
* **noise**: bot users, exact duplicate event rows, malformed rows and outlier catalogue prices,
  each counted and located in the ground truth so ingest/cleaning can be checked exactly.

Files are written in the project's generic formats (no column mapping needed). The same config
gives byte-identical files: all randomness flows from ``ShopConfig.seed`` through independent
child streams, so e.g. changing ``image_size`` does not change the events.

:func:`write_events_csv` is a separate, much faster bulk generator of plausible events (no
planted structure) for ingest benchmarks at tens of millions of rows.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from PIL import Image, ImageDraw

from shopsight.errors import InputError

__all__ = [
    "CATEGORIES",
    "EVENTS_HEADER",
    "ITEMS_HEADER",
    "REVIEW_KEYS",
    "SEGMENTS",
    "STYLES",
    "USERS_HEADER",
    "BulkEventsSummary",
    "CategoryDef",
    "SegmentDef",
    "ShopConfig",
    "ShopFiles",
    "StyleDef",
    "generate_shop",
    "load_ground_truth",
    "write_events_csv",
]

EVENTS_HEADER: Final[tuple[str, ...]] = (
    "user_id",
    "item_id",
    "event_type",
    "timestamp",
    "session_id",
    "query",
    "value",
)
ITEMS_HEADER: Final[tuple[str, ...]] = (
    "item_id",
    "title",
    "description",
    "brand",
    "category",
    "price",
    "currency",
    "image",
    "attributes",
)
USERS_HEADER: Final[tuple[str, ...]] = ("user_id", "age_band", "gender", "region", "signup_date")
REVIEW_KEYS: Final[tuple[str, ...]] = (
    "user_id",
    "item_id",
    "rating",
    "summary",
    "text",
    "timestamp",
    "helpful_votes",
    "verified",
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
RGB = tuple[int, int, int]

# --------------------------------------------------------------------------------------------
# The planted world: styles, categories, segments
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StyleDef:
    """A visual/verbal style: drives palette, shape and pattern of images and words of text."""

    name: str
    background: RGB
    palette: tuple[tuple[str, RGB], ...]  # (colour name, rgb) an item's main colour comes from
    shape: str
    pattern: str
    words: tuple[str, ...]  # adjectives/phrases used in titles, descriptions and searches


@dataclass(frozen=True)
class CategoryDef:
    path: str  # "Top > Leaf"
    nouns: tuple[str, ...]
    materials: tuple[str, ...]
    sizes: tuple[str, ...]
    median_price: float
    price_sigma: float  # spread of log price within the category
    uses: tuple[str, ...]  # "made for ..." phrases


@dataclass(frozen=True)
class SegmentDef:
    """An archetype of shopper; individual users vary around it."""

    name: str
    description: str
    share: float  # relative size of the segment
    styles: tuple[str, ...]  # favourite styles (names; replaced by unused ones if not in play)
    focus: float  # weight of the favourites vs uniform taste (0 = no preference)
    price_z: float  # preferred price position within a category, in std devs of log price
    price_tolerance: float
    brand_loyalty: float  # 0..1, pull towards the user's favourite brands
    sessions_per_week: float
    views_per_session: float
    conversion: float  # logit shift on click / cart / purchase probabilities
    search_rate: float  # share of sessions that start with a search
    favorite_rate: float  # per click
    share_rate: float  # per click
    review_rate: float  # per purchase
    peak_hours: tuple[float, ...]  # local rhythm: sessions cluster around these hours (UTC)
    weekend_factor: float  # relative rate on Saturday/Sunday vs a weekday
    age_weights: tuple[float, ...]  # over AGE_BANDS
    query_prefixes: tuple[str, ...] = ()  # words this segment adds to searches


STYLES: Final[tuple[StyleDef, ...]] = (
    StyleDef(
        "minimalist",
        (244, 244, 240),
        (("slate", (112, 128, 144)), ("black", (30, 30, 30)), ("sand", (205, 190, 160))),
        "square",
        "plain",
        ("minimalist", "clean-lined", "understated", "pared-back", "essential"),
    ),
    StyleDef(
        "vintage",
        (238, 222, 186),
        (("mustard", (205, 160, 40)), ("burgundy", (128, 20, 40)), ("olive", (110, 110, 40))),
        "circle",
        "dots",
        ("vintage", "retro", "heritage", "nostalgic", "old-school"),
    ),
    StyleDef(
        "sporty",
        (214, 230, 255),
        (
            ("electric blue", (0, 90, 255)),
            ("neon green", (60, 220, 60)),
            ("signal orange", (255, 100, 0)),
        ),
        "triangle",
        "stripes",
        ("sporty", "athletic", "performance", "breathable", "active"),
    ),
    StyleDef(
        "bohemian",
        (250, 218, 190),
        (("terracotta", (200, 90, 60)), ("turquoise", (40, 180, 170)), ("saffron", (240, 170, 30))),
        "hexagon",
        "zigzag",
        ("bohemian", "boho", "artisan", "earthy", "free-spirited"),
    ),
    StyleDef(
        "glam",
        (45, 20, 55),
        (("gold", (212, 175, 55)), ("fuchsia", (220, 20, 140)), ("champagne", (247, 231, 206))),
        "star",
        "diamonds",
        ("glam", "glamorous", "dazzling", "luxe", "sparkling"),
    ),
    StyleDef(
        "streetwear",
        (58, 58, 64),
        (("acid yellow", (220, 240, 0)), ("red", (225, 30, 30)), ("white", (250, 250, 250))),
        "diamond",
        "checks",
        ("streetwear", "urban", "bold", "oversized", "edgy"),
    ),
    StyleDef(
        "classic",
        (205, 212, 236),
        (("navy", (20, 30, 90)), ("camel", (193, 154, 107)), ("bottle green", (20, 80, 45))),
        "ellipse",
        "pinstripes",
        ("classic", "tailored", "elegant", "refined", "timeless"),
    ),
    StyleDef(
        "outdoor",
        (208, 228, 196),
        (("khaki", (140, 130, 90)), ("forest", (34, 100, 34)), ("brown", (110, 70, 40))),
        "mountain",
        "grid",
        ("outdoor", "rugged", "weatherproof", "trail-ready", "durable"),
    ),
)

_CLOTHING_SIZES = ("XS", "S", "M", "L", "XL")
CATEGORIES: Final[tuple[CategoryDef, ...]] = (
    CategoryDef(
        "Clothing > Shoes",
        ("sneakers", "boots", "loafers", "sandals"),
        ("leather", "suede", "canvas", "mesh"),
        ("EU 37", "EU 39", "EU 41", "EU 43", "EU 45"),
        75.0,
        0.35,
        ("everyday wear", "long walks", "weekends out"),
    ),
    CategoryDef(
        "Clothing > Jackets",
        ("jacket", "parka", "blazer", "bomber"),
        ("wool", "denim", "nylon", "cotton"),
        _CLOTHING_SIZES,
        110.0,
        0.4,
        ("cold mornings", "city commutes", "layering"),
    ),
    CategoryDef(
        "Clothing > Tops",
        ("t-shirt", "blouse", "sweater", "hoodie"),
        ("cotton", "linen", "merino", "jersey"),
        _CLOTHING_SIZES,
        35.0,
        0.35,
        ("everyday wear", "lazy Sundays", "the office"),
    ),
    CategoryDef(
        "Accessories > Bags",
        ("tote", "backpack", "crossbody bag", "clutch"),
        ("leather", "canvas", "nylon", "velvet"),
        ("small", "medium", "large"),
        65.0,
        0.4,
        ("daily commutes", "weekend trips", "evenings out"),
    ),
    CategoryDef(
        "Accessories > Jewelry",
        ("necklace", "bracelet", "earrings", "ring"),
        ("sterling silver", "gold-plated brass", "enamel", "beaded glass"),
        ("one size",),
        45.0,
        0.5,
        ("special occasions", "everyday stacking", "gifting"),
    ),
    CategoryDef(
        "Home > Lighting",
        ("table lamp", "floor lamp", "pendant light", "lantern"),
        ("brass", "ceramic", "glass", "rattan"),
        ("small", "medium", "large"),
        80.0,
        0.4,
        ("reading nooks", "living rooms", "bedside tables"),
    ),
    CategoryDef(
        "Home > Textiles",
        ("cushion", "throw", "rug", "curtain"),
        ("linen", "wool", "cotton", "jute"),
        ("small", "medium", "large"),
        40.0,
        0.4,
        ("cosy evenings", "living rooms", "guest rooms"),
    ),
    CategoryDef(
        "Electronics > Audio",
        ("headphones", "earbuds", "speaker", "radio"),
        ("aluminium", "matte plastic", "fabric", "walnut wood"),
        ("one size",),
        95.0,
        0.5,
        ("focused work", "workouts", "long flights"),
    ),
    CategoryDef(
        "Beauty > Fragrance",
        ("eau de parfum", "body mist", "scented candle", "perfume oil"),
        ("citrus", "amber", "floral", "woody"),
        ("30 ml", "50 ml", "100 ml"),
        55.0,
        0.45,
        ("date nights", "daily wear", "gifting"),
    ),
    CategoryDef(
        "Sports > Fitness",
        ("yoga mat", "water bottle", "resistance band", "gym bag"),
        ("natural rubber", "stainless steel", "neoprene", "cork"),
        ("one size",),
        30.0,
        0.4,
        ("home workouts", "the gym", "morning routines"),
    ),
    CategoryDef(
        "Kitchen > Tableware",
        ("mug", "plate set", "teapot", "serving bowl"),
        ("stoneware", "porcelain", "glass", "bamboo"),
        ("small", "medium", "large"),
        28.0,
        0.4,
        ("slow breakfasts", "dinner parties", "everyday meals"),
    ),
    CategoryDef(
        "Stationery > Notebooks",
        ("notebook", "planner", "journal", "sketchbook"),
        ("dotted paper", "vegan leather", "recycled card", "linen cloth"),
        ("A6", "A5", "A4"),
        15.0,
        0.35,
        ("daily planning", "sketching", "note taking"),
    ),
)

AGE_BANDS: Final[tuple[str, ...]] = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
GENDERS: Final[tuple[str, ...]] = ("female", "male", "unspecified")
REGIONS: Final[tuple[str, ...]] = ("DE", "FR", "IT", "ES", "NL", "PL", "SE", "IE")

SEGMENTS: Final[tuple[SegmentDef, ...]] = (
    SegmentDef(
        name="bargain_hunters",
        description="Price-driven, search a lot, compare many items, buy cheap items.",
        share=0.25,
        styles=("sporty", "bohemian"),
        focus=0.7,
        price_z=-1.3,
        price_tolerance=0.6,
        brand_loyalty=0.05,
        sessions_per_week=2.5,
        views_per_session=7.0,
        conversion=0.0,
        search_rate=0.6,
        favorite_rate=0.05,
        share_rate=0.02,
        review_rate=0.3,
        peak_hours=(12.5, 20.0),
        weekend_factor=1.3,
        age_weights=(0.2, 0.3, 0.25, 0.15, 0.07, 0.03),
        query_prefixes=("cheap", "sale", "discount"),
    ),
    SegmentDef(
        name="brand_loyalists",
        description="Return to one or two favourite brands, few but decisive visits.",
        share=0.2,
        styles=("classic", "outdoor"),
        focus=0.7,
        price_z=0.2,
        price_tolerance=0.9,
        brand_loyalty=0.9,
        sessions_per_week=1.2,
        views_per_session=3.5,
        conversion=0.5,
        search_rate=0.35,
        favorite_rate=0.12,
        share_rate=0.01,
        review_rate=0.45,
        peak_hours=(8.5, 18.5),
        weekend_factor=0.8,
        age_weights=(0.05, 0.2, 0.3, 0.25, 0.15, 0.05),
    ),
    SegmentDef(
        name="trend_followers",
        description="Young, very active, late evenings, love bold styles, share and favourite.",
        share=0.2,
        styles=("streetwear", "glam"),
        focus=0.8,
        price_z=0.3,
        price_tolerance=0.9,
        brand_loyalty=0.1,
        sessions_per_week=3.0,
        views_per_session=6.0,
        conversion=-0.1,
        search_rate=0.25,
        favorite_rate=0.25,
        share_rate=0.2,
        review_rate=0.25,
        peak_hours=(21.5, 23.5),
        weekend_factor=1.2,
        age_weights=(0.45, 0.35, 0.12, 0.05, 0.02, 0.01),
        query_prefixes=("new", "trending"),
    ),
    SegmentDef(
        name="premium_buyers",
        description="Rare, focused visits for expensive items, high conversion.",
        share=0.15,
        styles=("minimalist", "vintage"),
        focus=0.7,
        price_z=1.5,
        price_tolerance=0.6,
        brand_loyalty=0.3,
        sessions_per_week=0.8,
        views_per_session=3.0,
        conversion=0.9,
        search_rate=0.4,
        favorite_rate=0.08,
        share_rate=0.02,
        review_rate=0.4,
        peak_hours=(19.5, 21.0),
        weekend_factor=1.0,
        age_weights=(0.02, 0.15, 0.3, 0.28, 0.18, 0.07),
        query_prefixes=("luxury", "premium"),
    ),
    SegmentDef(
        name="casual_browsers",
        description="Broad, unfocused browsing in the afternoon and on weekends, rarely buy.",
        share=0.2,
        styles=("outdoor", "vintage"),
        focus=0.25,
        price_z=-0.2,
        price_tolerance=1.2,
        brand_loyalty=0.0,
        sessions_per_week=1.5,
        views_per_session=8.0,
        conversion=-1.2,
        search_rate=0.15,
        favorite_rate=0.04,
        share_rate=0.03,
        review_rate=0.15,
        peak_hours=(14.5, 16.5),
        weekend_factor=2.0,
        age_weights=(0.15, 0.2, 0.2, 0.2, 0.15, 0.1),
    ),
)

_BRAND_HEADS = (
    "Nor", "Vel", "Lum", "Ark", "Cor", "Mar", "Sol", "Tav", "Bri", "Ost", "Kel", "Fen",
    "Ria", "Dov", "Zan", "Ely",
)  # fmt: skip
_BRAND_TAILS = (
    "vik", "ora", "era", "ton", "elle", "ano", "ix", "wood", "stad", "ina", "ara", "en",
)  # fmt: skip
_BRAND_TIERS: Final[tuple[tuple[str, float], ...]] = (
    ("budget", math.log(0.6)),
    ("mid", 0.0),
    ("premium", math.log(1.8)),
)

# Organic event type codes; order matters only for the tie-break inside one second.
_ET = ("search", "view", "click", "favorite", "share", "add_to_cart", "remove_from_cart",
       "purchase", "rate")  # fmt: skip
_SEARCH, _VIEW, _CLICK, _FAV, _SHARE, _CART, _REMOVE, _PURCHASE, _RATE = range(len(_ET))

MALFORMED_KINDS: Final[tuple[str, ...]] = (
    "bad_timestamp",
    "unknown_event_type",
    "negative_value",
    "missing_user_id",
    "missing_item_id",
)

# --------------------------------------------------------------------------------------------
# Configuration and result
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShopConfig:
    """Size, time span, seed and noise of a synthetic shop.

    ``n_users`` includes the ``bot_fraction`` of bot accounts. Noise fractions are relative to
    the number of users (bots), valid event rows (duplicates, malformed rows) and items
    (outlier prices). ``start_date`` is the first day of history (UTC); keep the whole span in
    the past, since ingest quarantines events from the future.
    """

    n_users: int = 2000
    n_items: int = 600
    n_categories: int = 8
    brands_per_category: int = 5
    n_styles: int = 8
    n_segments: int = 5
    days: int = 90
    start_date: str = "2025-03-01"
    seed: int = 0
    image_size: int = 64
    images: bool = True
    currency: str = "EUR"
    bot_fraction: float = 0.01
    duplicate_fraction: float = 0.002
    malformed_fraction: float = 0.0005
    outlier_price_fraction: float = 0.01

    def __post_init__(self) -> None:
        def bad(name: str, expected: str) -> ValueError:
            return ValueError(f"ShopConfig.{name}={getattr(self, name)!r}: expected {expected}")

        if self.n_users < 10:
            raise bad("n_users", "at least 10")
        if not 1 <= self.n_categories <= len(CATEGORIES):
            raise bad("n_categories", f"1..{len(CATEGORIES)}")
        if not 1 <= self.brands_per_category <= len(_BRAND_TAILS):
            raise bad("brands_per_category", f"1..{len(_BRAND_TAILS)}")
        if not 2 <= self.n_styles <= len(STYLES):
            raise bad("n_styles", f"2..{len(STYLES)}")
        if not 1 <= self.n_segments <= len(SEGMENTS):
            raise bad("n_segments", f"1..{len(SEGMENTS)}")
        if self.n_items < self.n_categories * 2:
            raise bad("n_items", f"at least 2 per category ({self.n_categories * 2})")
        if self.days < 1:
            raise bad("days", "at least 1")
        if not 16 <= self.image_size <= 1024:
            raise bad("image_size", "16..1024 pixels")
        try:
            date.fromisoformat(self.start_date)
        except (TypeError, ValueError):
            raise bad("start_date", "an ISO date like 2025-03-01") from None
        for name in (
            "bot_fraction",
            "duplicate_fraction",
            "malformed_fraction",
            "outlier_price_fraction",
        ):
            if not 0.0 <= getattr(self, name) < 0.5:
                raise bad(name, "a fraction in [0, 0.5)")
        if self.n_users - round(self.bot_fraction * self.n_users) < self.n_segments:
            raise bad("n_users", "enough non-bot users for every segment")

    @classmethod
    def small(cls, **overrides: Any) -> ShopConfig:
        """A few-second shop for tests of later stages (same structure, fewer rows)."""
        base: dict[str, Any] = {"n_users": 300, "n_items": 160, "days": 45, "image_size": 32}
        base.update(overrides)
        return cls(**base)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShopConfig:
        """Build from a plain mapping (YAML/JSON); unknown keys are an error that names them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"ShopConfig: unknown keys {unknown} (known: {sorted(known)})")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_(self, **changes: Any) -> ShopConfig:
        return replace(self, **changes)


@dataclass(frozen=True)
class ShopFiles:
    """Where :func:`generate_shop` wrote each file."""

    root: Path
    events: Path
    items: Path
    reviews: Path
    users: Path
    images: Path | None
    ground_truth: Path

    def load_ground_truth(self) -> dict[str, Any]:
        return load_ground_truth(self.ground_truth)

    def data_files(self) -> list[Path]:
        """The files an ingest reads, catalogue first so events can refer to known items."""
        return [self.items, self.users, self.events, self.reviews]


def load_ground_truth(path: str | Path) -> dict[str, Any]:
    """Read a ``ground_truth.json`` written by :func:`generate_shop`."""
    with Path(path).open(encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _ids(prefix: str, n: int) -> list[str]:
    width = max(4, len(str(n - 1)))
    return [f"{prefix}{i:0{width}d}" for i in range(n)]


def _a(word: str) -> str:
    """The indefinite article for ``word``."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def _sigmoid(x: FloatArray) -> FloatArray:
    out: FloatArray = 1.0 / (1.0 + np.exp(-x))
    return out


def _epoch(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _iso_utc_array(seconds: IntArray) -> pa.Array:
    """ISO-8601 UTC strings for epoch seconds, fast: a date lookup joined to a time lookup.

    (Arrow's strftime runs at ~0.5 M rows/s here; two table lookups and a join are ~20x faster.)
    """
    days = seconds // 86400
    tod = seconds - days * 86400
    d0 = int(days.min()) if len(days) else 0
    n_days = int(days.max()) - d0 + 1 if len(days) else 1
    day_strs = np.datetime_as_string(
        (np.arange(n_days, dtype=np.int64) + d0).astype("datetime64[D]"), unit="D"
    )
    day_lut = pa.array([f"{s}T" for s in day_strs])
    tod_lut = pa.array([f"{h:02d}:{m:02d}:{s:02d}Z" for h in range(24) for m in range(60) for s in range(60)])  # fmt: skip
    return pc.binary_join_element_wise(
        day_lut.take(pa.array(days - d0)), tod_lut.take(pa.array(tod)), ""
    )


def _write_events_table(writer_sink: Any, table: pa.Table) -> None:
    # quoting "none": no event field contains a comma, quote or newline (checked upstream), and
    # an unquoted file is what most exports look like. Nulls become empty fields.
    pacsv.write_csv(
        table,
        writer_sink,
        pacsv.WriteOptions(include_header=False, quoting_style="none", batch_size=65536),
    )


def _events_table(
    user: pa.Array,
    item: pa.Array,
    etype: pa.Array,
    ts: pa.Array,
    session: pa.Array,
    query: pa.Array,
    value: pa.Array,
) -> pa.Table:
    return pa.table(
        [user, item, etype, ts, session, query, value],
        names=list(EVENTS_HEADER),
    )


def _take(lut: Sequence[str] | pa.Array, idx: IntArray) -> pa.Array:
    """``lut[idx]`` as a string array, null where ``idx < 0``."""
    arr = lut if isinstance(lut, pa.Array) else pa.array(list(lut), pa.string())
    return arr.take(pa.array(idx, mask=idx < 0))


# --------------------------------------------------------------------------------------------
# The generator
# --------------------------------------------------------------------------------------------


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
    fav_brands: list[list[int]]
    activity: FloatArray  # sessions per week
    conversion: FloatArray
    segment_styles: list[list[int]]
    segment_categories: list[list[int]]


class _ShopGenerator:
    def __init__(self, config: ShopConfig) -> None:
        self.cfg = config
        streams = np.random.SeedSequence(config.seed).spawn(8)
        names = ("catalog", "users", "sessions", "funnel", "reviews", "bots", "noise", "images")
        self.rng = {n: np.random.default_rng(s) for n, s in zip(names, streams, strict=True)}
        self.start = _epoch(date.fromisoformat(config.start_date))
        self.end = self.start + config.days * 86400
        self.segments = SEGMENTS[: config.n_segments]

    # -- catalogue ---------------------------------------------------------------------------
    def catalog(self) -> _Catalog:
        cfg, rng = self.cfg, self.rng["catalog"]
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
        size = np.array([rng.integers(0, len(cats[c].sizes)) for c in cat], dtype=np.int64)
        median = np.array([cats[c].median_price for c in cat])
        sigma = np.array([cats[c].price_sigma for c in cat])
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

    def item_texts(self, cat: _Catalog) -> tuple[list[str], list[str], list[str]]:
        rng = self.rng["catalog"]
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

    # -- users ---------------------------------------------------------------------------------
    def users(self, cat: _Catalog) -> _Users:
        cfg, rng = self.cfg, self.rng["users"]
        n = cfg.n_users
        n_bots = round(cfg.bot_fraction * n)
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

        # Favourite styles per segment by name; names not in play are replaced by unused styles.
        style_names = [s.name for s in cat.styles]
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
            sp = taste(seg_styles[k], cfg.n_styles, sdef.focus)
            cp = taste(seg_cats[k], cfg.n_categories, sdef.focus)
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
        # Style preferences floor, so log-affinities stay finite.
        style_pref = np.maximum(style_pref, 1e-4)
        cat_pref = np.maximum(cat_pref, 1e-4)

        # Two favourite brands per user: categories drawn from their taste, brand within it
        # preferring the user's top style.
        fav_brands: list[list[int]] = []
        bpc = cfg.brands_per_category
        for u in range(n):
            chosen: list[int] = []
            for _ in range(8):
                c = int(rng.choice(cfg.n_categories, p=cat_pref[u] / cat_pref[u].sum()))
                cands = np.arange(c * bpc, (c + 1) * bpc)
                w = 1.0 + 3.0 * style_pref[u][cat.brand_style[cands]]
                b = int(rng.choice(cands, p=w / w.sum()))
                if b not in chosen:
                    chosen.append(b)
                if len(chosen) == 2:
                    break
            fav_brands.append(sorted(chosen))

        # 75% signed up before the window (up to two years), the rest during its first 80%.
        before = rng.random(n) < 0.75
        signup_days = np.where(
            before,
            -rng.integers(1, 730, n),
            rng.integers(0, max(1, int(cfg.days * 0.8)), n),
        )
        signup = self.start + signup_days * 86400 + rng.integers(0, 86400, n)
        return _Users(
            user_ids=_ids("u", n),
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
            segment_styles=seg_styles,
            segment_categories=seg_cats,
        )

    def affinity(self, cat: _Catalog, users: _Users) -> FloatArray:
        """Planted user x item affinity: the log-odds of interest before the funnel."""
        a = np.log(users.style_pref[:, cat.style]) + np.log(users.cat_pref[:, cat.cat])
        diff = cat.price_z[None, :] - users.price_target[:, None]
        a -= diff**2 / (2.0 * users.price_tolerance[:, None] ** 2)
        fav = np.zeros_like(a, dtype=bool)
        for u, bs in enumerate(users.fav_brands):
            fav[u] = np.isin(cat.brand, bs)
        a += 3.0 * users.loyalty[:, None] * fav
        a += 0.3 * cat.quality[None, :]
        return a

    # -- behaviour -------------------------------------------------------------------------------
    def sessions(self, users: _Users) -> tuple[IntArray, IntArray]:
        """(user, start second) per human session, before overlap fixing."""
        cfg, rng = self.cfg, self.rng["sessions"]
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

    def behaviour(self, cat: _Catalog, users: _Users, aff: FloatArray) -> dict[str, Any]:
        cfg = self.cfg
        rng, frng = self.rng["sessions"], self.rng["funnel"]
        n_items = cfg.n_items
        # Sampling distribution per user; flattened CDF with offsets: one searchsorted for all.
        p = np.exp(aff - aff.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        cdf = np.cumsum(p, axis=1)
        cdf[:, -1] = 1.0
        flat = (cdf + np.arange(cfg.n_users)[:, None]).ravel()
        mu = (p * aff).sum(axis=1)
        sd = np.sqrt((p * (aff - mu[:, None]) ** 2).sum(axis=1))
        aff_z = (aff - mu[:, None]) / np.maximum(sd, 1e-9)[:, None]

        def draw(u: IntArray) -> IntArray:
            r = rng.random(len(u)) * (1.0 - 1e-12)
            j = np.searchsorted(flat, u + r, side="right") - u * n_items
            out: IntArray = np.clip(j, 0, n_items - 1).astype(np.int64)
            return out

        s_user, s_start = self.sessions(users)
        n_s = len(s_user)
        seg = users.segment[s_user]
        vps = np.array([s.views_per_session for s in self.segments])[seg]
        n_views = np.minimum(1 + rng.poisson(vps - 1.0), 30)
        max_len = int(n_views.max())
        views = np.full((n_s, max_len), -1, dtype=np.int64)
        views[:, 0] = draw(s_user)
        k_cand = 6
        for t in range(1, max_len):
            act = np.flatnonzero(n_views > t)
            u = s_user[act]
            cands = draw(np.repeat(u, k_cand)).reshape(-1, k_cand)
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
        z = aff_z[vu, vi]
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
        queries = self._queries(cat, views[srch_keep, 0], seg[srch_keep], rng)
        q_of_session = np.full(n_s, -1, dtype=np.int64)
        q_of_session[srch_keep] = np.arange(len(srch_keep))
        ev["query"] = np.where(ev["type"] == _SEARCH, q_of_session[es][keep_e], -1)
        ev["value"] = np.where(ev["type"] == _PURCHASE, cat.true_price[ev["item"]], np.nan)
        return {
            "events": ev,
            "queries": queries,
            "aff_z": aff_z,
            "n_sessions": len(kept),
            "session_user": s_user[kept],
        }

    def _queries(
        self, cat: _Catalog, items: IntArray, seg: IntArray, rng: np.random.Generator
    ) -> list[str]:
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

    def bots(self, users: _Users) -> dict[str, IntArray]:
        """Scrapers: bursts of uniform random views/clicks a second or two apart, no purchases."""
        cfg, rng = self.cfg, self.rng["bots"]
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
        self, cat: _Catalog, users: _Users, ev: dict[str, IntArray], aff_z: FloatArray
    ) -> list[dict[str, Any]]:
        rng = self.rng["reviews"]
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
        sat = 0.9 * aff_z[u, i] + 0.6 * cat.quality[i] + rng.normal(0, 0.6, len(u))
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
            summary, text = self._review_text(cat, int(i[j]), r, rng)
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

    def _review_text(
        self, cat: _Catalog, i: int, rating: int, rng: np.random.Generator
    ) -> tuple[str, str]:
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
    def images(self, cat: _Catalog, out: Path) -> None:
        rng = self.rng["images"]
        out.mkdir(parents=True, exist_ok=True)
        for i, item_id in enumerate(cat.item_ids):
            img = _render(cat.styles[cat.style[i]], int(cat.colour[i]), self.cfg.image_size, rng)
            img.save(out / f"{item_id}.png", format="PNG", optimize=False, compress_level=6)


# -- review phrase banks: several per sentiment level, so text sentiment follows rating ---------
_SUMMARIES: Final[dict[int, tuple[str, ...]]] = {
    1: ("Terrible, do not buy", "Very disappointed", "Waste of money", "Awful quality"),
    2: ("Not great", "Disappointing", "Below expectations", "Poor value"),
    3: ("It's okay", "Average", "Decent but not special", "Fine for the price"),
    4: ("Really good", "Happy with it", "Nice purchase", "Good quality"),
    5: ("Absolutely love it", "Perfect", "Excellent, highly recommend", "Best purchase this year"),
}
_OPENERS: Final[dict[int, tuple[str, ...]]] = {
    1: (
        "Terrible {noun}, it broke within a week.",
        "I am very disappointed with this {noun}.",
        "Awful, the worst {noun} I have bought.",
        "Complete waste of money, this {noun} is useless.",
    ),
    2: (
        "The {noun} is disappointing.",
        "Not great, the {noun} feels cheap.",
        "I expected more from this {noun}, poor finish.",
        "Mediocre {noun} with a few flaws.",
    ),
    3: (
        "The {noun} is okay.",
        "An average {noun}, nothing special.",
        "Decent {noun} for everyday use.",
        "It is a fine {noun}, does the job.",
    ),
    4: (
        "Good {noun}, I am happy with it.",
        "Really nice {noun}, well made.",
        "I like this {noun} a lot.",
        "Solid {noun}, good value.",
    ),
    5: (
        "Absolutely love this {noun}!",
        "Excellent {noun}, perfect in every way.",
        "Fantastic {noun}, exceeded my expectations.",
        "Amazing {noun}, best I have owned.",
    ),
}
_DETAILS: Final[dict[int, tuple[str, ...]]] = {
    1: (
        "The {colour} colour looks nothing like the photo and the {material} is flimsy.",
        "The {material} started falling apart immediately.",
    ),
    2: (
        "The {colour} is duller than shown and the {material} feels thin.",
        "The {style} look is there but the {material} is poor.",
    ),
    3: (
        "The {colour} {material} is as described.",
        "The {style} design is fine, though the {material} could be better.",
    ),
    4: (
        "The {colour} {material} feels good and the {style} look works well.",
        "Nice {style} design, the {material} is good quality.",
    ),
    5: (
        "The {colour} {material} is gorgeous and the {style} look is perfect.",
        "Beautiful {style} design, the {material} feels excellent.",
    ),
}
_CLOSERS: Final[dict[int, tuple[str, ...]]] = {
    1: ("Returning it.", "Avoid.", "Never again."),
    2: ("Would not buy again.", "Probably returning it.", "Not worth the price."),
    3: ("It's fine for the price.", "Might buy again.", "No strong feelings."),
    4: ("Would recommend.", "Happy with my purchase.", "Would buy again."),
    5: ("Highly recommend!", "Love it, buying another.", "Perfect gift too!"),
}


# --------------------------------------------------------------------------------------------
# Image rendering
# --------------------------------------------------------------------------------------------


def _jitter(c: RGB, rng: np.random.Generator, amount: int = 12) -> RGB:
    j = rng.integers(-amount, amount + 1, 3)
    return (
        int(np.clip(c[0] + j[0], 0, 255)),
        int(np.clip(c[1] + j[1], 0, 255)),
        int(np.clip(c[2] + j[2], 0, 255)),
    )


def _polygon(shape: str, cx: float, cy: float, r: float, rot: float) -> list[tuple[float, float]]:
    def ring(n: int, radius: Sequence[float], phase: float) -> list[tuple[float, float]]:
        pts = []
        for k in range(n):
            a = phase + rot + 2 * math.pi * k / n
            rr = radius[k % len(radius)]
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        return pts

    if shape == "square":
        return ring(4, [r * 1.3], math.pi / 4)
    if shape == "triangle":
        return ring(3, [r * 1.2], -math.pi / 2)
    if shape == "hexagon":
        return ring(6, [r * 1.1], 0.0)
    if shape == "star":
        return ring(10, [r * 1.25, r * 0.5], -math.pi / 2)
    if shape == "diamond":
        return ring(4, [r * 1.3, r * 0.8], -math.pi / 2)
    if shape == "mountain":
        return [
            (cx - 1.3 * r, cy + 0.8 * r),
            (cx - 0.4 * r, cy - 0.9 * r),
            (cx + 0.05 * r, cy - 0.1 * r),
            (cx + 0.5 * r, cy - 0.6 * r),
            (cx + 1.3 * r, cy + 0.8 * r),
        ]
    raise ValueError(f"unknown shape {shape!r}")


def _draw_pattern(
    draw: ImageDraw.ImageDraw, pattern: str, size: int, colour: RGB, rng: np.random.Generator
) -> None:
    step = max(4, size // 8)
    ph = int(rng.integers(0, step))
    lw = max(1, size // 40)
    if pattern == "plain":
        return
    if pattern == "dots":
        rad = max(1, step // 5)
        for y in range(ph, size, step):
            for x in range(ph, size, step):
                draw.ellipse((x - rad, y - rad, x + rad, y + rad), fill=colour)
    elif pattern == "stripes":
        for k in range(-size, size, step):
            draw.line((k + ph, size, k + ph + size, 0), fill=colour, width=lw * 2)
    elif pattern == "zigzag":
        for y in range(ph, size + step, step):
            pts = [(x, y + (step // 3 if (x // (step // 2 or 1)) % 2 else 0)) for x in range(0, size + step, max(1, step // 2))]  # fmt: skip
            draw.line(pts, fill=colour, width=lw)
    elif pattern == "diamonds":
        rad = max(2, step // 4)
        for y in range(ph, size, step):
            for x in range(ph + (step // 2 if (y // step) % 2 else 0), size, step):
                draw.polygon([(x, y - rad), (x + rad, y), (x, y + rad), (x - rad, y)], fill=colour)
    elif pattern == "checks":
        cell = step
        for y in range(0, size, cell):
            for x in range(0, size, cell):
                if ((x + y) // cell) % 2 == 0:
                    draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=colour)
    elif pattern == "pinstripes":
        for x in range(ph, size, max(3, step // 2)):
            draw.line((x, 0, x, size), fill=colour, width=1)
    elif pattern == "grid":
        for k in range(ph, size, step):
            draw.line((k, 0, k, size), fill=colour, width=lw)
            draw.line((0, k, size, k), fill=colour, width=lw)
    else:
        raise ValueError(f"unknown pattern {pattern!r}")


def _render(style: StyleDef, colour: int, size: int, rng: np.random.Generator) -> Image.Image:
    """A product 'photo': style background + pattern, and an item-coloured style shape."""
    ss = size * 2  # draw at 2x and downsample: cheap anti-aliasing
    bg = _jitter(style.background, rng, 10)
    img = Image.new("RGB", (ss, ss), bg)
    draw = ImageDraw.Draw(img)
    others = [c for k, (_, c) in enumerate(style.palette) if k != colour]
    pat = others[int(rng.integers(len(others)))]
    # The pattern is blended towards the background so the shape stays the main subject.
    pat = tuple(int(0.55 * a + 0.45 * b) for a, b in zip(pat, bg, strict=True))  # type: ignore[assignment]
    _draw_pattern(draw, style.pattern, ss, pat, rng)
    main = _jitter(style.palette[colour][1], rng, 14)
    cx = ss / 2 + rng.uniform(-0.08, 0.08) * ss
    cy = ss / 2 + rng.uniform(-0.08, 0.08) * ss
    r = ss * rng.uniform(0.24, 0.32)
    rot = rng.uniform(-0.25, 0.25)
    outline = tuple(int(0.6 * c) for c in main)
    if style.shape in ("circle", "ellipse"):
        rx, ry = (r, r) if style.shape == "circle" else (r * 1.35, r * 0.75)
        draw.ellipse(
            (cx - rx, cy - ry, cx + rx, cy + ry), fill=main, outline=outline, width=max(1, ss // 40)
        )
    else:
        draw.polygon(_polygon(style.shape, cx, cy, r, rot), fill=main, outline=outline)
    return img.resize((size, size), Image.Resampling.BOX)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def generate_shop(out_dir: str | Path, config: ShopConfig | None = None) -> ShopFiles:
    """Generate a synthetic shop into ``out_dir`` (created if needed) and return its files.

    Writes ``events.csv``, ``items.csv``, ``reviews.jsonl``, ``users.csv``, ``images/*.png``
    (unless ``config.images`` is False) and ``ground_truth.json``. Same config, same bytes.
    """
    cfg = config or ShopConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = ShopFiles(
        root=out,
        events=out / "events.csv",
        items=out / "items.csv",
        reviews=out / "reviews.jsonl",
        users=out / "users.csv",
        images=out / "images" if cfg.images else None,
        ground_truth=out / "ground_truth.json",
    )
    gen = _ShopGenerator(cfg)
    cat = gen.catalog()
    titles, descs, attrs = gen.item_texts(cat)
    users = gen.users(cat)
    beh = gen.behaviour(cat, users, gen.affinity(cat, users))
    reviews = gen.reviews(cat, users, beh["events"], beh["aff_z"])
    bots = gen.bots(users)

    _write_items(files.items, cfg, cat, titles, descs, attrs)
    _write_users(files.users, users)
    _write_reviews(files.reviews, cat, users, reviews)
    log = _write_events(files.events, gen, cat, users, beh, reviews, bots)
    if files.images is not None:
        gen.images(cat, files.images)
    gt = _ground_truth(gen, cat, users, reviews, log)
    with files.ground_truth.open("w", encoding="utf-8", newline="\n") as fh:
        json.dump(gt, fh, ensure_ascii=False, indent=1)
        fh.write("\n")
    return files


def _write_items(
    path: Path,
    cfg: ShopConfig,
    cat: _Catalog,
    titles: list[str],
    descs: list[str],
    attrs: list[str],
) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(ITEMS_HEADER)
        for i, item_id in enumerate(cat.item_ids):
            w.writerow(
                [
                    item_id,
                    titles[i],
                    descs[i],
                    cat.brand_names[cat.brand[i]],
                    cat.categories[cat.cat[i]].path,
                    f"{cat.listed_price[i]:.2f}",
                    cfg.currency,
                    f"images/{item_id}.png",
                    attrs[i],
                ]
            )


def _write_users(path: Path, users: _Users) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(USERS_HEADER)
        for u, user_id in enumerate(users.user_ids):
            w.writerow(
                [
                    user_id,
                    AGE_BANDS[users.age[u]],
                    GENDERS[users.gender[u]],
                    REGIONS[users.region[u]],
                    _iso(int(users.signup[u]))[:10],
                ]
            )


def _write_reviews(path: Path, cat: _Catalog, users: _Users, reviews: list[dict[str, Any]]) -> None:
    """One JSON object per line, keys in :data:`REVIEW_KEYS` order."""
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        for r in reviews:
            obj = {
                "user_id": users.user_ids[r["user_idx"]],
                "item_id": cat.item_ids[r["item_idx"]],
                "rating": r["rating"],
                "summary": r["summary"],
                "text": r["text"],
                "timestamp": _iso(r["ts"]),
                "helpful_votes": r["helpful_votes"],
                "verified": r["verified"],
            }
            fh.write(json.dumps(obj, ensure_ascii=False) + "\n")


def _write_events(
    path: Path,
    gen: _ShopGenerator,
    cat: _Catalog,
    users: _Users,
    beh: dict[str, Any],
    reviews: list[dict[str, Any]],
    bots: dict[str, IntArray],
) -> dict[str, Any]:
    """Human, review (``rate``) and bot events in time order, plus planted duplicates and
    malformed rows; returns where the noise went and what was written."""
    cfg = gen.cfg
    ev = beh["events"]
    n_rate = len(reviews)
    n_bot = len(bots["user"])
    user = np.concatenate(
        [ev["user"], np.array([r["user_idx"] for r in reviews], dtype=np.int64), bots["user"]]
    )
    item = np.concatenate(
        [ev["item"], np.array([r["item_idx"] for r in reviews], dtype=np.int64), bots["item"]]
    )
    etype = np.concatenate([ev["type"], np.full(n_rate, _RATE, dtype=np.int64), bots["type"]])
    ts = np.concatenate(
        [ev["ts"], np.array([r["ts"] for r in reviews], dtype=np.int64), bots["ts"]]
    )
    n_human_sess = beh["n_sessions"]
    session = np.concatenate(
        [ev["session"], np.full(n_rate, -1, dtype=np.int64), n_human_sess + bots["burst"]]
    )
    order_key = np.concatenate(
        [ev["order"], np.zeros(n_rate, dtype=np.int64), np.zeros(n_bot, dtype=np.int64)]
    )
    query = np.concatenate([ev["query"], np.full(n_rate + n_bot, -1, dtype=np.int64)])
    value_num = np.concatenate(
        [
            ev["value"],
            np.array([r["rating"] for r in reviews], dtype=np.float64),
            np.full(n_bot, np.nan),
        ]
    )
    # Export order: by time; within a second by session and funnel order.
    srt = np.lexsort((order_key, session, user, ts))
    user, item, etype, ts = user[srt], item[srt], etype[srt], ts[srt]
    session, query, value_num = session[srt], query[srt], value_num[srt]
    n_valid = len(user)
    # Number sessions (human and bot alike) by first appearance in the file.
    has_sess = session >= 0
    uniq, first_at = np.unique(session[has_sess], return_index=True)
    renum = np.empty(len(uniq), dtype=np.int64)
    renum[np.argsort(first_at, kind="stable")] = np.arange(len(uniq))
    session[has_sess] = renum[np.searchsorted(uniq, session[has_sess])]
    sess_ids = _ids("s", max(1, len(uniq)))
    value_str = [
        "" if math.isnan(v) else (f"{v:.2f}" if t == _PURCHASE else f"{int(v)}")
        for v, t in zip(value_num.tolist(), etype.tolist(), strict=True)
    ]
    for q in beh["queries"]:
        if any(ch in q for ch in ',"\n\r'):
            raise AssertionError(f"query {q!r} would need CSV quoting")

    nrng = gen.rng["noise"]
    # Exact duplicates: copies of random valid rows placed at a random later position.
    n_dup = round(cfg.duplicate_fraction * n_valid)
    dup_src = (
        np.sort(nrng.choice(n_valid, size=n_dup, replace=False)) if n_dup else np.zeros(0, np.int64)
    )
    dup_pos = dup_src + nrng.random(n_dup) * (n_valid - dup_src)
    # Malformed rows: corrupted copies of valid rows (one defect each), at random positions.
    n_bad = round(cfg.malformed_fraction * n_valid)
    kinds = [MALFORMED_KINDS[k % len(MALFORMED_KINDS)] for k in range(n_bad)]
    purchases = np.flatnonzero(etype == _PURCHASE)
    item_rows = np.flatnonzero(item >= 0)
    bad_rows: list[list[str | None]] = []
    used_src: set[int] = set()
    for kind in kinds:
        pool = purchases if kind == "negative_value" and len(purchases) else item_rows
        while True:
            src = int(pool[nrng.integers(len(pool))])
            if src not in used_src:
                used_src.add(src)
                break
        row: list[str | None] = [
            users.user_ids[user[src]],
            cat.item_ids[item[src]] if item[src] >= 0 else None,
            _ET[etype[src]],
            _iso(int(ts[src])),
            sess_ids[session[src]] if session[src] >= 0 else None,
            beh["queries"][query[src]] if query[src] >= 0 else None,
            value_str[src] or None,
        ]
        if kind == "bad_timestamp":
            row[3] = ("2025-02-30T25:61:00Z", "not-a-timestamp", "13/45/2025 99:99")[
                int(nrng.integers(3))
            ]
        elif kind == "unknown_event_type":
            row[2] = "teleport"
        elif kind == "negative_value":
            row[2], row[6] = "purchase", f"-{cat.true_price[item[src]]:.2f}"
        elif kind == "missing_user_id":
            row[0] = None
        elif kind == "missing_item_id":
            row[1], row[2] = None, "view"
        bad_rows.append(row)
    bad_pos = nrng.random(n_bad) * n_valid

    # Final order: valid rows at integer positions, extras slotted in after their position.
    pos = np.concatenate([np.arange(n_valid, dtype=np.float64), dup_pos, bad_pos])
    tie = np.concatenate([np.zeros(n_valid), np.ones(n_dup), np.ones(n_bad)])
    src_index = np.concatenate([np.arange(n_valid), dup_src, n_valid + np.arange(n_bad)])
    file_order = np.lexsort((np.arange(len(pos)), tie, pos))
    final = src_index[file_order]

    ts_arr = _iso_utc_array(ts)
    good = _events_table(
        _take(users.user_ids, user),
        _take(cat.item_ids, item),
        _take(list(_ET), etype),
        ts_arr,
        _take(sess_ids, session),
        _take(beh["queries"], query),
        pa.array([v or None for v in value_str], pa.string()),
    )
    bad = pa.table(
        [pa.array([r[k] for r in bad_rows], pa.string()) for k in range(len(EVENTS_HEADER))],
        names=list(EVENTS_HEADER),
    )
    table = pa.concat_tables([good, bad]).take(pa.array(final))
    with path.open("wb") as fh:
        fh.write((",".join(EVENTS_HEADER) + "\n").encode())
        _write_events_table(fh, table)

    # Position in the file of each appended row (rows n_valid.. of the pre-order list).
    where = np.empty(len(final), dtype=np.int64)
    where[file_order] = np.arange(len(final))
    dup_lines = (where[n_valid : n_valid + n_dup] + 2).tolist()
    bad_lines = (where[n_valid + n_dup :] + 2).tolist()

    return {
        "rows": len(final),
        "valid": n_valid,
        "n_dup": n_dup,
        "dup_lines": sorted(dup_lines),
        "malformed": [
            {"line": ln, "kind": k} for ln, k in sorted(zip(bad_lines, kinds, strict=True))
        ],
        "by_type": {
            name: int(np.sum(etype == code))
            for code, name in enumerate(_ET)
            if np.any(etype == code)
        },
        "sessions": n_human_sess,
        "bot_events": n_bot,
        "bot_sessions": len(np.unique(bots["burst"])),
    }


def _ground_truth(
    gen: _ShopGenerator,
    cat: _Catalog,
    users: _Users,
    reviews: list[dict[str, Any]],
    log: dict[str, Any],
) -> dict[str, Any]:
    cfg = gen.cfg
    return {
        "version": 1,
        "config": cfg.to_dict(),
        "period": {"start": _iso(gen.start), "end": _iso(gen.end)},
        "segments": [
            {
                "index": k,
                "name": s.name,
                "description": s.description,
                "n_users": int(np.sum(users.segment == k)),
                "favourite_styles": [cat.styles[j].name for j in users.segment_styles[k]],
                "favourite_categories": [
                    cat.categories[j].path for j in users.segment_categories[k]
                ],
                "traits": {
                    "price_z": s.price_z,
                    "price_tolerance": s.price_tolerance,
                    "brand_loyalty": s.brand_loyalty,
                    "sessions_per_week": s.sessions_per_week,
                    "views_per_session": s.views_per_session,
                    "conversion": s.conversion,
                    "search_rate": s.search_rate,
                    "favorite_rate": s.favorite_rate,
                    "share_rate": s.share_rate,
                    "review_rate": s.review_rate,
                    "peak_hours": list(s.peak_hours),
                    "weekend_factor": s.weekend_factor,
                    "focus": s.focus,
                },
            }
            for k, s in enumerate(gen.segments)
        ],
        "styles": [
            {
                "index": k,
                "name": s.name,
                "palette": [c for c, _ in s.palette],
                "shape": s.shape,
                "pattern": s.pattern,
                "words": list(s.words),
            }
            for k, s in enumerate(cat.styles)
        ],
        "categories": [c.path for c in cat.categories],
        "brands": {
            name: {
                "category": cat.categories[cat.brand_category[b]].path,
                "tier": _BRAND_TIERS[cat.brand_tier[b]][0],
                "signature_style": cat.styles[cat.brand_style[b]].name,
            }
            for b, name in enumerate(cat.brand_names)
        },
        "users": {
            uid: {
                "segment": int(users.segment[u]),
                "segment_name": "bot" if users.bot[u] else gen.segments[users.segment[u]].name,
                "bot": bool(users.bot[u]),
                "favourite_brands": [cat.brand_names[b] for b in users.fav_brands[u]],
            }
            for u, uid in enumerate(users.user_ids)
        },
        "items": {
            iid: {
                "style": int(cat.style[i]),
                "style_name": cat.styles[cat.style[i]].name,
                "category": cat.categories[cat.cat[i]].path,
                "brand": cat.brand_names[cat.brand[i]],
                "true_price": float(cat.true_price[i]),
                "quality": round(float(cat.quality[i]), 4),
            }
            for i, iid in enumerate(cat.item_ids)
        },
        "bot_user_ids": [users.user_ids[u] for u in np.flatnonzero(users.bot)],
        "noise": {
            "n_bot_users": int(users.bot.sum()),
            "n_bot_events": log["bot_events"],
            "n_duplicate_rows": log["n_dup"],
            "duplicate_lines": log["dup_lines"],
            "n_malformed_rows": len(log["malformed"]),
            "malformed": log["malformed"],
            "n_outlier_prices": len(cat.outliers),
            "outlier_prices": {
                cat.item_ids[i]: {
                    "kind": kind,
                    "listed": float(cat.listed_price[i]),
                    "true": float(cat.true_price[i]),
                }
                for i, kind in sorted(cat.outliers.items())
            },
        },
        "counts": {
            "rows": log["rows"],
            "valid_events": log["valid"],
            "events_by_type": log["by_type"],
            "sessions": log["sessions"],
            "bot_sessions": log["bot_sessions"],
            "reviews": len(reviews),
            "users": cfg.n_users,
            "items": cfg.n_items,
        },
        "line_numbers": "1-based lines of events.csv; the header is line 1",
    }


# --------------------------------------------------------------------------------------------
# Bulk events for ingest benchmarks
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BulkEventsSummary:
    """What :func:`write_events_csv` wrote: ``rows`` data lines (header excluded)."""

    path: Path
    rows: int
    duplicates: int  # rows that exactly repeat an earlier row
    invalid: int  # rows that validation must reject
    invalid_by_kind: dict[str, int]

    @property
    def valid_unique(self) -> int:
        return self.rows - self.duplicates - self.invalid


_BULK_TYPES = ("view", "click", "add_to_cart", "remove_from_cart", "purchase", "favorite", "share", "rate", "search")  # fmt: skip
_BULK_P = np.array([0.6, 0.18, 0.06, 0.015, 0.025, 0.02, 0.005, 0.01, 0.085])
_BULK_INVALID = ("bad_timestamp", "unknown_event_type", "negative_value", "missing_user_id")


def write_events_csv(
    path: str | Path,
    n_events: int,
    seed: int = 0,
    n_users: int = 100_000,
    n_items: int = 20_000,
    *,
    start_date: str = "2025-01-01",
    days: int = 90,
    duplicate_fraction: float = 0.001,
    invalid_fraction: float = 0.001,
    chunk_size: int = 1_000_000,
) -> BulkEventsSummary:
    """Write ``n_events`` rows of plausible events in the generic ``events.csv`` format, fast.

    Vectorised and chunked (memory is bounded by ``chunk_size``): about 10 M rows in well under
    a minute on one core. Users and items follow Zipf-like popularity, rows come in sessions of a
    few seconds-apart events, and the file is in time order chunk by chunk. A
    ``duplicate_fraction`` of rows exactly repeat an earlier row of the same chunk and an
    ``invalid_fraction`` carry one defect each (bad timestamp, unknown type, negative value,
    missing user id). Deterministic in ``seed``.
    """
    if n_events < 0:
        raise InputError(f"n_events={n_events}: expected >= 0")
    if n_users < 1 or n_items < 1:
        raise InputError(f"n_users={n_users}, n_items={n_items}: expected >= 1 each")
    for name, frac in (("duplicate_fraction", duplicate_fraction), ("invalid_fraction", invalid_fraction)):  # fmt: skip
        if not 0.0 <= frac < 0.25:
            raise InputError(f"{name}={frac}: expected a fraction in [0, 0.25)")
    if chunk_size < 1000:
        raise InputError(f"chunk_size={chunk_size}: expected >= 1000")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = _epoch(date.fromisoformat(start_date))
    span = days * 86400
    n_chunks = max(1, math.ceil(n_events / chunk_size))
    streams = np.random.SeedSequence(seed).spawn(n_chunks + 1)
    base_rng = np.random.default_rng(streams[-1])
    user_lut = pa.array(_ids("u", n_users))
    item_lut = pa.array(_ids("i", n_items))
    type_lut = pa.array([*_BULK_TYPES, "teleport"])
    # Popularity: a fixed random permutation of Zipf-ish weights (sampled via CDF).
    user_cdf = np.cumsum(base_rng.permutation(1.0 / np.arange(1, n_users + 1) ** 0.8))
    user_cdf /= user_cdf[-1]
    item_cdf = np.cumsum(base_rng.permutation(1.0 / np.arange(1, n_items + 1) ** 0.9))
    item_cdf /= item_cdf[-1]
    item_price = np.round(base_rng.lognormal(3.5, 0.8, n_items), 2) + 0.01
    words = [w for s in STYLES for w in s.words[:2]]
    nouns = [n for c in CATEGORIES for n in c.nouns]
    query_lut = pa.array([f"{w} {n}" for w in words for n in nouns])
    type_cdf = np.cumsum(_BULK_P / _BULK_P.sum())
    search_code = _BULK_TYPES.index("search")
    purchase_code = _BULK_TYPES.index("purchase")
    rate_code = _BULK_TYPES.index("rate")

    total_dup = 0
    by_kind = dict.fromkeys(_BULK_INVALID, 0)
    session_base = 0
    with out.open("wb") as fh:
        fh.write((",".join(EVENTS_HEADER) + "\n").encode())
        for c in range(n_chunks):
            rng = np.random.default_rng(streams[c])
            n = min(chunk_size, n_events - c * chunk_size)
            # Sessions of geometric length (mean ~8) until n rows are covered.
            lens = rng.geometric(1 / 8.0, n // 4 + 16)
            lens = lens[: int(np.searchsorted(np.cumsum(lens), n)) + 1]
            lens[-1] -= int(lens.sum()) - n
            lens = lens[lens > 0]
            n_s = len(lens)
            sess = np.repeat(np.arange(n_s, dtype=np.int64), lens)
            lo = t0 + span * c // n_chunks
            hi = t0 + span * (c + 1) // n_chunks
            s_start = np.sort(rng.integers(lo, max(lo + 1, hi - 3600), n_s))
            gap = 1 + rng.geometric(1 / 20.0, n)
            first = np.r_[True, sess[1:] != sess[:-1]]
            gap[first] = 0
            cs = np.cumsum(gap)
            fi = np.flatnonzero(first)
            ts = s_start[sess] + cs - np.repeat(cs[fi], lens)
            user = np.searchsorted(user_cdf, rng.random(n_s), side="right")[sess]
            item = np.searchsorted(item_cdf, rng.random(n), side="right").astype(np.int64)
            etype = np.searchsorted(type_cdf, rng.random(n), side="right").astype(np.int64)
            np.minimum(etype, len(_BULK_TYPES) - 1, out=etype)
            np.minimum(item, n_items - 1, out=item)
            np.minimum(user, n_users - 1, out=user)
            is_search = etype == search_code
            item[is_search] = -1
            query = np.where(is_search, rng.integers(0, len(query_lut), n), -1)
            value = np.full(n, np.nan)
            pur = etype == purchase_code
            value[pur] = item_price[item[pur]]
            rt = etype == rate_code
            value[rt] = rng.integers(1, 6, int(rt.sum()))
            # Time order inside the chunk (sessions interleave); (session, ts) stays unique.
            order = np.lexsort((sess, ts))
            ts, sess, user, item = ts[order], sess[order], user[order], item[order]
            etype, query, value = etype[order], query[order], value[order]

            # Defects on distinct rows; duplicates copy a clean row that is not itself changed.
            n_dup = round(duplicate_fraction * n)
            n_bad = round(invalid_fraction * n)
            touched = rng.choice(n, size=min(n, n_dup + n_bad), replace=False)
            dup_rows, bad_rows = touched[:n_dup], touched[n_dup:]
            clean = np.ones(n, dtype=bool)
            clean[touched] = False
            src = rng.integers(0, n, n_dup)
            for _ in range(100):
                redo = ~clean[src]
                if not redo.any():
                    break
                src[redo] = rng.integers(0, n, int(redo.sum()))
            src = src[clean[src]]
            dup_rows = dup_rows[: len(src)]
            for arr in (ts, sess, user, item, etype, query, value):
                arr[dup_rows] = arr[src]
            kind = np.arange(len(bad_rows)) % len(_BULK_INVALID)
            bad_ts = bad_rows[kind == 0]
            etype[bad_rows[kind == 1]] = len(_BULK_TYPES)  # "teleport"
            neg = bad_rows[kind == 2]
            etype[neg] = purchase_code
            item[neg] = np.maximum(item[neg], 0)
            query[neg] = -1
            value[neg] = -item_price[item[neg]]
            user[bad_rows[kind == 3]] = -1
            for k, name in enumerate(_BULK_INVALID):
                by_kind[name] += int(np.sum(kind == k))
            total_dup += len(dup_rows)

            ts_str = _iso_utc_array(ts)
            if len(bad_ts):
                mask = np.zeros(n, dtype=bool)
                mask[bad_ts] = True
                ts_str = pc.if_else(pa.array(mask), pa.scalar("not-a-timestamp"), ts_str)
            sess_str = pc.binary_join_element_wise(
                "s", pc.utf8_lpad(pa.array(sess + session_base).cast(pa.string()), 9, "0"), ""
            )
            table = _events_table(
                _take(user_lut, user.astype(np.int64)),
                _take(item_lut, item),
                _take(type_lut, etype),
                ts_str,
                sess_str,
                _take(query_lut, query.astype(np.int64)),
                pa.array(value, pa.float64(), from_pandas=True).cast(pa.string()),
            )
            _write_events_table(fh, table)
            session_base += n_s
    return BulkEventsSummary(
        path=out,
        rows=n_events,
        duplicates=total_dup,
        invalid=sum(by_kind.values()),
        invalid_by_kind=by_kind,
    )
