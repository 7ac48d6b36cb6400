"""shopsight.privacy: pseudonymous ids, the right to be forgotten, differentially private training.

- :mod:`~shopsight.data.pseudonym`: keyed HMAC pseudonyms (:class:`Pseudonymizer`), the key
  kept outside the store; ingest takes ``pseudonymizer=`` to store pseudonyms only.
- :mod:`~shopsight.privacy.exports`: pseudonymised exports/reports, converting a raw-id store.
- :mod:`~shopsight.privacy.forget`: :func:`forget_user` removes a user everywhere, with audit.
- :mod:`~shopsight.models.dp`: DP-SGD training (Opacus) with the epsilon spent
  (``DPConfig``, ``DPBPR``; imported lazily: it needs torch).
"""

from __future__ import annotations

from typing import Any

from shopsight.data.pseudonym import Pseudonymizer, PseudonymKeyError, is_pseudonym, load_key
from shopsight.privacy.forget import audit_log, forget_user, forget_users

__all__ = [
    "DPBPR",
    "DPConfig",
    "PseudonymKeyError",
    "Pseudonymizer",
    "audit_log",
    "forget_user",
    "forget_users",
    "is_pseudonym",
    "load_key",
]


def __getattr__(name: str) -> Any:
    if name in ("DPBPR", "DPConfig"):
        from shopsight.privacy import dp

        return getattr(dp, name)
    raise AttributeError(f"module 'shopsight.privacy' has no attribute {name!r}")
