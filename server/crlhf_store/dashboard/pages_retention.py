"""The dashboard's retention page (``/dashboard/retention``, admin): accepted and retained
characters per day and per adapter version (:mod:`~crlhf_store.dashboard.stats_retention`
defines them), the figure that says whether a new adapter's suggestions are kept."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from crlhf_store.dashboard import charts, stats_retention
from crlhf_store.dashboard.pages import AdminDep, render
from crlhf_store.deps import StoreDep

__all__ = ["router"]

router = APIRouter(prefix="/dashboard", include_in_schema=False)

NEWEST = 3
"""Adapter versions drawn per day (one colour each); the table lists every version."""


def figures(data: stats_retention.RetentionStats) -> dict[str, object]:
    """The page's three charts from its figures."""
    labels = [f"{d:%m-%d}" for d in data.days]
    index = {d: i for i, d in enumerate(data.days)}
    accepted, retained = [0] * len(labels), [0] * len(labels)
    newest = data.versions[-NEWEST:]
    by_version = {v: [0] * len(labels) for v in newest}
    for row in data.per_day:
        i = index[row.day]  # type: ignore[index]
        accepted[i] += row.accepted_chars
        retained[i] += row.retained_chars
        if row.adapter_version in by_version:
            by_version[row.adapter_version][i] = row.retained_chars
    colours = ("s1", "s2", "s3")
    return {
        "per_day": charts.bars(
            "retained-chars-per-day",
            "Accepted and retained characters per day",
            labels,
            [
                charts.Series("accepted", accepted, "s1"),
                charts.Series("retained", retained, "s3"),
            ],
        ),
        "per_version_day": charts.bars(
            "retained-chars-per-version",
            "Retained characters per day, per adapter version",
            labels,
            [charts.Series(v, by_version[v], c) for v, c in zip(newest, colours, strict=False)],
        ),
        "retention": charts.bars(
            "retention-per-version",
            "Share of checked characters retained, per adapter version",
            [r.adapter_version for r in data.per_version],
            [
                charts.Series(
                    "retained share", [round(r.retention or 0.0, 4) for r in data.per_version]
                )
            ],
            pct=True,
        ),
    }


@router.get("/retention")
def retention(store: StoreDep, admin: AdminDep) -> Response:
    with store.db.reading() as session:
        data = stats_retention.retention(session, days=30)
    return render(
        "retention.html",
        admin=admin,
        page="retention",
        data=data,
        charts=figures(data),
        newest=NEWEST,
    )
