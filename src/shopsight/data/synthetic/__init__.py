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

Users stream in blocks of ``ShopConfig.block_users``, each block with its own random streams:
memory is bounded by the catalogue and one block (never users x items), so a million users fit
in a couple of GB, and ``generate_shop(..., user_range=(start, end))`` writes any whole blocks on
their own (one worker each) with the same rows a full run gives them. Modules: ``world``
(styles, categories, segments, phrase banks), ``config``, ``generator`` (catalogue, per-block
users and behaviour), ``writer`` (files and ground truth), ``images``, ``bulk``.

:func:`write_events_csv` is a separate, much faster bulk generator of plausible events (no
planted structure) for ingest benchmarks at tens of millions of rows.
"""

from .bulk import BulkEventsSummary, write_events_csv
from .config import ShopConfig, ShopFiles, load_ground_truth
from .world import (
    CATEGORIES,
    EVENTS_HEADER,
    ITEMS_HEADER,
    MALFORMED_KINDS,
    REVIEW_KEYS,
    SEGMENTS,
    STYLES,
    USERS_HEADER,
    CategoryDef,
    SegmentDef,
    StyleDef,
)
from .writer import generate_shop

__all__ = [
    "CATEGORIES",
    "EVENTS_HEADER",
    "ITEMS_HEADER",
    "MALFORMED_KINDS",
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
