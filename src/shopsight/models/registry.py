"""Model registry: ``--model NAME`` finds the class; each model module registers itself."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, TypeVar

from shopsight.errors import InputError

if TYPE_CHECKING:
    from shopsight.models.base import Recommender

T = TypeVar("T", bound="type[Recommender]")

_MODELS: dict[str, type[Recommender]] = {}

# name -> module that defines it (imported lazily so `import shopsight` stays light).
BUILTIN: dict[str, str] = {
    "popularity": "shopsight.models.popularity",
    "itemknn": "shopsight.models.itemknn",
    "ease": "shopsight.models.ease",
    "als": "shopsight.models.mf",
    "bpr": "shopsight.models.mf",
    "lightgcn": "shopsight.models.lightgcn",
    "vbpr": "shopsight.models.vbpr",
    "freedom": "shopsight.models.freedom",
    "sasrec": "shopsight.models.sasrec",
    "dp_bpr": "shopsight.privacy.dp",
    "dp": "shopsight.models.dp_ease",
    "quantized": "shopsight.models.quantize",
}


def register(cls: T) -> T:
    """Class decorator: make a Recommender available under ``cls.name``."""
    _MODELS[cls.name] = cls
    return cls


def get_model_class(name: str) -> type[Recommender]:
    if name not in _MODELS and name in BUILTIN:
        importlib.import_module(BUILTIN[name])
    if name not in _MODELS:
        raise InputError(f"unknown model {name!r} (known: {', '.join(available_models())})")
    return _MODELS[name]


def available_models() -> list[str]:
    return sorted(set(BUILTIN) | set(_MODELS))


def create_model(name: str, **params: Any) -> Recommender:
    """A model by registry name with its documented defaults, overridden by ``params``."""
    return get_model_class(name)(**params)
