"""Progress of long steps (ingest per file, featurize, training epochs, evaluation runs,
personas, tuning trials): one small API, drawn with rich on **stderr** only.

It is quiet when stderr is not a terminal (logs, CI, pipes), under ``shopsight --quiet`` or
``SHOPSIGHT_QUIET=1``, so ``--json`` output on stdout always stays one parseable object.
Nested steps share one live display (rich allows only one at a time)::

    with task("featurize", total=n_items) as t:
        for batch in batches:
            ...
            t.advance(len(batch), info="text")
            t.log("a line that stays above the bar")
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

_state: dict[str, Any] = {"quiet": None, "progress": None, "depth": 0}


def set_quiet(quiet: bool | None) -> None:
    """Force progress off (``True``), on when stderr is a terminal (``None``: the default)."""
    _state["quiet"] = quiet


def enabled() -> bool:
    """Whether progress is drawn: not quiet, and stderr is an interactive terminal."""
    if _state["quiet"] or os.environ.get("SHOPSIGHT_QUIET", "").strip() not in ("", "0"):
        return False
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):
        return False


class Task:
    """One step's bar: :meth:`advance` by units done, with a short ``info`` text (a metric)."""

    def __init__(self, progress: Any = None, task_id: Any = None) -> None:
        self._progress = progress
        self._id = task_id

    def advance(self, n: float = 1, info: str | None = None) -> None:
        if self._progress is not None:
            fields = {} if info is None else {"info": info}
            self._progress.update(self._id, advance=n, **fields)

    def log(self, text: str) -> None:
        """A line printed above the live bars that stays after they are gone (e.g. an epoch's
        loss, validation metric and seconds); nothing when progress is off."""
        if self._progress is not None:
            self._progress.console.print(text, highlight=False, markup=False)

    def update(
        self, *, total: float | None = None, info: str | None = None, description: str | None = None
    ) -> None:
        if self._progress is not None:
            kw: dict[str, Any] = {}
            if total is not None:
                kw["total"] = total
            if info is not None:
                kw["info"] = info
            if description is not None:
                kw["description"] = description
            self._progress.update(self._id, **kw)


def _new_progress() -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
        console=Console(stderr=True),
        transient=True,
    )


@contextmanager
def task(description: str, total: float | None = None) -> Iterator[Task]:
    """A progress bar for one step (``total=None``: a spinner with a count)."""
    if not enabled():
        yield Task()
        return
    outer = _state["progress"] is None
    if outer:
        _state["progress"] = _new_progress()
        _state["progress"].start()
    progress = _state["progress"]
    _state["depth"] += 1
    task_id = progress.add_task(description, total=total, info="")
    try:
        yield Task(progress, task_id)
    finally:
        _state["depth"] -= 1
        progress.remove_task(task_id)
        if outer:
            progress.stop()
            _state["progress"] = None


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a bar (``total`` defaults to ``len(items)`` when it has one)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with task(description, total) as t:
        for x in items:
            yield x
            t.advance()


__all__ = ["Task", "enabled", "set_quiet", "task", "track"]
