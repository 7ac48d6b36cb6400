"""One category rule: ``|`` members, path prefixes and path segments, nothing by substring."""

from __future__ import annotations

import pytest

from shopsight.data.categories import matches, matching, members, normalise


@pytest.mark.parametrize(
    ("category", "query", "hit"),
    [
        ("Comedy|Drama", "Drama", True),  # member of a multi-valued category
        ("Comedy|Drama", "drama ", True),
        ("Comedy|Drama", "Dram", False),  # never by substring
        ("Comedy|Drama", "Comedy|Drama", False),  # a query is one category, not a set
        ("Drama", "Drama", True),
        ("Clothing > Men > Shirts", "Clothing", True),  # path prefix
        ("Clothing > Men > Shirts", "clothing>men", True),
        ("Clothing > Men > Shirts", "Clothing > Me", False),
        ("Clothing > Men > Shirts", "Shirts", True),  # one segment
        ("Clothing > Men > Shirts", "Men > Shirts", False),  # an inner path is not a prefix
        ("Books > Fiction|Books > Crime", "Books > Crime", True),  # both at once
        ("Books > Fiction|Books > Crime", "Books", True),
        (None, "Drama", False),
        ("Drama", "", False),
    ],
)
def test_matches(category, query, hit):
    assert matches(category, query) is hit


def test_members_and_matching():
    assert members(" Comedy | Drama ") == ["comedy", "drama"]
    assert normalise("Clothing>Men >  Shirts ") == "clothing > men > shirts"
    cats = ["Comedy|Drama", "Drama", "Comedy", "Dramatic > Art", None]
    assert matching(cats, "Drama") == {"Comedy|Drama", "Drama"}
