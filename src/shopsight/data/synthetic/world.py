"""The planted world: file headers, styles, categories, segments, brands and phrase banks."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

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
