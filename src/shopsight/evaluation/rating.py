"""The rating models live with the other recommenders: :mod:`shopsight.models.rating`."""

from shopsight.models.rating import *  # noqa: F403
from shopsight.models.rating import __all__  # noqa: F401
