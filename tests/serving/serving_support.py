"""Helpers for the serving tests: fake encoder, free ports, real uvicorn servers, auth.

Servers are real: either a ``shopsight serve`` subprocess (end-to-end, CLI included) or
``uvicorn.Server`` on a background thread of this process (when a test injects fakes for stages
built elsewhere). Both listen on a free loopback port and are talked to over HTTP with httpx.
"""

from __future__ import annotations

import hashlib
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from shopsight.features.base import Encoded

TOKEN = "test-token-0123456789abcdef"


class WordHashEncoder:
    """Deterministic text encoder: hashed bag of words (items sharing words are similar)."""

    name = "wordhash"
    version = "1"
    dim = 64

    def content_key(self, item: object) -> bytes | None:
        return item.encode() if isinstance(item, str) and item else None

    def encode(self, inputs: Sequence[object]) -> Encoded:
        vecs = np.zeros((len(inputs), self.dim), np.float32)
        mask = np.zeros(len(inputs), bool)
        for i, x in enumerate(inputs):
            if isinstance(x, str) and x.strip():
                for w in x.lower().split():
                    h = int.from_bytes(hashlib.sha256(w.encode()).digest()[:4], "little")
                    vecs[i, h % self.dim] += 1.0
                mask[i] = True
        return Encoded(vecs, mask, {"encoded": int(mask.sum())})


@dataclass
class Shop:
    store: Path
    model: Path
    model2: Path
    root: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            out = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"server exited with {proc.returncode}: {out[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout}s")


class ThreadServer:
    """A real uvicorn server for an app built in this process (for injected fakes)."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        wait_ready(self.url, timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


def copy_store(shop: Shop, dest: Path) -> Path:
    import shutil

    dest.mkdir(parents=True, exist_ok=True)
    store = dest / "shop.duckdb"
    shutil.copy(shop.store, store)
    feats = Path(str(shop.store) + ".features")
    shutil.copytree(feats, Path(str(store) + ".features"), dirs_exist_ok=True)
    return store


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}
