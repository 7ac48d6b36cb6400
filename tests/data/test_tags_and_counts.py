"""MovieLens tags are annotations (``tag`` events), not reviews; merges and drops are counted."""

from __future__ import annotations

from pathlib import Path

from shopsight.data.clean import clean_store
from shopsight.data.dataset import Dataset
from shopsight.data.ingest import derived_lines, ingest_files
from shopsight.data.store import Store


def _write(p: Path, text: str) -> Path:
    p.write_text(text, encoding="utf-8")
    return p


def test_tags_survive_cleaning_and_stay_out_of_the_interactions(tmp_path: Path) -> None:
    ratings = _write(
        tmp_path / "ratings.csv",
        "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.5,964981247\n2,1,3.0,964981250\n",
    )
    # one sitting, three words for one movie (ml-latest does this all the time), plus an exact
    # duplicate line, which is the only one cleaning may drop
    tags = _write(
        tmp_path / "tags.csv",
        "userId,movieId,tag,timestamp\n1,1,funny,1445714994\n1,1,pixar,1445714994\n"
        "1,1,classic,1445714995\n2,1,funny,1445715000\n2,1,funny,1445715000\n",
    )
    with Store(tmp_path / "s.duckdb") as store:
        report = ingest_files(store, [ratings, tags])
        assert report.ok
        assert store.count("reviews") == 0  # tags are not reviews
        n_tags = store.arrow("SELECT count(*) FROM events WHERE event_type = 'tag'").column(0)
        assert n_tags[0].as_py() == 4  # the duplicate line is a duplicate at ingest already
        cleaned = clean_store(store)
        assert cleaned.event_types["tag"] == [4, 4]
        assert cleaned.event_types["rate"] == [3, 3]
        ds = Dataset.from_store(store)
        assert len(ds) == 3 and "tag" not in ds.meta["event_types"]
        with_tags = Dataset.from_store(store, event_types=["rate", "tag"])
        assert len(with_tags) == 7


def test_reviews_merged_into_events_are_reported(tmp_path: Path) -> None:
    rows = [
        '{"overall": 5.0, "reviewerID": "A1", "asin": "B1", "reviewText": "great", '
        '"unixReviewTime": 1500000000, "verified": true}',
        '{"overall": 5.0, "reviewerID": "A1", "asin": "B1", "reviewText": "great again", '
        '"unixReviewTime": 1500000000, "verified": true}',
        '{"overall": 4.0, "reviewerID": "A2", "asin": "B1", "reviewText": "ok", '
        '"unixReviewTime": 1500000100, "verified": true}',
    ]
    path = _write(tmp_path / "Toys_5.json", "\n".join(rows) + "\n")
    with Store(tmp_path / "s.duckdb") as store:
        report = ingest_files(store, [path])
        assert report.ok, report.to_dict()
        d = report.files[0].derived["review events"]
        assert d == {"reviews": 3, "events": 2, "merged": 1, "no_timestamp": 0}
        assert store.count("events") == 2
        (line,) = derived_lines(report)
        assert "3 new reviews -> 2 review events" in line and "1 merged" in line
