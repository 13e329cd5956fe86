"""Prometheus metrics of the store at ``GET /metrics`` (admin scope), with prometheus-client.

=====================================================  =========  ============================
name                                                   type       what
=====================================================  =========  ============================
``crlhf_store_request_duration_seconds``               histogram  per method, route, status
``crlhf_store_ratings_ingested_total``                 counter    line ratings newly stored
``crlhf_store_review_tasks_served_total``              counter    review tasks handed out
``crlhf_store_export_lag_seconds``                     gauge      age of the oldest rating no
                                                                  aggregation run has seen
``crlhf_store_ratings_pending_export``                 gauge      ratings newer than the
                                                                  latest aggregation run
=====================================================  =========  ============================

Requests are counted by a pure ASGI middleware that reads the route template (not the raw
path, which would make one series per adapter version) and, for ``POST /v1/ratings``, the
``stored`` count of the reply, so the routes need no instrumentation of their own. The two
gauges are computed from the database at scrape time: they are right with several store
processes behind a proxy, where in-process counters are per process (sum them in PromQL).
Each app has its own registry, so several apps in one process (tests) do not collide.

Scrape with the admin token: ``authorization: {credentials_file: admin.token}``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crlhf_store.db import Database
from crlhf_store.deps import require, strict_query
from crlhf_store.models import AggregationRun, LineRating
from crlhf_store.routes import AUTH
from crlhf_store.tokens import Principal

__all__ = ["MetricsMiddleware", "StoreMetrics", "instrument"]

log = logging.getLogger("crlhf_store.metrics")

RATINGS_PATH = "/v1/ratings"
REVIEW_PATH = "/v1/review/next"


class StoreMetrics:
    """The store's collectors, in a registry of their own."""

    def __init__(self, db: Database | None = None) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "crlhf_store_request_duration_seconds",
            "Time to answer an HTTP request",
            ("method", "route", "status"),
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.ratings = Counter(
            "crlhf_store_ratings_ingested",
            "Line ratings newly stored (duplicates of a retried batch not counted)",
            registry=self.registry,
        )
        self.review_tasks = Counter(
            "crlhf_store_review_tasks_served",
            "Review tasks handed out by GET /v1/review/next",
            registry=self.registry,
        )
        if db is not None:
            self.registry.register(ExportLag(db))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class ExportLag(Collector):
    """How far the trainer's aggregation lags behind the ratings, read at scrape time."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            with self.db.reading() as session:
                last_run = session.scalar(select(func.max(AggregationRun.created_at)))
                pending = select(func.count(), func.min(LineRating.created_at))
                if last_run is not None:
                    pending = pending.where(LineRating.created_at > last_run)
                count, oldest = session.execute(pending).one()
        except Exception as exc:  # a scrape must not fail because the database is down
            log.warning("export lag not measured: %s", exc)
            return
        if isinstance(oldest, str):  # SQLite returns min() of a timestamp as text
            oldest = datetime.fromisoformat(oldest)
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        lag = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
        yield GaugeMetricFamily(
            "crlhf_store_export_lag_seconds",
            "Age of the oldest line rating that no aggregation run has seen yet (0: none)",
            value=max(0.0, lag),
        )
        yield GaugeMetricFamily(
            "crlhf_store_ratings_pending_export",
            "Line ratings stored after the latest aggregation run",
            value=int(count or 0),
        )


class MetricsMiddleware:
    """Times every HTTP request; counts stored ratings and served review tasks."""

    def __init__(self, app: ASGIApp, *, metrics: StoreMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        path, method = scope["path"], scope["method"]
        capture = method == "POST" and path == RATINGS_PATH
        body: list[bytes] = []

        async def wrapped(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and capture and status == 200:
                body.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, wrapped)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.latency.labels(method, route, str(status)).observe(
                time.perf_counter() - start
            )
            if capture and status == 200:
                self.metrics.ratings.inc(_stored(b"".join(body)))
            elif method == "GET" and path == REVIEW_PATH and status == 200:
                self.metrics.review_tasks.inc()


def _stored(body: bytes) -> int:
    try:
        value: Any = json.loads(body).get("stored", 0)
    except (ValueError, AttributeError):
        return 0
    return value if isinstance(value, int) and value >= 0 else 0


def instrument(app: FastAPI, db: Database | None = None) -> StoreMetrics:
    """Add the middleware and ``GET /metrics`` to ``app``; returns its metrics."""
    metrics = StoreMetrics(db)
    app.state.metrics = metrics
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    def metrics_endpoint(principal: Annotated[Principal, Depends(require("admin"))]) -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route(
        "/metrics",
        metrics_endpoint,
        methods=["GET"],
        tags=["meta"],
        summary="Prometheus metrics",
        description="Prometheus text format; needs an admin token.",
        response_class=Response,
        dependencies=[Depends(strict_query)],
        responses=AUTH
        | {200: {"description": "Prometheus exposition", "content": {CONTENT_TYPE_LATEST: {}}}},
    )
    return metrics
