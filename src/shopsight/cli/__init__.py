"""The ``shopsight`` command line: a thin layer over the application layer and the library.

Each command group lives in its own module with its own Typer (:mod:`.data`, :mod:`.training`,
...); they are added here without a name, so every command keeps its top-level name. Shared
options, output and the error rule are in :mod:`._common`.
"""

from __future__ import annotations

import typer

from shopsight.cli import (
    data,
    demo,
    evaluation,
    explain,
    features,
    live,
    personas,
    prediction,
    privacy,
    serving,
    training,
)

app = typer.Typer(
    name="shopsight",
    help="From raw shop data to clean store, features, models, personas and a served API.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _options(
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="No progress bars (they are drawn on stderr, on a terminal)."
    ),
) -> None:
    from shopsight.progress import set_quiet

    set_quiet(True if quiet else None)


for _group in (data, demo, training, features, evaluation, explain, personas):
    app.add_typer(_group.app)
app.add_typer(prediction.app, name="predict")
for _group in (privacy, serving, live):
    app.add_typer(_group.app)


def main() -> None:  # pragma: no cover - entry point
    app()


__all__ = ["app", "main"]
