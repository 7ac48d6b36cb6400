"""A model folder as every front end loads it: the recommender, its predictor, its personas.

``shopsight train`` writes ``<model>/``; ``shopsight predict fit`` adds ``<model>/predictor/``
and ``shopsight personas --save`` (or the demo) ``<model>/personas/``. The CLI and the HTTP API
load them here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from shopsight.models.artifact import ModelArtifact, load_artifact

if TYPE_CHECKING:
    from shopsight.personas.core import Personas
    from shopsight.prediction.predictor import FunnelPredictor

PERSONAS_SUBDIR = "personas"


def load_model(model_dir: str | Path) -> ModelArtifact:
    """The trained recommender with its id maps (MissingFileError when not a model folder)."""
    return load_artifact(model_dir)


def load_predictor(model_dir: str | Path | None) -> FunnelPredictor | None:
    """The funnel predictor saved beside a recommender (``<model_dir>/predictor/``), if any."""
    from shopsight.prediction.predictor import PREDICTOR_SUBDIR, FunnelPredictor

    if model_dir is None or not (Path(model_dir) / PREDICTOR_SUBDIR).is_dir():
        return None
    return FunnelPredictor.load(Path(model_dir) / PREDICTOR_SUBDIR)


def load_personas(model_dir: str | Path | None) -> Personas | None:
    """The personas saved beside a recommender (``<model_dir>/personas/``), if any."""
    from shopsight.personas.core import Personas

    if model_dir is None or not (Path(model_dir) / PERSONAS_SUBDIR).is_dir():
        return None
    return Personas.load(Path(model_dir) / PERSONAS_SUBDIR)


@dataclass
class ModelFolder:
    path: Path
    artifact: ModelArtifact
    predictor: FunnelPredictor | None
    personas: Personas | None


def load_model_folder(model_dir: str | Path) -> ModelFolder:
    """Everything a model folder holds."""
    d = Path(model_dir)
    return ModelFolder(d, load_model(d), load_predictor(d), load_personas(d))


__all__ = [
    "PERSONAS_SUBDIR",
    "ModelFolder",
    "load_model",
    "load_model_folder",
    "load_personas",
    "load_predictor",
]
