"""One interaction sequence per line: ``user item item ...`` in time order, no real times.

The layout of the S3-Rec / ICLRec / CL4SRec benchmark files (``Beauty.txt``, ``Sports_and_
Outdoors.txt``, ``Yelp.txt``...). Each item on a line becomes one event:

- ``event_type`` is ``purchase`` unless ``--default event_type=...`` says otherwise. These files
  are made from Amazon reviews, and a review is left by someone who bought the product; calling
  them views would claim browsing that was never observed.
- The source has order but no time: the k-th item of a user's line (k = 0, 1, ...) gets
  timestamp 2000-01-01 00:00:00 + k seconds with ``ts_ordinal`` set, so per-user order survives,
  validation passes, and later stages know not to read the times as real (no global time split,
  no recency in days).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from shopsight.data.formats import ReadOptions, register
from shopsight.data.formats._util import (
    Payload,
    base_name,
    check_text_file,
    clip,
    event_batches,
    head_lines,
    iter_lines,
)
from shopsight.data.staging import FormatError, StagedSource

_TOKEN = re.compile(r"[\w.:\-]+")
_TABULAR = (".csv", ".tsv", ".json", ".jsonl", ".ndjson", ".parquet", ".inter", ".item", ".user")
DEFAULT_EVENT_TYPE = "purchase"


def _is_sequence_line(text: str) -> bool:
    tokens = text.split(" ")
    return len(tokens) >= 2 and all(_TOKEN.fullmatch(t) for t in tokens)


def _is_id_line(text: str) -> bool:
    return all(_TOKEN.fullmatch(t) for t in text.split(" "))


def event_raw(text: str, user: str, item: str, k: int, n: int) -> str:
    """Quarantine text for the k-th event of a line: the line itself when short, else a pointer
    into it (a long line repeated for each of its items would make staging quadratic)."""
    if len(text) <= 200:
        return text
    return f"{user} ... {item} (item {k + 1} of {n} on this line)"


class UserSequences:
    name = "sequences"
    description = "one line per user 'user item item ...' (S3-Rec/ICLRec layout), ordinal times"
    # Content-only detection is weaker than a header or a file name: run late.
    priority = 60

    def sniff(self, path: Path, head: bytes) -> bool:
        if base_name(path).endswith(_TABULAR):
            return False
        lines = [t.strip() for t in head_lines(head, limit=50)]
        # Every line is ids separated by single spaces (a user may have no items left after
        # filtering); most carry items.
        if len(lines) < 2 or not all(_is_id_line(t) for t in lines):
            return False
        if 2 * sum(_is_sequence_line(t) for t in lines) < len(lines):
            return False
        # A table has one width; sequences vary in length from user to user.
        return len({len(t.split(" ")) for t in lines}) > 1

    def stage(self, path: Path, options: ReadOptions) -> list[StagedSource]:
        head = check_text_file(path)
        lines = [t.strip() for t in head_lines(head, limit=50)]
        if not lines or not any(_is_sequence_line(t) for t in lines):
            raise FormatError(
                f"{path}: expected lines of space-separated ids 'user item item ...', "
                f"first line is {clip(lines[0])[:60]!r}"
                if lines
                else f"{path}: empty file, expected lines 'user item item ...'"
            )
        event_type = options.defaults.get("event_type", DEFAULT_EVENT_TYPE)
        notes: list[str] = [
            f"event_type={event_type}; timestamps are ordinal (2000-01-01 + position seconds)"
        ]
        batches = event_batches(self._records(path), event_type)
        return [StagedSource("events", batches=batches, notes=notes)]

    @staticmethod
    def _records(path: Path) -> Iterator[tuple[int, str, Payload]]:
        for ln in iter_lines(path):
            if ln.error is not None:
                yield ln.number, ln.text, ln.error
                continue
            tokens = ln.text.split()
            if not tokens:
                continue
            if len(tokens) < 2:
                yield ln.number, ln.text, "sequence: a user id with no items"
                continue
            user, items = tokens[0], tokens[1:]
            for k, item in enumerate(items):
                yield ln.number, event_raw(ln.text, user, item, k, len(items)), (user, item, k)


register(UserSequences())

__all__ = ["DEFAULT_EVENT_TYPE", "UserSequences"]
