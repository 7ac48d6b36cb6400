"""Which signals a store really holds, so personas only claim what the data can support.

A review dump has dates stamped 00:00 (no time of day, no sessions), no prices, no clicks; a
clickstream may have no reviews or demographics. Every profile field, segment trait, name,
chart and claim of the personas depends on one of the signals below; each is measured from the
store (not assumed from the file format) and comes with a one-line reason a reader can check.

``signal_inventory(store)`` -> ``{name: {"available": bool, "reason": str}}`` in
:data:`SIGNALS` order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from shopsight.data.clean import preferred_table
from shopsight.data.store import Store, fetch_one

SIGNALS: Final[tuple[str, ...]] = (
    "time_of_day",
    "sessions",
    "price",
    "funnel",
    "searches",
    "ratings",
    "review_text",
    "categories",
    "brands",
    "demographics",
    "images",
)
# At least this share of events must carry a clock time (not 00:00:00) for time of day to count:
# a few midnight events are normal, a date-only source has every event at 00:00.
MIN_CLOCK_SHARE: Final[float] = 0.2
# Share of engaged items that must have a price / category / brand for it to describe users.
MIN_ITEM_SHARE: Final[float] = 0.2

# Behaviour columns of the segment vector and the signals each needs (all of them).
TRAIT_SIGNALS: Final[dict[str, tuple[str, ...]]] = {
    "activity": (),
    "sessions": ("sessions",),
    "events_per_session": ("sessions",),
    "view_to_buy": ("funnel",),
    "cart_abandonment": ("funnel",),
    "purchase_propensity": ("funnel",),
    "search_share": ("searches",),
    "social_share": (),
    "price_z": ("price",),
    "price_sensitivity": ("price", "funnel"),
    "night_share": ("time_of_day",),
    "morning_share": ("time_of_day",),
    # Dates alone give a weekday, but for a review or rating dump that is the day the text was
    # dated, not when the user shopped: weekday rhythm is only claimed with real event times.
    "weekend_share": ("time_of_day",),
    "brand_concentration": ("brands",),
    "monetary": ("price",),
    "rating_bias": ("ratings",),
    "mean_rating": ("ratings",),
    "session_minutes": ("sessions",),
    "review_sentiment": ("review_text",),
}


def _n(v: Any) -> int:
    return int(v or 0)


_table = preferred_table


def signal_inventory(store: Store) -> dict[str, dict[str, Any]]:
    """Measure each signal in the store (see the module docstring)."""
    conn = store.conn
    events = _table(store, "events")
    items = _table(store, "items")
    reviews = _table(store, "reviews")
    users = _table(store, "users")
    out: dict[str, dict[str, Any]] = {}

    def put(name: str, ok: bool, reason: str) -> None:
        out[name] = {"available": bool(ok), "reason": reason}

    if events is None or store.count(events) == 0:
        for name in SIGNALS:
            put(name, False, "no events in the store")
        return out
    ev = fetch_one(
        conn,
        f"""SELECT count(*),
            count(*) FILTER (NOT ts_ordinal AND (hour(timestamp) <> 0 OR minute(timestamp) <> 0
                             OR second(timestamp) <> 0)),
            count(DISTINCT hour(timestamp)) FILTER (NOT ts_ordinal),
            count(*) FILTER (session_id IS NOT NULL),
            count(*) FILTER (event_type IN ('view', 'click')),
            count(*) FILTER (event_type = 'add_to_cart'),
            count(*) FILTER (event_type = 'purchase'),
            count(*) FILTER (event_type = 'search' OR query IS NOT NULL),
            count(*) FILTER (event_type IN ('rate', 'review') AND value IS NOT NULL),
            count(DISTINCT item_id)
        FROM "{events}" """,
    )
    assert ev is not None
    n_ev, n_clock, n_hours, n_sess, n_browse, n_cart, n_buy, n_search, n_rate, n_items = (
        _n(v) for v in ev
    )
    clock_share = n_clock / max(n_ev, 1)
    clock = clock_share >= MIN_CLOCK_SHARE and n_hours >= 3
    put(
        "time_of_day",
        clock,
        f"{clock_share:.0%} of {n_ev:,} events carry a clock time, over {n_hours} hours of the day"
        if clock
        else f"{n_ev - n_clock:,} of {n_ev:,} events are stamped 00:00 or carry an order only "
        "(dates without a time of day)",
    )
    if n_sess:
        put("sessions", True, f"{n_sess / n_ev:.0%} of events carry the source's session id")
    elif clock:
        put("sessions", True, "sessions from 30-minute gaps between timestamped events")
    else:
        put("sessions", False, "no session ids and no time of day to split visits by")
    if n_browse and (n_cart or n_buy):
        put(
            "funnel",
            True,
            f"{n_browse:,} views/clicks, {n_cart:,} add-to-carts, {n_buy:,} purchases",
        )
    elif n_browse or n_cart or n_buy:
        put(
            "funnel",
            False,
            f"only {n_browse:,} views/clicks, {n_cart:,} add-to-carts, {n_buy:,} purchases: "
            "no step to convert between",
        )
    else:
        put("funnel", False, "no view, cart or purchase events (ratings and reviews only)")
    put(
        "searches",
        n_search > 0,
        f"{n_search:,} search events" if n_search else "no search events or queries",
    )
    put(
        "ratings",
        n_rate > 0,
        f"{n_rate:,} ratings" if n_rate else "no rating events with a value",
    )

    def item_share(expr: str) -> tuple[int, float]:
        if items is None:
            return 0, 0.0
        row = fetch_one(
            conn,
            f"""SELECT count(*) FILTER ({expr}) FROM (
                    SELECT DISTINCT e.item_id FROM "{events}" e WHERE e.item_id IS NOT NULL) e
                LEFT JOIN (SELECT item_id, any_value(price) AS price,
                                  any_value(nullif(trim(category), '')) AS category,
                                  any_value(nullif(trim(brand), '')) AS brand,
                                  any_value(image) AS image
                           FROM "{items}" GROUP BY 1) i USING (item_id)""",
        )
        k = _n(row[0]) if row else 0
        return k, k / max(n_items, 1)

    k, share = item_share("i.price > 0")
    paid = fetch_one(
        conn, f"""SELECT count(*) FROM "{events}" WHERE event_type = 'purchase' AND value > 0"""
    )
    if paid is not None and _n(paid[0]) > 0:
        put("price", True, f"{_n(paid[0]):,} purchases with a value; {k:,} items with a price")
    else:
        put(
            "price",
            share >= MIN_ITEM_SHARE,
            f"{k:,} of {n_items:,} engaged items have a price ({share:.0%})",
        )
    k, share = item_share("i.category IS NOT NULL")
    put(
        "categories",
        share >= MIN_ITEM_SHARE,
        f"{k:,} of {n_items:,} engaged items have a category ({share:.0%})",
    )
    k, share = item_share("i.brand IS NOT NULL")
    put(
        "brands",
        share >= MIN_ITEM_SHARE,
        f"{k:,} of {n_items:,} engaged items have a brand ({share:.0%})",
    )
    n_text = 0
    if reviews is not None:
        row = fetch_one(
            conn,
            f"""SELECT count(*) FROM "{reviews}"
                WHERE length(trim(coalesce(text, ''))) + length(trim(coalesce(summary, ''))) >= 3""",
        )
        n_text = _n(row[0]) if row else 0
    put(
        "review_text",
        n_text > 0,
        f"{n_text:,} reviews with text" if n_text else "no review text in the store",
    )
    n_demo = 0
    if users is not None:
        row = fetch_one(
            conn,
            f"""SELECT count(*) FROM "{users}" WHERE age_band IS NOT NULL OR gender IS NOT NULL
                OR region IS NOT NULL
                OR json_extract_string(attributes, '$.occupation') IS NOT NULL""",
        )
        n_demo = _n(row[0]) if row else 0
    put(
        "demographics",
        n_demo >= 10,
        f"{n_demo:,} users with age, gender, region or occupation"
        if n_demo
        else "no user attributes (age, gender, region, occupation)",
    )
    k, share = item_share("i.image IS NOT NULL AND length(trim(i.image)) > 0")
    k_url, _ = item_share("regexp_matches(lower(trim(i.image)), '^https?://')")
    if k - k_url > 0:
        put("images", True, f"{k - k_url:,} of {n_items:,} engaged items have a local image")
    elif k_url:
        put(
            "images",
            False,
            f"{k_url:,} engaged items reference images by URL only (never fetched: offline)",
        )
    else:
        put("images", False, "no item images referenced in the catalogue")
    return {name: out[name] for name in SIGNALS}


def available(signals: Mapping[str, Mapping[str, Any]] | None, *names: str) -> bool:
    """True when every named signal is available (an empty inventory allows everything)."""
    if not signals:
        return True
    return all(signals.get(n, {}).get("available", True) for n in names)


def trait_available(signals: Mapping[str, Mapping[str, Any]] | None, trait: str) -> bool:
    return available(signals, *TRAIT_SIGNALS.get(trait, ()))


# Profile columns that mean nothing without their signal (shown as unknown, never as 0).
FIELD_SIGNALS: Final[dict[str, tuple[str, ...]]] = {
    "weekend_share": ("time_of_day",),
    "n_sessions": ("sessions",),
    "purchase_sessions": ("sessions", "funnel"),
    "session_minutes": ("sessions",),
    "events_per_session": ("sessions",),
    "avg_price": ("price",),
    "price_z": ("price",),
    "browse_price_z": ("price",),
    "buy_price_z": ("price",),
    "items_browsed": ("funnel",),
    "items_carted": ("funnel",),
    "items_abandoned": ("funnel",),
    "items_bought": ("funnel",),
    "mean_rating": ("ratings",),
    "rating_bias": ("ratings",),
    "n_reviews": ("review_text",),
    "sentiment": ("review_text",),
}
