"""A/B tests: several model folders served side by side, users split by a keyed hash.

``serve --variant ease=models/ease --variant control=models/pop --split 50/50`` loads both
deployments; each user is assigned to a variant by HMAC-SHA256 of the user id under the
pseudonymisation key and the experiment's name (its variant names), mapped to [0, 1) and cut
by the split. The assignment is sticky (same user, same variant, across restarts and worker
processes) and needs no state; it cannot be predicted or steered without the key. Every
served list is logged with its variant (``shopsight.serving.impressions``), and
``shopsight online-report`` compares them.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shopsight.errors import InputError
from shopsight.serving.state import Deployment

__all__ = ["Experiment", "VariantSpec", "VariantsError", "load_experiment", "parse_variants"]


class VariantsError(InputError):
    """A malformed --variant / --split."""


@dataclass(frozen=True)
class VariantSpec:
    name: str
    model_dir: Path
    share: float


def parse_variants(specs: Sequence[str], split: str | None = None) -> list[VariantSpec]:
    """``["a=dir", "b=dir"]`` and ``"50/50"`` (default: equal shares) -> specs."""
    out: list[tuple[str, Path]] = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        name = name.strip()
        if not sep or not name or not path.strip():
            raise VariantsError(f"--variant {spec!r}: expected NAME=MODEL_DIR")
        if not name.replace("-", "").replace("_", "").isalnum():
            raise VariantsError(f"--variant {spec!r}: name may hold letters, digits, - and _")
        if name in {n for n, _ in out}:
            raise VariantsError(f"--variant {name}: given twice")
        out.append((name, Path(path.strip())))
    if len(out) < 2:
        raise VariantsError("--variant: an A/B test needs at least two variants")
    if split is None:
        shares = [1.0] * len(out)
    else:
        try:
            shares = [float(x) for x in split.split("/")]
        except ValueError:
            raise VariantsError(f"--split {split!r}: expected numbers like 50/50") from None
        if len(shares) != len(out):
            raise VariantsError(f"--split {split!r}: {len(out)} variants need {len(out)} shares")
        if any(s <= 0 for s in shares):
            raise VariantsError(f"--split {split!r}: every share must be positive")
    total = sum(shares)
    return [VariantSpec(n, p, s / total) for (n, p), s in zip(out, shares, strict=True)]


@dataclass
class Experiment:
    """Loaded variants and the assignment rule; ``default`` answers lists without a user."""

    specs: list[VariantSpec]
    deployments: dict[str, Deployment]
    key: bytes
    _names: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._salt = ("|".join(s.name for s in self.specs)).encode()
        cut = 0.0
        self._cuts: list[tuple[float, str]] = []
        for s in self.specs:
            cut += s.share
            self._cuts.append((cut, s.name))
        self._names = {id(d): n for n, d in self.deployments.items()}

    @property
    def default(self) -> Deployment:
        return self.deployments[self.specs[0].name]

    def assign(self, user_key: str) -> str:
        """The variant of a user: sticky, stateless, keyed."""
        mac = hmac.new(self.key, self._salt + b"\x00" + user_key.encode(), hashlib.sha256)
        u = int.from_bytes(mac.digest()[:8], "big") / 2.0**64
        for cut, name in self._cuts:
            if u < cut:
                return name
        return self._cuts[-1][1]

    def deployment_for(self, user_key: str) -> Deployment:
        return self.deployments[self.assign(user_key)]

    def name_of(self, dep: Deployment) -> str | None:
        return self._names.get(id(dep))

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "variant": s.name,
                "share": round(s.share, 6),
                "model": self.deployments[s.name].model.name,
                "version": self.deployments[s.name].version,
                "model_dir": str(s.model_dir),
            }
            for s in self.specs
        ]


def load_experiment(
    specs: Sequence[VariantSpec],
    load: Callable[[Path], Deployment],
    key: bytes | None = None,
) -> Experiment:
    """Load every variant's deployment with ``load`` (in parallel threads) into an experiment."""
    if key is None:
        from shopsight.data.pseudonym import load_key

        key = load_key()
    deps: dict[str, Deployment] = {}
    errors: dict[str, BaseException] = {}

    def one(spec: VariantSpec) -> None:
        try:
            deps[spec.name] = load(spec.model_dir)
        except BaseException as exc:
            errors[spec.name] = exc

    threads = [threading.Thread(target=one, args=(s,)) for s in specs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        name, exc = next(iter(errors.items()))
        raise VariantsError(f"--variant {name}: cannot load its model: {exc}") from exc
    return Experiment(list(specs), deps, key)
