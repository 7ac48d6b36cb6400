"""DP-SGD BPR (``dp_bpr``) lives with the other recommenders in :mod:`shopsight.models.dp`."""

from shopsight.models.dp import *  # noqa: F403
from shopsight.models.dp import __all__  # noqa: F401
