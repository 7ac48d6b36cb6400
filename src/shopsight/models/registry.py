"""Model registry: ``--model NAME`` finds the class.

Built-in models are listed here by module and loaded on first use (so ``import shopsight``
stays light); a model defined elsewhere (a private one, a test's) joins with :func:`register`.
Model modules do not import the registry: it is the one place that knows them all.
"""

from __future__ import annotations

import importlib
from typing import Any, TypeVar

from shopsight.errors import InputError
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
    "dp_bpr": "shopsight.models.dp",
    "dp": "shopsight.models.dp_ease",
    "quantized": "shopsight.models.quantize",
    "biasedmf": "shopsight.models.rating",
    "bayesmf": "shopsight.models.rating",
}


def register(cls: T) -> T:
    """Class decorator: make a Recommender available under ``cls.name``."""
    _MODELS[cls.name] = cls
    return cls


def _builtin(name: str) -> type[Recommender] | None:
    module = importlib.import_module(BUILTIN[name])
    for value in vars(module).values():
        if (
            isinstance(value, type)
            and issubclass(value, Recommender)
            and value.__dict__.get("name") == name
            and value.__module__ == module.__name__
        ):
            return value
    return None


def get_model_class(name: str) -> type[Recommender]:
    if name not in _MODELS and name in BUILTIN:
        klass = _builtin(name)
        if klass is not None:
            _MODELS[name] = klass
    if name not in _MODELS:
        raise InputError(f"unknown model {name!r} (known: {', '.join(available_models())})")
    return _MODELS[name]


def available_models() -> list[str]:
    return sorted(set(BUILTIN) | set(_MODELS))


def create_model(name: str, **params: Any) -> Recommender:
    """A model by registry name with its documented defaults, overridden by ``params``."""
    return get_model_class(name)(**params)


Recommender._resolver = get_model_class
