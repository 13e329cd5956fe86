"""The dashboard's HTML pages (``/dashboard``): server-rendered, no JavaScript.

Overview, annotators, rewards, adapters, honeypots; a login form; publish / retire behind a
confirmation page; the honeypot import form. Every page needs an admin session (see
:mod:`crlhf_store.dashboard.auth`); every form carries the session's CSRF token.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from crlhf_store import adapters as registry
from crlhf_store import honeypots as honeypot_import
from crlhf_store.dashboard import (
    auth,
    charts,
    charts_agreement,
    stats_adapters,
    stats_agreement,
    stats_annotators,
    stats_honeypots,
    stats_overview,
    stats_rewards,
)
from crlhf_store.deps import StoreDep
from crlhf_store.errors import StoreServerError

router = APIRouter(prefix="/dashboard", include_in_schema=False)

# Autoescape on for every template: annotator names, languages and code are user input.
templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
)
# No scripts at all; styles and images only from the store itself.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.0%}"


def _num(v: float | None, digits: int = 2) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _when(v: datetime | None) -> str:
    return "–" if v is None else f"{v:%Y-%m-%d %H:%M}"


templates.filters.update(pct=_pct, num=_num, when=_when)


def render(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = templates.get_template(name).render(**context)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def login_session(request: Request, store: StoreDep) -> auth.AdminSession:
    """Anyone logged in: an admin, or an annotator (who sees only their own page)."""
    with store.db.reading() as session:
        login = auth.session_of(session, session_id=request.cookies.get(auth.COOKIE))
    if login is None:
        raise auth.LoginRequired
    return login


def admin_session(login: Annotated[auth.AdminSession, Depends(login_session)]) -> auth.AdminSession:
    if not login.is_admin:
        raise auth.AdminOnly
    return login


LoginDep = Annotated[auth.AdminSession, Depends(login_session)]
AdminDep = Annotated[auth.AdminSession, Depends(admin_session)]


def home(login: auth.AdminSession) -> str:
    return "/dashboard" if login.is_admin else "/dashboard/me"


def _check_csrf(admin: auth.AdminSession, csrf: str) -> Response | None:
    if auth.csrf_ok(admin.csrf, csrf):
        return None
    return render("error.html", 403, admin=admin, message="the form's CSRF token is wrong; reload")


def _cookie(response: Response, request: Request, name: str, value: str, path: str) -> None:
    response.set_cookie(
        name,
        value,
        max_age=int(auth.SESSION_TTL.total_seconds()),
        path=path,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )


# --- login -------------------------------------------------------------------------------


@router.get("/login")
def login_form(request: Request, store: StoreDep) -> Response:
    with store.db.reading() as session:
        login = auth.session_of(session, session_id=request.cookies.get(auth.COOKIE))
    if login is not None:
        return RedirectResponse(home(login), 303)
    return _login_page(request)


def _login_page(request: Request, status: int = 200, error: str | None = None) -> Response:
    csrf = auth.new_csrf()
    response = render("login.html", status, csrf=csrf, error=error)
    _cookie(response, request, auth.LOGIN_CSRF_COOKIE, csrf, "/dashboard/login")
    return response


@router.post("/login")
def login(
    request: Request,
    store: StoreDep,
    token: Annotated[str, Form(max_length=256)] = "",
    csrf: Annotated[str, Form(max_length=256)] = "",
) -> Response:
    if not auth.csrf_ok(request.cookies.get(auth.LOGIN_CSRF_COOKIE), csrf):
        return _login_page(request, 403, "the form expired; log in again")
    try:
        with store.db.writing() as session:
            session_id = auth.open_session(session, token=token)
    except auth.NotAdmin as exc:
        return _login_page(request, 403, str(exc))
    if session_id is None:
        return _login_page(request, 401, "unknown or revoked token")
    with store.db.reading() as session:
        login_ = auth.session_of(session, session_id=session_id)
    response = RedirectResponse(home(login_) if login_ else "/dashboard", 303)
    _cookie(response, request, auth.COOKIE, session_id, auth.COOKIE_PATH)
    response.delete_cookie(auth.LOGIN_CSRF_COOKIE, path="/dashboard/login")
    return response


@router.post("/logout")
def logout(
    request: Request, store: StoreDep, admin: LoginDep, csrf: Annotated[str, Form()] = ""
) -> Response:
    if denied := _check_csrf(admin, csrf):
        return denied
    with store.db.writing() as session:
        auth.close_session(session, session_id=request.cookies.get(auth.COOKIE))
    response = RedirectResponse("/dashboard/login", 303)
    response.delete_cookie(auth.COOKIE, path=auth.COOKIE_PATH)
    return response


# --- pages -------------------------------------------------------------------------------


@router.get("")
def overview(store: StoreDep, admin: AdminDep) -> Response:
    with store.db.reading() as session:
        data = stats_overview.overview(session, days=30)
    days = [f"{d.day:%m-%d}" for d in data.days]
    figures = {
        "ratings": charts.bars(
            "ratings-per-day",
            "Line ratings per day",
            days,
            [charts.Series("ratings", [d.ratings for d in data.days])],
        ),
        "active": charts.lines(
            "active-annotators",
            "Active annotators per day",
            days,
            [charts.Series("annotators", [d.active_annotators for d in data.days], "s2")],
        ),
        "funnel": charts.bars(
            "shown-accepted",
            "Completions shown and accepted per day",
            days,
            [
                charts.Series("shown", [d.shown for d in data.days], "s1"),
                charts.Series("accepted", [d.accepted for d in data.days], "s3"),
            ],
        ),
    }
    return render("overview.html", admin=admin, page="overview", data=data, charts=figures)


SortKey = Literal[
    "annotator",
    "ratings",
    "honeypot_answers",
    "honeypot_accuracy",
    "reliability",
    "flag",
    "last_active",
]
SORT_KEYS: tuple[str, ...] = SortKey.__args__  # type: ignore[attr-defined]


def sort_rows(rows: list[stats_annotators.AnnotatorRow], key: str, descending: bool) -> list:
    """Sort by a column; rows without a value go last in both directions."""
    present = [r for r in rows if getattr(r, key) is not None]
    missing = [r for r in rows if getattr(r, key) is None]
    present.sort(key=lambda r: (getattr(r, key), r.annotator), reverse=descending)
    return present + missing


@router.get("/annotators")
def annotators(
    store: StoreDep, admin: AdminDep, sort: str = "annotator", order: str = "asc"
) -> Response:
    sort = sort if sort in SORT_KEYS else "annotator"
    descending = order == "desc"
    with store.db.reading() as session:
        data = stats_annotators.annotators(session)
        agreement = stats_agreement.agreement(session)
    rows = sort_rows(data.annotators, sort, descending)
    heatmap = charts_agreement.pair_heatmap(
        [(p.a, p.b, p.agreement, p.co_rated) for p in agreement.pairs]
    )
    points = [
        charts.Point(r.honeypot_accuracy, r.reliability, r.annotator, r.flag or "ok")
        for r in rows
        if r.reliability is not None and r.honeypot_accuracy is not None
    ]
    scatter = charts.scatter(
        "reliability-vs-honeypot",
        "Estimated reliability against honeypot accuracy",
        points,
        "honeypot accuracy",
        "estimated reliability",
    )
    return render(
        "annotators.html",
        admin=admin,
        page="annotators",
        data=data,
        rows=rows,
        sort=sort,
        descending=descending,
        scatter=scatter,
        agreement=agreement,
        heatmap=heatmap,
    )


def _box(label: str, d: stats_rewards.Distribution) -> charts.Box:
    return charts.Box(label, d.p10, d.p25, d.median, d.p75, d.p90, d.mean, d.n)  # type: ignore[arg-type]


@router.get("/rewards")
def rewards(store: StoreDep, admin: AdminDep) -> Response:
    with store.db.reading() as session:
        data = stats_rewards.rewards(session, runs=14)
    runs = [r for r in data.runs if r.rewards.n]
    figures = {}
    if runs:
        figures["nights"] = charts.boxes(
            "rewards-per-night",
            "Reward per completion, per aggregation run",
            [_box(f"#{r.run_id} {r.created_at:%m-%d}", r.rewards) for r in runs],
        )
        latest = runs[-1].rewards
        figures["histogram"] = charts.bars(
            "reward-histogram",
            "Rewards of the latest run",
            [f"{i / 20:.2f}" for i in range(20)],
            [charts.Series("completions", latest.histogram)],
        )
    if data.languages:
        figures["languages"] = charts.boxes(
            "rewards-per-language",
            "Reward per completion, per language (latest run)",
            [_box(lang.language, lang.rewards) for lang in data.languages],
        )
    return render("rewards.html", admin=admin, page="rewards", data=data, charts=figures)


@router.get("/adapters")
def adapters(store: StoreDep, admin: AdminDep) -> Response:
    with store.db.reading() as session:
        rows = stats_adapters.adapters(session)
    figure = charts.timeline(
        "adapter-timeline",
        "Adapter versions",
        [(r.version, r.created_at, r.status, r.parent) for r in rows],
    )
    return render("adapters.html", admin=admin, page="adapters", rows=rows[::-1], timeline=figure)


Action = Literal["publish", "retire"]


@router.get("/adapters/{version}/{action}")
def confirm(version: str, action: Action, store: StoreDep, admin: AdminDep) -> Response:
    with store.db.reading() as session:
        try:
            row = registry.to_out(registry.get(session, version=version))
        except StoreServerError as exc:
            return render("error.html", 404, admin=admin, page="adapters", message=exc.message)
    return render("confirm.html", admin=admin, page="adapters", adapter=row, action=action)


@router.post("/adapters/{version}/{action}")
def change_status(
    version: str,
    action: Action,
    store: StoreDep,
    admin: AdminDep,
    csrf: Annotated[str, Form()] = "",
) -> Response:
    if denied := _check_csrf(admin, csrf):
        return denied
    status = "published" if action == "publish" else "retired"
    try:
        with store.db.writing() as session:
            registry.set_status(session, version=version, status=status, actor=admin.name)
    except StoreServerError as exc:
        return render("error.html", 404, admin=admin, page="adapters", message=exc.message)
    return RedirectResponse("/dashboard/adapters", 303)


def _honeypot_page(store: StoreDep, admin: auth.AdminSession, status: int = 200, **extra: Any):
    with store.db.reading() as session:
        data = stats_honeypots.honeypots(session)
    figure = charts.bars(
        "honeypot-coverage",
        "Honeypots answered per annotator",
        [c.annotator for c in data.coverage],
        [charts.Series("answered", [c.answered for c in data.coverage], "s2")],
    )
    return render(
        "honeypots.html", status, admin=admin, page="honeypots", data=data, chart=figure, **extra
    )


@router.get("/honeypots")
def honeypots(store: StoreDep, admin: AdminDep) -> Response:
    return _honeypot_page(store, admin)


@router.post("/honeypots")
def import_honeypots(
    store: StoreDep,
    admin: AdminDep,
    csrf: Annotated[str, Form()] = "",
    jsonl: Annotated[str, Form()] = "",
    file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    if denied := _check_csrf(admin, csrf):
        return denied
    text = jsonl
    if file is not None and file.filename:
        text += "\n" + file.file.read().decode("utf-8", errors="replace")
    try:
        parsed = honeypot_import.parse_jsonl(text.splitlines())
        if not parsed:
            return _honeypot_page(store, admin, 422, error="no honeypots in the form: paste JSONL")
        with store.db.writing() as session:
            imported, skipped = honeypot_import.import_honeypots(session, honeypots=parsed)
    except StoreServerError as exc:
        return _honeypot_page(store, admin, 422, error=exc.message)
    return _honeypot_page(
        store, admin, message=f"imported {imported} honeypots ({skipped} were already there)"
    )
