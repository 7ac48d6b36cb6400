"""Recommenders behind one protocol (see base.py), found by name through the registry.

Importing the package installs the registry as the way a saved model's name becomes its class.
"""

from shopsight.models import registry as _registry  # noqa: F401
