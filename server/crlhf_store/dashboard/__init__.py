"""The team dashboard at ``/dashboard`` and its JSON endpoints at ``/v1/stats/...``.

Modules: :mod:`~crlhf_store.dashboard.pages` (HTML, Jinja2 with autoescape),
:mod:`~crlhf_store.dashboard.api` (the JSON behind each chart, admin scope),
:mod:`~crlhf_store.dashboard.auth` (login sessions, CSRF),
:mod:`~crlhf_store.dashboard.charts` (server-side SVG), :mod:`~crlhf_store.dashboard.models`
(its rows: login sessions).

The figures, one module per page, are plain functions of a session that return the pydantic
model the JSON endpoint serves (so a chart and its endpoint cannot disagree):
:mod:`~crlhf_store.dashboard.stats_overview`, :mod:`~crlhf_store.dashboard.stats_annotators`,
:mod:`~crlhf_store.dashboard.stats_rewards`, :mod:`~crlhf_store.dashboard.stats_adapters`,
:mod:`~crlhf_store.dashboard.stats_honeypots`, :mod:`~crlhf_store.dashboard.stats_agreement`,
:mod:`~crlhf_store.dashboard.stats_disagreement`, :mod:`~crlhf_store.dashboard.stats_calibration`
(on :mod:`~crlhf_store.dashboard.votes`), :mod:`~crlhf_store.dashboard.stats_retention`
(accepted and retained characters; its page is
:mod:`~crlhf_store.dashboard.pages_retention`) and :mod:`~crlhf_store.dashboard.stats_me`
(an annotator's own page, the one page an annotator's login opens).

The store's core (API routes, registry, metrics) imports nothing of this package; the
adapter status history the adapters page shows is the registry's own
(:func:`crlhf_store.adapters.set_status` records it).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["mount"]

STATIC = Path(__file__).parent / "static"


def mount(app: FastAPI) -> None:
    """Add the dashboard's pages, static files and ``/v1/stats`` endpoints to ``app``."""
    from fastapi import Request
    from fastapi.responses import RedirectResponse, Response
    from fastapi.staticfiles import StaticFiles

    from crlhf_store.dashboard import api, auth, pages, pages_agreement, pages_retention

    app.include_router(pages.router)
    app.include_router(pages_agreement.router)
    app.include_router(pages_retention.router)
    app.include_router(api.router)
    app.mount("/dashboard/static", StaticFiles(directory=STATIC), name="dashboard-static")

    @app.exception_handler(auth.LoginRequired)
    async def _login(request: Request, exc: auth.LoginRequired) -> RedirectResponse:
        return RedirectResponse("/dashboard/login", 303)

    @app.exception_handler(auth.AdminOnly)
    async def _admin_only(request: Request, exc: auth.AdminOnly) -> Response:
        message = "this page is for admins; your own figures are on your page"
        return pages.render("error.html", 403, message=message, link="/dashboard/me")
