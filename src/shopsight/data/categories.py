"""One rule for "is this item in category X", for every filter (audiences, serving, personas).

A catalogue ``category`` is either a hierarchical path (``Clothing > Men > Shirts``, the
canonical ``" > "`` notation) or a set of values joined by ``|`` (MovieLens genres
``Comedy|Drama``), or both (``Books > Fiction|Books > Crime``). A query matches a category when,
for one of its ``|`` members (case and spacing ignored):

- the member *is* the query (``Drama`` matches ``Comedy|Drama``);
- the member's path *starts with* the query as whole segments (``Clothing > Men`` matches
  ``Clothing > Men > Shirts``; ``Cloth`` does not);
- the query is one *segment* of the member's path (``Shirts`` matches ``Clothing > Men > Shirts``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

_SEP = re.compile(r"\s*>\s*")


def normalise(path: str) -> str:
    """``" clothing>Men >  shirts"`` -> ``"clothing > men > shirts"``."""
    return " > ".join(s for s in (x.strip() for x in _SEP.split(path.strip().lower())) if s)


def members(category: str | None) -> list[str]:
    """The normalised ``|`` members of a category value (empty for none)."""
    if not category:
        return []
    return [m for m in (normalise(x) for x in str(category).split("|")) if m]


@lru_cache(maxsize=65536)
def _match(category: str, query: str) -> bool:
    for m in members(category):
        if m == query or m.startswith(query + " > ") or query in m.split(" > "):
            return True
    return False


def matches(category: str | None, query: str) -> bool:
    """True when ``category`` is in ``query`` by member, path prefix or segment (see above)."""
    q = normalise(query)
    return bool(category) and bool(q) and _match(str(category), q)


def matching(categories: Iterable[str | None], query: str) -> set[str]:
    """The distinct category values among ``categories`` that ``query`` matches."""
    return {str(c) for c in set(categories) if c and matches(c, query)}


__all__ = ["matches", "matching", "members", "normalise"]
