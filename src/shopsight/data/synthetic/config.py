"""Size, seed and noise of a synthetic shop, and where its files go."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from datetime import date
from pathlib import Path
from typing import Any

from shopsight.errors import InputError

from .world import _BRAND_TAILS, CATEGORIES, SEGMENTS, STYLES

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

    Users are generated in blocks of ``block_users``, each from its own random stream, so memory
    is bounded by the catalogue and one block, and any whole blocks can be generated apart (one
    worker each) with the same rows as a full run. A shop of one block is one time-ordered file.
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
    block_users: int = 10_000

    def __post_init__(self) -> None:
        def bad(name: str, expected: str) -> InputError:
            return InputError(f"ShopConfig.{name}={getattr(self, name)!r}: expected {expected}")

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
        if not 100 <= self.block_users <= 1_000_000:
            raise bad("block_users", "100..1000000")
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

    @property
    def n_blocks(self) -> int:
        return -(-self.n_users // self.block_users)

    def block_range(self, block: int) -> tuple[int, int]:
        """Users ``[lo, hi)`` of a block."""
        lo = block * self.block_users
        return lo, min(self.n_users, lo + self.block_users)

    def blocks_for(self, user_range: tuple[int, int] | None) -> range:
        """The blocks covering ``user_range`` (whole blocks: a range must start and end on one)."""
        if user_range is None:
            return range(self.n_blocks)
        lo, hi = user_range
        if not 0 <= lo < hi <= self.n_users:
            raise InputError(
                f"user range {lo}:{hi}: expected 0 <= START < END <= n_users ({self.n_users})"
            )
        b = self.block_users
        if lo % b or (hi % b and hi != self.n_users):
            raise InputError(
                f"user range {lo}:{hi}: START and END must be multiples of block_users ({b}) "
                f"or END = n_users ({self.n_users}), so a part holds whole blocks"
            )
        return range(lo // b, -(-hi // b))


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
