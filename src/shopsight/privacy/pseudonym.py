"""Keyed pseudonyms live in the data layer (ingest needs them): :mod:`shopsight.data.pseudonym`.

This name stays for code written against it.
"""

from shopsight.data.pseudonym import *  # noqa: F403
from shopsight.data.pseudonym import __all__  # noqa: F401
