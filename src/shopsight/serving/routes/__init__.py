"""The API's routers, one per concern; :func:`include_routers` adds them all to an app."""

from __future__ import annotations

from fastapi import FastAPI

from shopsight.serving.routes import (
    admin,
    docs,
    events,
    health,
    login,
    online,
    personas,
    predict,
    recommend,
    similar,
)


def include_routers(app: FastAPI) -> None:
    for module in (
        health,
        recommend,
        similar,
        predict,
        personas,
        events,
        admin,
        online,
        login,
        docs,
    ):
        app.include_router(module.router)
    recommend.install_fast_path(app)
