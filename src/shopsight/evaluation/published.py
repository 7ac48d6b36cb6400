"""Which dataset a store holds, and whether a protocol's published figures compare with it.

A published figure compares with ours only on the same protocol *and* the same dataset. The
protocol is fixed by the experiment; the dataset is recognised here in one of two ways:

- by fingerprint: the sha256 of the raw file(s) every interaction was ingested from (the
  ``ingest_log`` records it) and the number of interactions, against :data:`KNOWN_DATASETS`;
  a filtered or extended copy (another interaction count, events from other files) is not the
  published dataset;
- by a declared name (``evaluate --dataset-name``), for a dataset we hold no fingerprint of.

:func:`published_block` returns what the result records: the dataset's name and how it was
recognised, the published rows, and whether they are comparable (else why not), so that every
front end shows published figures beside ours only when they compare, and always names the
dataset each figure is on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from shopsight.data.store import Store
    from shopsight.evaluation.protocols import Protocol


@dataclass(frozen=True)
class KnownDataset:
    """A public dataset that published figures are on, and how to recognise its files."""

    name: str
    aliases: tuple[str, ...]
    files: Mapping[str, str]  # sha256 of a raw interaction file -> its usual name
    interactions: int


KNOWN_DATASETS: Final[tuple[KnownDataset, ...]] = (
    KnownDataset(
        "MovieLens-100K",
        ("ml-100k", "ml100k", "movielens-100k", "movielens100k"),
        {"06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490": "u.data"},
        100_000,
    ),
    KnownDataset(
        "Amazon Beauty",
        ("beauty", "amazon-beauty", "amazon-beauty-seq", "beauty-seq"),
        {"226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8": "Beauty.txt"},
        198_502,
    ),
    KnownDataset("Amazon Baby", ("baby", "amazon-baby"), {}, 0),
)


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def known_dataset(name: str) -> KnownDataset | None:
    """The known dataset a (declared) name refers to, by its name or an alias."""
    n = _norm(name)
    for ds in KNOWN_DATASETS:
        if n == _norm(ds.name) or n in {_norm(a) for a in ds.aliases}:
            return ds
    return None


@dataclass(frozen=True)
class DatasetIdentity:
    """What the evaluated data is: ``name`` (``None``: not recognised), ``how`` it was
    recognised (``fingerprint`` / ``declared`` / ``none``), and a one-line ``detail``."""

    name: str | None
    how: str
    detail: str

    @property
    def label(self) -> str:
        if self.name is None:
            return "an unrecognised dataset"
        return self.name + (" (declared)" if self.how == "declared" else "")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "recognised_by": self.how, "detail": self.detail}


def identify_declared(declared: str) -> DatasetIdentity:
    """A dataset named by the user (a known dataset's alias gives its canonical name)."""
    ds = known_dataset(declared)
    return DatasetIdentity(
        ds.name if ds else declared.strip(), "declared", "--dataset-name " + declared.strip()
    )


def identify_store(store: Store, interactions: int, declared: str | None = None) -> DatasetIdentity:
    """Recognise the store's interaction data (see the module docstring); a declared name
    wins over the fingerprint."""
    if declared:
        return identify_declared(declared)
    try:
        rows = store.conn.execute(
            """SELECT DISTINCT l.fingerprint FROM (SELECT DISTINCT source FROM events) e
               LEFT JOIN ingest_log l USING (source)"""
        ).fetchall()
    except Exception as exc:  # a store without lineage: unrecognised, not a failure
        return DatasetIdentity(None, "none", f"no ingest log: {str(exc).splitlines()[0]}")
    prints = {r[0] for r in rows}
    for ds in KNOWN_DATASETS:
        if not ds.files or not prints or not prints <= set(ds.files):
            continue
        if interactions != ds.interactions:
            return DatasetIdentity(
                None,
                "none",
                f"{'/'.join(ds.files.values())} of {ds.name} with {interactions:,} interactions "
                f"(the published dataset has {ds.interactions:,}): filtered or extended",
            )
        return DatasetIdentity(
            ds.name,
            "fingerprint",
            f"sha256 of {'/'.join(ds.files.values())}, {interactions:,} rows",
        )
    return DatasetIdentity(None, "none", "no known dataset's file fingerprint")


def published_block(protocol: Protocol, identity: DatasetIdentity) -> dict[str, Any]:
    """The published figures of ``protocol`` and whether they compare with this run."""
    on = protocol.published_on
    rows = {k: dict(v) for k, v in protocol.published.items()}
    if not rows:
        return {"on": on or None, "comparable": False, "reason": "no published figures", "rows": {}}
    target = known_dataset(on) if on else None
    same = identity.name is not None and (
        _norm(identity.name) == _norm(on)
        or (target is not None and known_dataset(identity.name) is target)
    )
    if same:
        reason = f"same protocol, same dataset ({identity.how})"
    elif identity.name is None:
        reason = f"this run is on {identity.label} ({identity.detail})"
    else:
        reason = f"this run is on {identity.label}"
    return {"on": on or None, "comparable": bool(same), "reason": reason, "rows": rows}


__all__ = [
    "KNOWN_DATASETS",
    "DatasetIdentity",
    "KnownDataset",
    "identify_declared",
    "identify_store",
    "known_dataset",
    "published_block",
]
