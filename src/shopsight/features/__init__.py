"""Features: text, image and behaviour encoders, a content-addressed cache, and fusion.

Heavy dependencies (torch, transformers, onnxruntime) load only when an encoder or a fusion
module is used; the fusion classes are imported on first access.
"""

from __future__ import annotations

from typing import Any

from shopsight.features.base import Encoded, Encoder, default_cache_dir
from shopsight.features.behavior import FeatureTable, item_features, user_features
from shopsight.features.cache import CachedEncoded, FeatureCache
from shopsight.features.image import ImageEncoder, preprocess_image, resolve_image
from shopsight.features.pipeline import (
    FeaturizeReport,
    ItemFeatures,
    features_dir,
    featurize,
    load_item_features,
)
from shopsight.features.text import TextEncoder, TfidfEncoder, clean_text, compose_item_text

_FUSION = ("ConcatFusion", "Fused", "GatedAttentionFusion", "ProjectionFusion")


def __getattr__(name: str) -> Any:
    if name in _FUSION:  # importing torch costs seconds: only when fusion is wanted
        from shopsight.features import fusion

        return getattr(fusion, name)
    raise AttributeError(f"module 'shopsight.features' has no attribute {name!r}")


__all__ = [
    "CachedEncoded",
    "ConcatFusion",
    "Encoded",
    "Encoder",
    "FeatureCache",
    "FeatureTable",
    "FeaturizeReport",
    "Fused",
    "GatedAttentionFusion",
    "ImageEncoder",
    "ItemFeatures",
    "ProjectionFusion",
    "TextEncoder",
    "TfidfEncoder",
    "clean_text",
    "compose_item_text",
    "default_cache_dir",
    "features_dir",
    "featurize",
    "item_features",
    "load_item_features",
    "preprocess_image",
    "resolve_image",
    "user_features",
]
