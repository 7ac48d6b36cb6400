"""The personas step of ``shopsight demo``: build, save beside the model, write the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shopsight.data.store import Store
from shopsight.personas.core import build_personas
from shopsight.personas.report import write_report


def demo_step(store: Store, out_dir: Path) -> dict[str, Any]:
    """What ``shopsight demo`` runs for personas: build, save, write the report; a summary.

    Writes ``<out_dir>/personas/`` (the saved object) and ``<out_dir>/personas.html``.
    """
    out = Path(out_dir)
    p = build_personas(store)
    saved = p.save(out / "personas")
    report = write_report(p, out / "personas.html", title="Synthetic shop personas")
    return {"report": str(report), "saved": str(saved), **p.summary()}
