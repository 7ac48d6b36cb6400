"""Plain ASGI middleware (cheaper than Starlette's ``BaseHTTPMiddleware`` on the hot path).

- :class:`MetricsMiddleware`: request counts and latency histograms per route *template*
  (``/recommend/{user_id}``, never the raw path: bounded label cardinality), in a registry
  owned by the app so several apps in one process do not share counters.
- :class:`BodyLimitMiddleware`: refuses bodies over ``max_bytes`` with 413, from the
  ``Content-Length`` header or, for chunked bodies, while reading.
"""

from __future__ import annotations

import json
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "shopsight_requests",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "shopsight_request_seconds",
            "Request latency (server side, first byte in to last byte out).",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.model_info = Gauge(
            "shopsight_model_info",
            "The model being served (value 1 on the current version).",
            ["model", "version"],
            registry=self.registry,
        )
        self.live_users = Gauge(
            "shopsight_live_users", "Users with live state in memory.", registry=self.registry
        )
        self.events = Counter(
            "shopsight_events",
            "Live events by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.reloads = Counter(
            "shopsight_reloads", "Model reloads by outcome.", ["outcome"], registry=self.registry
        )

    def set_model(self, model: str, version: str) -> None:
        self.model_info.clear()
        self.model_info.labels(model=model, version=version).set(1)


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [500]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.requests.labels(template, method, str(status[0])).inc()
            self.metrics.latency.labels(template, method).observe(time.perf_counter() - t0)


class _TooLarge(Exception):
    pass


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _reject(self, send: Send) -> None:
        body = json.dumps(
            {"error": "payload_too_large", "detail": f"request body over {self.max_bytes} bytes"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    await self._reject(send)
                    return
        seen = [0]
        started = [False]

        async def limited_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                seen[0] += len(message.get("body", b""))
                if seen[0] > self.max_bytes:
                    raise _TooLarge()
            return message

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                started[0] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, send_wrapper)
        except _TooLarge:
            if not started[0]:
                await self._reject(send)
