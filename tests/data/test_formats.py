"""Readers of the public dataset formats: parsing helpers, fixtures, and the real files.

Counts on the real files are the ones in ../shared/README.md (tests skip when it is absent).
"""

from __future__ import annotations

import gzip
import json
import os
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shopsight.data.formats import ReadOptions, detect_format, get_format
from shopsight.data.formats._util import (
    age_band,
    floats,
    iter_delimited,
    iter_lines,
    parse_number,
    parse_price,
    parse_record,
    parse_timestamp,
    strip_html,
    timestamps,
)
from shopsight.data.formats.unisrec import split_text
from shopsight.data.ingest import ingest_file
from shopsight.data.staging import STAGING, FormatError, StagedSource
from shopsight.data.store import Store

MY_FORMATS = (
    "amazon-reviews",
    "amazon-meta",
    "movielens-100k",
    "movielens-dat",
    "movielens-csv",
    "recbole",
    "sequences",
    "unisrec",
    "diginetica",
    "catalog-images",
)


def materialise(src: StagedSource) -> pa.Table:
    if src.sql is not None:
        return duckdb.connect().sql(src.sql).to_arrow_table()
    assert src.batches is not None
    batches = list(src.batches)
    if not batches:
        return STAGING[src.target].empty_table()
    return pa.Table.from_batches(batches)


def stage(path: Path, fmt: str | None = None, **opts: object) -> tuple[StagedSource, pa.Table]:
    f = get_format(fmt) if fmt else detect_format(path)
    sources = f.stage(path, ReadOptions(**opts))  # type: ignore[arg-type]
    assert len(sources) == 1
    src = sources[0]
    table = materialise(src)
    assert table.schema.names == STAGING[src.target].names
    return src, table


def rows(table: pa.Table) -> list[dict[str, Any]]:
    """Rows in file order (readers may put error rows in batches of their own)."""
    out = table.to_pylist()
    return sorted(out, key=lambda r: r["line"]) if "line" in table.schema.names else out


def n_errors(table: pa.Table) -> int:
    return int(pc.sum(pc.is_valid(table["error"])).as_py() or 0)


def distinct(table: pa.Table, col: str) -> int:
    return len(pc.unique(table[col]))


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


# --------------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("raw", "amount", "currency"),
    [
        ("$25.00", 25.0, "USD"),
        ("$1,299.99", 1299.99, "USD"),
        ("$1,250.00", 1250.0, "USD"),
        ("", None, None),
        ("   ", None, None),
        (None, None, None),
        (12, 12.0, None),
        ("19.5", 19.5, None),
        ("$9.99 - $19.99", 9.99, "USD"),
        ("€12,50", 12.5, "EUR"),
        ("EUR 1.299,99", 1299.99, "EUR"),
        ("£1,000", 1000.0, "GBP"),
        ("free", None, None),
        ("$12.3.4", None, "USD"),
    ],
)
def test_parse_price(raw: object, amount: float | None, currency: str | None) -> None:
    got, cur = parse_price(raw)
    assert got == pytest.approx(amount) if amount is not None else got is None
    if amount is not None:
        assert cur == currency


def test_strip_html() -> None:
    s = strip_html(
        '<div class="aplus"> <br>Cards &amp; more.<br /><br /> Buy '
        '<a href="http://x">individual cards</a>.<script>var x=1;</script><style>p{}</style></div>'
    )
    assert s == "Cards & more.\nBuy individual cards."
    assert strip_html("no markup,   just   spaces") == "no markup, just spaces"
    assert strip_html("<p>  </p>") is None
    assert strip_html(None) is None
    assert strip_html("5 &lt; 6 &#34;quoted&#34;") == '5 < 6 "quoted"'


def test_parse_timestamp() -> None:
    assert parse_timestamp(1529193600) == datetime(2018, 6, 17)
    assert parse_timestamp("1529193600") == datetime(2018, 6, 17)
    assert parse_timestamp(1529193600123) == datetime(2018, 6, 17, 0, 0, 0, 123000)
    assert parse_timestamp("2024-01-01T10:00:00Z") == datetime(2024, 1, 1, 10)
    assert parse_timestamp("2024-01-01T12:00:00+02:00") == datetime(2024, 1, 1, 10)
    assert parse_timestamp("09 13, 2009", ("%m %d, %Y",)) == datetime(2009, 9, 13)
    assert parse_timestamp("09 13, 2009") is None
    assert parse_timestamp("") is None
    assert parse_timestamp("nan") is None
    assert parse_timestamp(1e300) is None


def test_age_band() -> None:
    assert [age_band(a) for a in (7, 18, 24, 25, 34, 53, 64, 73)] == [
        "<18",
        "18-24",
        "18-24",
        "25-34",
        "25-34",
        "45-54",
        "55-64",
        "65+",
    ]
    assert age_band("x") is None
    assert age_band(-1) is None


_epochish = st.one_of(
    st.integers(-(10**16), 10**16).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", " 7", "1_000", "2024-01-01T10:00:00Z", "x", "1e300", "+5", ".5"]),
)


@settings(deadline=None, max_examples=200)
@given(st.lists(st.one_of(st.none(), _epochish), max_size=20))
def test_columnar_parsers_agree_with_python(values: list[str | None]) -> None:
    """The vectorised casts (and their per-batch fallback) give what the per-value parsers give."""
    arr = pa.array(values, pa.string())
    assert floats(arr).to_pylist() == pytest.approx([parse_number(v) for v in values], nan_ok=True)
    assert timestamps(arr).to_pylist() == [parse_timestamp(v) for v in values]


def test_parse_record_json_and_loose_json() -> None:
    assert parse_record('{"a": 1}') == ({"a": 1}, None)
    obj, err = parse_record("{'reviewerID': 'A1', 'helpful': [1, 2], 'ok': True}")
    assert err is None and obj == {"reviewerID": "A1", "helpful": [1, 2], "ok": True}
    obj, err = parse_record('{"a": 1,')
    assert obj is None and err is not None and err.startswith("invalid JSON")
    obj, err = parse_record("[1, 2]")
    assert obj is None and err == "expected a JSON object, got list"
    # literal_eval evaluates literals only: an expression is not a record.
    obj, err = parse_record("{'a': __import__('os').getcwd()}")
    assert obj is None and err is not None


def _gzip_lines(n: int) -> bytes:
    return gzip.compress(
        b"".join(b'{"i": %d, "pad": "%s"}\n' % (i, b"x" * (i % 37)) for i in range(n))
    )


def test_iter_lines_truncated_gzip_yields_good_lines_then_error(tmp_path: Path) -> None:
    blob = _gzip_lines(20_000)
    p = tmp_path / "t.json.gz"
    p.write_bytes(blob[: len(blob) // 2])
    lines = list(iter_lines(p))
    good, last = lines[:-1], lines[-1]
    assert all(ln.error is None for ln in good)
    assert [json.loads(ln.text)["i"] for ln in good] == list(range(len(good)))
    assert 1000 < len(good) < 20_000
    assert last.number == len(good) + 1
    assert last.error == f"truncated gzip stream after line {len(good)}"
    n = len(good)
    assert f'{{"i": {n}, "pad": "{"x" * (n % 37)}"}}'.startswith(last.text)


def test_iter_lines_plain_multimember_and_corrupt(tmp_path: Path) -> None:
    plain = write(tmp_path / "a.txt", "a\r\nb\n\nc")
    assert [(ln.number, ln.text) for ln in iter_lines(plain)] == [
        (1, "a"),
        (2, "b"),
        (3, ""),
        (4, "c"),
    ]
    multi = tmp_path / "m.gz"
    multi.write_bytes(gzip.compress(b"1\n2\n") + gzip.compress(b"3\n"))
    assert [ln.text for ln in iter_lines(multi)] == ["1", "2", "3"]
    corrupt = tmp_path / "c.gz"
    good = gzip.compress(b"x\n" * 1000)
    corrupt.write_bytes(good[:20] + b"\xff" * 50 + good[70:])
    out = list(iter_lines(corrupt))
    assert out[-1].error is not None and "gzip stream after line" in out[-1].error


def test_iter_delimited_quotes_and_latin1(tmp_path: Path) -> None:
    p = write(
        tmp_path / "m.csv", 'id,title\n1,"Misérables, Les (1995)"\n2,"a\nb"\n3,x\n', "latin-1"
    )
    recs = list(iter_delimited(p, ","))
    assert [r.line for r in recs] == [1, 2, 3, 5]
    assert recs[1].fields == ["1", "Misérables, Les (1995)"]
    assert recs[2].fields == ["2", "a\nb"] and recs[2].raw == '2,"a\nb"'


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("fmt", MY_FORMATS)
def test_binary_file_raises_format_error(tmp_path: Path, fmt: str) -> None:
    p = tmp_path / "u.data"
    p.write_bytes(bytes(range(256)) * 64)
    ctrl = tmp_path / "ctrl.json"  # no NUL, but control bytes everywhere: not text either
    ctrl.write_bytes(bytes(range(1, 32)) * 500)
    with pytest.raises(FormatError, match="binary"):
        get_format(fmt).stage(ctrl, ReadOptions())
    with pytest.raises(FormatError, match="binary"):
        get_format(fmt).stage(p, ReadOptions())
    with pytest.raises(FormatError, match="binary"):
        detect_format(p)


def test_missing_file_raises_format_error(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="no such file"):
        get_format("amazon-reviews").stage(tmp_path / "nope.json", ReadOptions())


@pytest.mark.parametrize(
    ("fmt", "name", "text"),
    [
        ("amazon-reviews", "r.json", "hello\nworld\n"),
        ("amazon-reviews", "r.json", '{"asin": "B1", "title": "meta not reviews"}\n'),
        ("amazon-meta", "m.json", '{"reviewerID": "A", "asin": "B", "overall": 5}\n'),
        ("movielens-100k", "u.data", "1,2,3,4\n5,6,7,8\n"),
        ("movielens-csv", "ratings.csv", "user,item\n1,2\n"),
        ("movielens-dat", "other.dat", "1::2::3::4\n"),
        ("recbole", "x.inter", "user_id\titem_id\n1\t2\n"),
        ("sequences", "s.txt", "a,b,c\n"),
        ("unisrec", "x.train.inter", "user_id:token\titem_id:token\n1\t2\n"),
        ("diginetica", "d.csv", "a;b;c\n"),
        ("catalog-images", "styles.csv", "name,colour\nx,red\n"),
    ],
)
def test_wrong_layout_raises_format_error(tmp_path: Path, fmt: str, name: str, text: str) -> None:
    p = write(tmp_path / name, text)
    with pytest.raises(FormatError) as exc:
        get_format(fmt).stage(p, ReadOptions())
    msg = str(exc.value)
    assert str(p) in msg and "\n" not in msg


# --------------------------------------------------------------------------- Amazon


@pytest.mark.shared
def test_amazon_reviews_real(shared: Any) -> None:
    p = shared.path("amazon-gift-cards", "Gift_Cards_5.json.gz")
    assert detect_format(p).name == "amazon-reviews"
    src, t = stage(p)
    assert src.target == "reviews" and src.reviews_as_events and src.rating_range == (1, 5)
    assert t.num_rows == 2972 and n_errors(t) == 0
    assert distinct(t, "user_id") == 458
    assert distinct(t, "item_id") == 148
    pairs = Counter(zip(t["user_id"].to_pylist(), t["item_id"].to_pylist(), strict=True))
    assert sum(c - 1 for c in pairs.values()) == 7  # the README's duplicate user-item pairs
    assert Counter(t["rating"].to_pylist())[5.0] == 2752
    assert pc.sum(pc.is_null(t["timestamp"])).as_py() == 0
    first = rows(t)[0]
    assert first["timestamp"] == datetime(2018, 6, 17) and first["verified"] is True
    assert first["summary"] == "Five Stars" and first["line"] == 1


@pytest.mark.shared
def test_amazon_meta_real(shared: Any) -> None:
    p = shared.path("amazon-gift-cards", "meta_Gift_Cards.json.gz")
    assert detect_format(p).name == "amazon-meta"
    src, t = stage(p)
    assert t.num_rows == 1547 and n_errors(t) == 0 and distinct(t, "item_id") == 1547
    by_id = {r["item_id"]: r for r in rows(t)}
    pack = by_id["B001H53QE4"]
    assert pack["price"] == 1250.0 and pack["price_raw"] == "$1,250.00"
    assert pack["currency"] == "USD"
    assert "individual gift cards" in pack["description"]
    assert pack["image"].startswith("https://")
    attrs = json.loads(pack["attributes"])
    assert len(attrs["images"]) == 3 and "B005ESMEBQ" in attrs["also_buy"]
    for r in by_id.values():
        for col in ("title", "description", "brand"):
            assert r[col] is None or ("<" not in r[col] and "&amp;" not in r[col]), r[col]
        if r["price_raw"] is not None:  # every price text that is a price parses
            assert r["price"] is not None, r["price_raw"]
        # 2018 category lists repeat levels and end in feature bullets; paths do not.
        assert r["category"] is None or all(
            len(level) <= 60 and not level.endswith(".") for level in r["category"].split(" > ")
        )
    assert Counter(r["category"] for r in by_id.values())["Gift Cards"] > 1000
    assert sum(r["price"] is not None for r in by_id.values()) == 358
    assert any("scraped HTML/CSS" in n for n in src.notes)
    assert by_id["B001BKEWF2"]["price"] is None and by_id["B001BKEWF2"]["price_raw"] is None


def test_amazon_2014_loose_json_and_2023(tmp_path: Path) -> None:
    reviews = write(
        tmp_path / "reviews_Beauty.json",
        "{'reviewerID': 'A1', 'asin': 'B1', 'helpful': [3, 4], 'reviewText': 'Nice &quot;cream&quot;',"
        " 'overall': 4.0, 'summary': 'ok', 'unixReviewTime': 1369612800, 'reviewTime': '05 27, 2013'}\n"
        '{"reviewerID": "A2", "asin": "B1", "overall": 5.0, "reviewTime": "09 13, 2009", "vote": "1,234"}\n'
        '{"user_id": "U3", "asin": "C1", "parent_asin": "P1", "rating": 3.0, "title": "meh",'
        ' "text": "fine<br />ok", "timestamp": 1588687728923, "helpful_vote": 2, "verified_purchase": false}\n'
        "{not json at all\n"
        "[1, 2]\n",
    )
    assert detect_format(reviews).name == "amazon-reviews"
    _, t = stage(reviews)
    r = rows(t)
    assert r[0]["user_id"] == "A1" and r[0]["helpful_votes"] == 3 and r[0]["text"] == 'Nice "cream"'
    assert r[0]["timestamp"] == datetime(2013, 5, 27)
    assert r[1]["timestamp"] == datetime(2009, 9, 13) and r[1]["helpful_votes"] == 1234
    assert r[2]["item_id"] == "P1" and r[2]["summary"] == "meh" and r[2]["text"] == "fine\nok"
    assert r[2]["timestamp"] == datetime(2020, 5, 5, 14, 8, 48, 923000)
    assert r[2]["verified"] is False and r[2]["helpful_votes"] == 2
    assert r[3]["line"] == 4 and r[3]["error"].startswith("invalid JSON")
    assert r[3]["raw"] == "{not json at all" and r[3]["user_id"] is None
    assert r[4]["error"] == "expected a JSON object, got list"

    meta = write(
        tmp_path / "meta_Beauty.json",
        "{'asin': 'B1', 'title': 'Cream', 'price': 12.5, 'imUrl': 'http://i/1.jpg',"
        " 'categories': [['Beauty', 'Skin Care', 'Face'], ['Beauty', 'Gifts']],"
        " 'salesRank': {'Beauty': 1234}, 'related': {'also_bought': ['B2'], 'bought_together': ['B3']}}\n"
        '{"parent_asin": "P1", "title": "Lamp", "main_category": "Home", "price": null,'
        ' "images": [{"thumb": "t.jpg", "large": "l.jpg", "hi_res": null}], "store": "Acme",'
        ' "categories": ["Home", "Lighting"], "features": ["bright"], "description": ["<b>Warm</b> light"],'
        ' "details": {"Date First Available": "March 27, 2014"}}\n',
    )
    assert detect_format(meta).name == "amazon-meta"
    _, t = stage(meta)
    a, b = rows(t)
    assert a["item_id"] == "B1" and a["price"] == 12.5 and a["currency"] == "USD"
    assert a["category"] == "Beauty > Skin Care > Face" and a["image"] == "http://i/1.jpg"
    attrs = json.loads(a["attributes"])
    assert attrs["categories"] == [["Beauty", "Skin Care", "Face"], ["Beauty", "Gifts"]]
    assert attrs["also_buy"] == ["B2"] and attrs["rank"] == {"Beauty": 1234}
    assert b["item_id"] == "P1" and b["brand"] == "Acme" and b["image"] == "l.jpg"
    assert b["category"] == "Home > Lighting" and b["description"] == "Warm light"
    assert b["price"] is None and b["price_raw"] is None
    assert b["first_seen"] == datetime(2014, 3, 27)


@pytest.mark.shared
def test_amazon_truncated_gzip_real(shared: Any, tmp_path: Path) -> None:
    full = shared.path("amazon-gift-cards", "Gift_Cards_5.json.gz")
    blob = full.read_bytes()
    cut = tmp_path / "Gift_Cards_5.json.gz"
    cut.write_bytes(blob[: len(blob) // 2])
    assert detect_format(cut).name == "amazon-reviews"
    _, t = stage(cut)
    _, whole = stage(full)
    n = t.num_rows - 1
    assert 0 < n < 2972 and n_errors(t) == 1
    last = rows(t)[-1]
    assert last["error"] == f"truncated gzip stream after line {n}" and last["line"] == n + 1
    assert t.slice(0, n).drop_columns(["error"]).equals(whole.slice(0, n).drop_columns(["error"]))


# --------------------------------------------------------------------------- MovieLens


@pytest.mark.shared
def test_movielens_100k_real(shared: Any) -> None:
    folder = shared.path("movielens-100k")
    data = folder / "u.data"
    assert detect_format(data).name == "movielens-100k"
    src, t = stage(data)
    assert src.target == "events" and src.rating_range == (1, 5)
    assert t.num_rows == 100_000 and n_errors(t) == 0
    assert distinct(t, "user_id") == 943 and distinct(t, "item_id") == 1682
    assert set(t["event_type"].to_pylist()) == {"rate"}
    assert set(t["value"].to_pylist()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert rows(t)[0]["timestamp"] == datetime(1997, 12, 4, 15, 55, 49)

    n_fold = 0
    for part in ("u1.base", "u1.test"):
        assert detect_format(folder / part).name == "movielens-100k"
        n_fold += stage(folder / part)[1].num_rows
    assert n_fold == 100_000

    _, items = stage(folder / "u.item")
    assert items.num_rows == 1682 and n_errors(items) == 0
    toy = rows(items)[0]
    assert toy["title"] == "Toy Story (1995)" and toy["category"] == "Animation|Children's|Comedy"
    attrs = json.loads(toy["attributes"])
    assert attrs["release_date"] == "1995-01-01" and attrs["year"] == 1995
    assert attrs["genres"] == ["Animation", "Children's", "Comedy"]

    _, users = stage(folder / "u.user")
    assert users.num_rows == 943 and n_errors(users) == 0
    u1 = rows(users)[0]
    assert (u1["user_id"], u1["age_band"], u1["gender"], u1["region"]) == (
        "1",
        "18-24",
        "M",
        "85711",
    )
    assert json.loads(u1["attributes"]) == {"age": 24, "occupation": "technician"}


def test_movielens_100k_bad_lines_and_latin1(tmp_path: Path) -> None:
    data = write(tmp_path / "u.data", "1\t2\t3\t881250949\n1\t2\n\n2\t3\tx\t881250949\n")
    _, t = stage(data)
    r = rows(t)
    assert len(r) == 3 and r[1]["line"] == 2
    assert r[1]["error"] == ("expected 4 fields (user<TAB>item<TAB>rating<TAB>timestamp), got 2")
    assert r[2]["value"] is None and r[2]["value_raw"] == "x" and r[2]["error"] is None
    flags = "|".join(["0"] * 5 + ["1"] + ["0"] * 13)
    item = write(
        tmp_path / "u.item", f"1|Misérables, Les (1995)|01-Jan-1995||http://x|{flags}\n", "latin-1"
    )
    assert get_format("movielens-100k").sniff(item, item.read_bytes())
    _, t = stage(item, "movielens-100k")
    assert rows(t)[0]["title"] == "Misérables, Les (1995)" and rows(t)[0]["category"] == "Comedy"


def test_movielens_csv(tmp_path: Path) -> None:
    ratings = write(
        tmp_path / "ratings.csv",
        "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.5,964981247\n1,6\n",
    )
    movies = write(
        tmp_path / "movies.csv",
        "movieId,title,genres\n1,Toy Story (1995),Adventure|Animation|Children\n"
        '11,"American President, The (1995)",Comedy|Drama|Romance\n'
        "9999,Untitled,(no genres listed)\n",
    )
    tags = write(tmp_path / "tags.csv", "userId,movieId,tag,timestamp\n2,60756,funny,1445714994\n")
    for p in (ratings, movies, tags):
        assert detect_format(p).name == "movielens-csv"
    src, t = stage(ratings)
    assert src.rating_range == (0.5, 5)
    r = rows(t)
    assert [x["value"] for x in r[:2]] == [4.0, 4.5] and r[0]["event_type"] == "rate"
    assert r[2]["line"] == 4 and "expected 4 fields" in r[2]["error"]
    _, t = stage(movies)
    m = rows(t)
    assert m[1]["title"] == "American President, The (1995)"
    assert m[1]["category"] == "Comedy|Drama|Romance"
    assert json.loads(m[1]["attributes"]) == {
        "genres": ["Comedy", "Drama", "Romance"],
        "year": 1995,
    }
    assert m[2]["category"] is None
    src, t = stage(tags)
    assert src.target == "events"  # a tag is an annotation event, not a review
    tag = rows(t)[0]
    assert (tag["user_id"], tag["item_id"], tag["event_type"], tag["query"]) == (
        "2",
        "60756",
        "tag",
        "funny",
    )
    assert tag["timestamp"] == datetime(2015, 10, 24, 19, 29, 54)


def test_movielens_dat(tmp_path: Path) -> None:
    ratings = write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n")
    users = write(tmp_path / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n")
    movies = write(tmp_path / "movies.dat", "1::Toy Story (1995)::Animation|Children's|Comedy\n")
    for p in (ratings, users, movies):
        assert detect_format(p).name == "movielens-dat"
    assert stage(ratings)[1].num_rows == 2
    u = rows(stage(users)[1])
    assert u[0]["age_band"] == "<18" and u[1]["age_band"] == "56+"
    assert json.loads(u[0]["attributes"])["occupation"] == "K-12 student"
    assert rows(stage(movies)[1])[0]["category"] == "Animation|Children's|Comedy"


# --------------------------------------------------------------------------- RecBole


def test_recbole_atomic_files(tmp_path: Path) -> None:
    inter = write(
        tmp_path / "ml.inter",
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "196\t242\t3\t881250949\n186\t302\t3\n",
    )
    item = write(
        tmp_path / "ml.item",
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "1\tToy Story\t1995\tAnimation Children's Comedy\n",
    )
    user = write(
        tmp_path / "ml.user",
        "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
        "1\t24\tM\ttechnician\t85711\n",
    )
    for p in (inter, item, user):
        assert detect_format(p).name == "recbole"
    _, t = stage(inter)
    r = rows(t)
    assert r[0]["event_type"] == "rate" and r[0]["value"] == 3.0
    assert r[0]["timestamp"] == datetime(1997, 12, 4, 15, 55, 49)
    assert r[1]["error"] == "expected 4 tab-separated fields, got 3" and r[1]["line"] == 3
    it = rows(stage(item)[1])[0]
    assert it["title"] == "Toy Story" and it["category"] == "Animation|Children's|Comedy"
    assert json.loads(it["attributes"]) == {"release_year": "1995"}
    us = rows(stage(user)[1])[0]
    assert (us["age_band"], us["gender"], us["region"]) == ("18-24", "M", "85711")
    assert json.loads(us["attributes"]) == {"age": 24, "occupation": "technician"}


def test_recbole_implicit_session_and_event_column(tmp_path: Path) -> None:
    sess = write(
        tmp_path / "dg.inter",
        "session_id:token\titem_id:token\ttimestamp:float\n7\t81766\t1462752000\n",
    )
    one = rows(stage(sess)[1])[0]
    assert one["user_id"] == "anon:7" and one["session_id"] == "7"
    assert one["event_type"] == "view" and one["value"] is None
    typed = write(
        tmp_path / "tmall.inter",
        "user_id:token\titem_id:token\tbehavior_type:token\n1\t9\tbuy\n1\t8\tpv\n2\t9\tcart\n",
    )
    _, t = stage(typed)
    r = rows(t)
    assert [x["event_type"] for x in r] == ["buy", "pv", "cart"]  # the engine maps aliases
    # No timestamp column: per-user file order as ordinal times.
    assert [x["timestamp"] for x in r] == [
        datetime(2000, 1, 1, 0, 0, 0),
        datetime(2000, 1, 1, 0, 0, 1),
        datetime(2000, 1, 1, 0, 0, 0),
    ]
    assert all(x["ts_ordinal"] for x in r)
    assert rows(stage(sess, defaults={"event_type": "click"})[1])[0]["event_type"] == "click"


def test_recbole_rejects_sequence_files(tmp_path: Path) -> None:
    p = write(
        tmp_path / "x.inter",
        "user_id:token\titem_id_list:token_seq\titem_id:token\n0\t1 2\t3\n",
    )
    assert detect_format(p).name == "unisrec"
    with pytest.raises(FormatError, match="unisrec"):
        get_format("recbole").stage(p, ReadOptions())


# --------------------------------------------------------------------------- sequences


@pytest.mark.shared
def test_sequences_real(shared: Any) -> None:
    p = shared.path("amazon-beauty-seq", "Beauty.txt")
    assert detect_format(p).name == "sequences"
    _, t = stage(p)
    assert t.num_rows == 198_502 and n_errors(t) == 0
    assert distinct(t, "user_id") == 22_363 and distinct(t, "item_id") == 12_101
    assert all(t["ts_ordinal"].to_pylist())
    assert set(t["event_type"].to_pylist()) == {"purchase"}
    first = rows(t.slice(0, 5))
    assert [x["item_id"] for x in first] == ["1", "2", "3", "4", "5"]
    assert [x["timestamp"].second for x in first] == [0, 1, 2, 3, 4]


def test_sequences_fixture(tmp_path: Path) -> None:
    p = write(tmp_path / "Toys.txt", "u1 i1 i2 i3\nu2 i2\nu3\nu4 i9 i8\n")
    assert detect_format(p).name == "sequences"
    _, t = stage(p, defaults={"event_type": "view"})
    r = rows(t)
    assert len(r) == 7 and {x["event_type"] for x in r if not x["error"]} == {"view"}
    assert [x["error"] for x in r if x["error"]] == ["sequence: a user id with no items"]
    u4 = [x for x in r if x["user_id"] == "u4"]
    assert [x["item_id"] for x in u4] == ["i9", "i8"] and u4[1]["line"] == 4
    # A fixed-width space-separated table is not mistaken for sequences.
    table = write(tmp_path / "t.txt", "1 2 3\n4 5 6\n7 8 9\n")
    assert not get_format("sequences").sniff(table, table.read_bytes())


# --------------------------------------------------------------------------- UniSRec


@pytest.mark.shared
def test_unisrec_text_real(shared: Any) -> None:
    p = shared.path("amazon-scientific-text", "Scientific.text")
    assert detect_format(p).name == "unisrec"
    _, t = stage(p)
    assert t.num_rows == 4385 and n_errors(t) == 0 and distinct(t, "item_id") == 4385
    r = rows(t)[0]
    assert r["item_id"] == "B0000223SI" and r["brand"] == "PORTER-CABLE"
    assert (
        r["title"]
        == "PORTER-CABLE 740000801 4 1/2-Inch x 10yd 80 Grit Adhesive-Backed Sanding Roll"
    )
    assert r["description"].startswith(r["title"] + ". Industrial & Scientific")
    assert pc.sum(pc.is_null(t["title"])).as_py() == 0


def test_split_text() -> None:
    assert split_text("T. A B. Br. ") == ("T", "A B", "Br")
    assert split_text("24 Oz. Sprayer. Cats. Brand. ") == (
        "24 Oz. Sprayer. Cats. Brand",
        None,
        None,
    )
    assert split_text("Only a title.") == ("Only a title", None, None)


@pytest.mark.shared
def test_unisrec_inter_real_one_event_per_position(shared: Any) -> None:
    folder = shared.path("amazon-scientific-text")
    parts = {}
    for split in ("train", "valid", "test"):
        p = folder / f"Scientific.{split}.inter"
        assert detect_format(p).name == "unisrec"
        _, t = stage(p)
        assert n_errors(t) == 0
        parts[split] = t
    assert parts["valid"].num_rows == parts["test"].num_rows == 8442
    allev = pa.concat_tables(parts.values())
    # 8,442 first items + 34,101 train, 8,442 valid and 8,442 test targets. The README's 59,384
    # counts the test rows' (history + target), which the 50-item window cuts for 3 users.
    assert allev.num_rows == 59_427
    keys = Counter(zip(allev["user_id"].to_pylist(), allev["timestamp"].to_pylist(), strict=True))
    assert max(keys.values()) == 1  # exactly one event per (user, position)
    assert distinct(allev, "user_id") == 8442 and distinct(allev, "item_id") == 4385
    items = set(stage(folder / "Scientific.text")[1]["item_id"].to_pylist())
    assert set(allev["item_id"].to_pylist()) <= items  # ids mapped back to ASINs

    seqs: dict[str, list[tuple[datetime, str]]] = {}
    for r in rows(allev.select(["user_id", "timestamp", "item_id"])):
        seqs.setdefault(r["user_id"], []).append((r["timestamp"], r["item_id"]))
    lengths = {u: len(s) for u, s in seqs.items()}
    # Positions are 0..n-1 without gaps, and each user's test target is the last position.
    for u, s in seqs.items():
        assert sorted(ts.second + 60 * ts.minute for ts, _ in s) == list(range(lengths[u]))
    last = {
        r["user_id"]: r["timestamp"] for r in rows(parts["test"].select(["user_id", "timestamp"]))
    }
    assert all(max(ts for ts, _ in seqs[u]) == ts for u, ts in last.items())
    assert sum(min(n, 51) for n in lengths.values()) == 59_384
    assert max(lengths.values()) == 80


@pytest.mark.shared
def test_unisrec_layout_through_the_engine(shared: Any, tmp_path: Path) -> None:
    """Ingesting every file of the layout stores one event per (user, position), and ingesting
    a split file again adds nothing."""
    folder = shared.path("amazon-scientific-text")
    with Store(tmp_path / "s.duckdb") as store:
        for split in ("train", "valid", "test"):
            rep = ingest_file(store, folder / f"Scientific.{split}.inter")
            assert rep.error is None and rep.quarantined == 0 and rep.duplicates == 0
        again = ingest_file(store, folder / "Scientific.test.inter")
        assert (again.stored, again.duplicates) == (0, 8442)
        n, users, ordinal = store.conn.execute(
            "SELECT count(*), count(DISTINCT user_id), bool_and(ts_ordinal) FROM events"
        ).fetchone() or (0, 0, False)
        assert (n, users, ordinal) == (59_427, 8442, True)


def test_unisrec_layout_fixture(tmp_path: Path) -> None:
    header = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    write(tmp_path / "D.train.inter", header + "0\t5 6\t7\n0\t5\t6\n1\t8\t9\n1\t4 4\t4\n")
    write(tmp_path / "D.valid.inter", header + "0\t5 6 7\t1\n1\t8 9\t2\n")
    test = write(tmp_path / "D.test.inter", header + "0\t5 6 7 1\t3\n1\t8 9 2\tbad\textra\n")
    write(tmp_path / "D.item2index", "A5\t5\nA6\t6\nA7\t7\nA1\t1\nA3\t3\n")
    write(tmp_path / "D.user2index", "alice\t0\n")
    out = {}
    for split in ("train", "valid", "test"):
        out[split] = rows(stage(tmp_path / f"D.{split}.inter")[1])
    train = out["train"]
    alice = [(r["timestamp"].second, r["item_id"]) for r in train if r["user_id"] == "alice"]
    assert sorted(alice) == [(0, "A5"), (1, "A6"), (2, "A7")]
    # User 1's second train row does not continue 8 9: quarantined, not guessed.
    bad = [r for r in train if r["error"]]
    assert len(bad) == 1 and bad[0]["line"] == 5 and "does not continue user 1" in bad[0]["error"]
    assert [(r["user_id"], r["item_id"], r["timestamp"].second) for r in out["valid"]] == [
        ("alice", "A1", 3),
        ("1", "2", 2),
    ]
    t = out["test"]
    assert (t[0]["user_id"], t[0]["item_id"], t[0]["timestamp"].second) == ("alice", "A3", 4)
    assert t[1]["error"] == "expected 3 tab-separated fields, got 4"
    with pytest.raises(FormatError, match="id map"):
        get_format("unisrec").stage(tmp_path / "D.item2index", ReadOptions())
    # Alone, a test file gives each user's history and target.
    solo = tmp_path / "solo"
    write(solo / "E.test.inter", header + "0\t5 6 7\t3\n")
    assert [r["item_id"] for r in rows(stage(solo / "E.test.inter")[1])] == ["5", "6", "7", "3"]
    assert test.exists()


# --------------------------------------------------------------------------- Diginetica


@pytest.mark.shared
def test_diginetica_real(shared: Any) -> None:
    p = shared.path("diginetica-sample", "sample_train-item-views.csv")
    assert detect_format(p).name == "diginetica"
    src, t = stage(p)
    assert t.num_rows == 12_391 and n_errors(t) == 0
    assert distinct(t, "session_id") == 2986 and distinct(t, "item_id") == 7139
    assert pc.sum(pc.is_null(t["user_id"])).as_py() == 0
    users = t["user_id"].to_pylist()
    sessions = t["session_id"].to_pylist()
    anon = [(u, s) for u, s in zip(users, sessions, strict=True) if u.startswith("anon:")]
    assert len(anon) == 7681 and all(u == f"anon:{s}" for u, s in anon)
    assert set(t["event_type"].to_pylist()) == {"view"}
    first = rows(t)[0]
    assert first["timestamp"] == datetime(2016, 5, 9, 0, 8, 46, 309000)
    assert first["line"] == 2 and first["raw"] == "1;NA;81766;526309;2016-05-09"
    assert any("7681" in n for n in src.notes)


def test_diginetica_purchases_and_bad_rows(tmp_path: Path) -> None:
    p = write(
        tmp_path / "train-purchases.csv",
        "sessionId;userId;timeframe;eventdate;ordernumber;itemId\n"
        "150;18278;1;2016-05-09;668;9\n151;;x;2016-05-09;669;9\n152;NA;5\n",
    )
    assert detect_format(p).name == "diginetica"
    r = rows(stage(p)[1])
    assert r[0]["event_type"] == "purchase" and r[0]["user_id"] == "18278"
    assert r[1]["user_id"] == "anon:151" and r[1]["timestamp"] is None
    assert r[1]["timestamp_raw"] == "2016-05-09 +xms"
    assert r[2]["error"].startswith("expected 6 ';'-separated fields")


# --------------------------------------------------------------------------- catalogue + images


@pytest.mark.shared
def test_catalog_images_real(shared: Any) -> None:
    p = shared.path("fashion-products", "styles.csv")
    assert detect_format(p).name == "catalog-images"
    _, t = stage(p)
    assert t.num_rows == 1099 and n_errors(t) == 0 and distinct(t, "item_id") == 1099
    r = rows(t)
    assert all(x["image"] and os.path.isabs(x["image"]) and Path(x["image"]).is_file() for x in r)
    first = r[0]
    assert first["title"] == "Nike Sahara Team India Fanwear Round Neck Jersey"
    assert first["category"] == "Apparel > Topwear > Tshirts"
    assert first["image"].endswith("images/1163.jpg")
    assert json.loads(first["attributes"]) == {
        "articleType": "Tshirts",
        "baseColour": "Blue",
        "gender": "Men",
        "season": "Summer",
        "usage": "Sports",
        "year": 2011,
    }
    types = {json.loads(x["attributes"])["articleType"] for x in r}
    assert len(types) == 27


def test_catalog_images_overflow_and_missing_image(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "1.jpg").write_bytes(b"\xff\xd8\xff")
    (tmp_path / "images" / "2.png").write_bytes(b"\x89PNG")
    p = write(
        tmp_path / "styles.csv",
        "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName\n"
        "1,Men,Apparel,Topwear,Shirts,Blue,Summer,2012,Casual,Shirt, blue, slim\n"
        "2,Women,Footwear,Shoes,Heels,Red,Fall,,Party,Red heels\n"
        "3,Men,Apparel,Topwear,Shirts,White,Summer,2012,Casual,White shirt\n"
        "4,Men,Apparel\n",
    )
    src, t = stage(p)
    r = rows(t)
    assert r[0]["title"] == "Shirt, blue, slim" and r[0]["image"] == str(
        tmp_path.resolve() / "images" / "1.jpg"
    )
    assert r[1]["image"].endswith("2.png") and "year" not in json.loads(r[1]["attributes"])
    assert r[2]["image"] is None and json.loads(r[2]["attributes"])["image_missing"] is True
    assert r[3]["error"].startswith("expected 10 comma-separated fields")
    assert any("1 line(s) had unquoted commas" in n for n in src.notes)
    assert any("1 item(s) without an image" in n for n in src.notes)
    # Another catalogue beside its pictures is recognised; one naming its own images is not.
    other = write(tmp_path / "catalog.csv", "sku,title,colour\n1,Shirt,blue\n")
    assert detect_format(other).name == "catalog-images"
    assert rows(stage(other)[1])[0]["image"].endswith("1.jpg")
    own = write(tmp_path / "items.csv", "sku,title,image\n1,Shirt,http://x/1.jpg\n")
    assert not get_format("catalog-images").sniff(own, own.read_bytes())


# --------------------------------------------------------------------------- detection


@pytest.mark.shared
@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (("amazon-gift-cards", "Gift_Cards_5.json.gz"), "amazon-reviews"),
        (("amazon-gift-cards", "meta_Gift_Cards.json.gz"), "amazon-meta"),
        (("movielens-100k", "u.data"), "movielens-100k"),
        (("movielens-100k", "u3.test"), "movielens-100k"),
        (("movielens-100k", "u.item"), "movielens-100k"),
        (("movielens-100k", "u.user"), "movielens-100k"),
        (("amazon-beauty-seq", "Beauty.txt"), "sequences"),
        (("amazon-scientific-text", "Scientific.text"), "unisrec"),
        (("amazon-scientific-text", "Scientific.train.inter"), "unisrec"),
        (("amazon-scientific-text", "Scientific.item2index"), "unisrec"),
        (("diginetica-sample", "sample_train-item-views.csv"), "diginetica"),
        (("fashion-products", "styles.csv"), "catalog-images"),
    ],
)
def test_detect_format_real(shared: Any, parts: tuple[str, ...], expected: str) -> None:
    assert detect_format(shared.path(*parts)).name == expected
