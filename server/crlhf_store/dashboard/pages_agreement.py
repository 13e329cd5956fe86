"""The dashboard's agreement pages: agreement and calibration (``/dashboard/agreement``), a
completion with its votes (``/dashboard/completions/{id}``), minting a honeypot from a
disputed line (``POST /dashboard/honeypots/mint``, admin, CSRF) and an annotator's own page
(``/dashboard/me``, any login, their own data only).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from crlhf_contract.schemas import completion_lines
from fastapi import APIRouter, Form
from fastapi.responses import Response
from sqlalchemy import func, select

from crlhf_store import honeypots as honeypot_store
from crlhf_store.dashboard import (
    charts_agreement,
    stats_agreement,
    stats_calibration,
    stats_disagreement,
    stats_me,
)
from crlhf_store.dashboard.auth import AdminSession
from crlhf_store.dashboard.pages import AdminDep, LoginDep, _check_csrf, render
from crlhf_store.deps import StoreDep
from crlhf_store.errors import StoreServerError
from crlhf_store.models import Completion, LineRating

__all__ = ["router"]

router = APIRouter(prefix="/dashboard", include_in_schema=False)


def _agreement_page(
    store: StoreDep, admin: AdminSession, status: int = 200, **extra: Any
) -> Response:
    with store.db.reading() as session:
        data = stats_agreement.agreement(session)
        disputed = stats_disagreement.disagreement(session, limit=20)
        calibration = stats_calibration.calibration(session)
    diagram = charts_agreement.reliability_diagram(
        "calibration",
        "Aggregated P(correct) against honeypot truth",
        [(b.low, b.high, b.n, b.predicted, b.observed) for b in calibration.bins],
    )
    return render(
        "agreement.html",
        status,
        admin=admin,
        page="agreement",
        data=data,
        disputed=disputed,
        calibration=calibration,
        diagram=diagram,
        **extra,
    )


@router.get("/agreement")
def agreement(store: StoreDep, admin: AdminDep) -> Response:
    return _agreement_page(store, admin)


@router.get("/completions/{completion_id}")
def completion(completion_id: str, store: StoreDep, admin: AdminDep) -> Response:
    try:
        cid = uuid.UUID(completion_id)
    except ValueError:
        return render("error.html", 404, admin=admin, message=f"no completion {completion_id}")
    with store.db.reading() as session:
        row = session.get(Completion, cid)
        if row is None or row.is_honeypot:
            return render("error.html", 404, admin=admin, message=f"no completion {cid}")
        votes = session.execute(
            select(LineRating.line, LineRating.label, func.count())
            .where(
                LineRating.completion_id == cid,
                LineRating.own.is_(False),
                LineRating.superseded.is_(False),
            )
            .group_by(LineRating.line, LineRating.label)
        ).all()
        texts = completion_lines(row.text)
        done = honeypot_store.minted(
            session, [honeypot_store.line_honeypot(row, i) for i in range(len(texts))]
        )
    up = {line: n for line, label, n in votes if label > 0}
    down = {line: n for line, label, n in votes if label < 0}
    lines = [(i, text, up.get(i, 0), down.get(i, 0), done[i]) for i, text in enumerate(texts)]
    return render("completion.html", admin=admin, page="agreement", completion=row, lines=lines)


def _mint_args(completion_id: str, line: str, truth: str) -> tuple[uuid.UUID, int, int] | str:
    """The form's fields parsed, or what is wrong with them."""
    try:
        cid = uuid.UUID(completion_id)
    except ValueError:
        return f"`completion_id` {completion_id[:64]!r} is not a completion id"
    if not line.isdigit():
        return f"`line` must be a line number (0, 1, …), not {line[:16]!r}"
    if truth not in ("1", "-1"):
        return f"`truth` must be 1 (👍 correct) or -1 (👎 wrong), not {truth[:16]!r}"
    return cid, int(line), int(truth)


@router.post("/honeypots/mint")
def mint(
    store: StoreDep,
    admin: AdminDep,
    csrf: Annotated[str, Form()] = "",
    completion_id: Annotated[str, Form()] = "",
    line: Annotated[str, Form()] = "",
    truth: Annotated[str, Form()] = "",
) -> Response:
    """One disputed line → a honeypot whose truth the admin confirmed."""
    if denied := _check_csrf(admin, csrf):
        return denied
    args = _mint_args(completion_id, line, truth)
    if isinstance(args, str):
        return _agreement_page(store, admin, 422, error=args)
    cid, number, verdict = args
    try:
        with store.db.writing() as session:
            honeypot, new = honeypot_store.mint_from_line(
                session, completion_id=cid, line=number, truth=verdict
            )
    except StoreServerError as exc:
        return _agreement_page(store, admin, 422 if exc.status != 404 else 404, error=exc.message)
    said = "👍 correct" if verdict > 0 else "👎 wrong"
    message = (
        f"line {number} of {cid} is now honeypot {honeypot} ({said})"
        if new
        else f"line {number} of {cid} was a honeypot already ({honeypot}); its truth is unchanged"
    )
    return _agreement_page(store, admin, message=message)


@router.get("/me")
def me(store: StoreDep, login: LoginDep) -> Response:
    assert login.annotator_id is not None
    with store.db.reading() as session:
        data = stats_me.my_stats(
            session,
            annotator_id=login.annotator_id,
            name=login.name,
            redundancy=store.settings.review_redundancy,
        )
    return render("me.html", admin=login, page="me", data=data)
