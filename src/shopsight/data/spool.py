"""Where live events wait before ingest: a private folder beside the store.

A shared temporary folder would leave raw ids readable by other local users and behind after
a kill; beside the store, `forget` knows where to look.
"""

from __future__ import annotations

import os
from pathlib import Path


def spool_dir(store_path: str | Path) -> Path:
    """The store's spool folder (``<store>.spool``), created owner-only (0700) if missing."""
    path = Path(store_path)
    folder = path.with_name(path.name + ".spool")
    folder.mkdir(mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    return folder
