"""Dashboard logins: a token in, a server-side session out; CSRF tokens for forms.

- The login form posts a token once. The store checks it has the ``admin`` scope (the
  whole dashboard) or is an annotator's (``annotator`` scope: their own page,
  ``/dashboard/me``, and nothing else; a trainer's token opens nothing) and opens a
  session: a random id goes into an HttpOnly, SameSite=Strict cookie scoped to
  ``/dashboard`` (Secure over HTTPS); the database keeps only the id's sha256 and the
  token's row, so revoking the token (``crlhf-store revoke-token``) ends the session and
  a stolen database holds nothing to log in with. The token itself is never stored in a
  cookie and never appears in a URL.
- CSRF: each session has a random token that every form carries in a hidden field
  (synchronizer token). The login form, which has no session yet, uses a double-submit
  cookie. SameSite=Strict already keeps other sites' forms from sending the cookie; the
  tokens are the second lock.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from crlhf_store.dashboard.models import DashboardSession
from crlhf_store.models import Annotator, ApiToken
from crlhf_store.tokens import authenticate, hash_token

COOKIE = "crlhf_dashboard"
LOGIN_CSRF_COOKIE = "crlhf_login_csrf"
COOKIE_PATH = "/dashboard"
SESSION_TTL = timedelta(hours=12)


class LoginRequired(Exception):
    """No valid dashboard session: the edge redirects to the login form."""


class NotAdmin(Exception):
    """The token is valid but opens no dashboard session (a trainer's)."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"{name}'s token lacks the `admin` scope the dashboard needs (an annotator's own "
            "token opens their own page)"
        )
        self.name = name


class AdminOnly(Exception):
    """An annotator's session asked for an admin page: the edge answers 403."""


SESSION_SCOPES = ("admin", "annotator")


@dataclass(frozen=True)
class AdminSession:
    """A logged-in person: name, the CSRF token their forms must carry, and scope
    (``admin``: every page; ``annotator``: their own page only)."""

    name: str
    csrf: str
    scope: str = "admin"
    annotator_id: int | None = None

    @property
    def is_admin(self) -> bool:
        return self.scope == "admin"


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def new_csrf() -> str:
    return secrets.token_urlsafe(32)


def csrf_ok(expected: str | None, got: str | None) -> bool:
    return bool(expected) and bool(got) and secrets.compare_digest(expected, got)  # type: ignore[arg-type]


def open_session(session: Session, *, token: str, now: datetime | None = None) -> str | None:
    """A new session id for an admin's or annotator's ``token``; None for an unknown or
    revoked token.

    Raises :class:`NotAdmin` for a valid token of another scope (a trainer's).
    """
    token = token.strip()  # pasted with a newline or spaces: strip once, use it twice below
    principal = authenticate(session, token=token)
    if principal is None:
        return None
    token_id, scope = session.execute(
        select(ApiToken.id, ApiToken.scope).where(ApiToken.token_hash == hash_token(token))
    ).one()
    if scope not in SESSION_SCOPES:
        raise NotAdmin(principal.name)
    now = now or datetime.now(UTC)
    session.execute(delete(DashboardSession).where(DashboardSession.expires_at < now))
    session_id = secrets.token_urlsafe(32)
    session.add(
        DashboardSession(
            id_hash=_hash(session_id),
            token_id=token_id,
            csrf=new_csrf(),
            expires_at=now + SESSION_TTL,
        )
    )
    session.flush()
    return session_id


def session_of(session: Session, *, session_id: str | None) -> AdminSession | None:
    """Who is behind a cookie, if its session is live and its token still valid."""
    if not session_id:
        return None
    row = session.execute(
        select(Annotator.name, Annotator.id, ApiToken.scope, DashboardSession.csrf)
        .join(ApiToken, ApiToken.id == DashboardSession.token_id)
        .join(Annotator, Annotator.id == ApiToken.annotator_id)
        .where(
            DashboardSession.id_hash == _hash(session_id),
            DashboardSession.expires_at > datetime.now(UTC),
            ApiToken.revoked_at.is_(None),
            ApiToken.scope.in_(SESSION_SCOPES),
        )
    ).first()
    if row is None:
        return None
    return AdminSession(name=row.name, csrf=row.csrf, scope=row.scope, annotator_id=row.id)


def close_session(session: Session, *, session_id: str | None) -> None:
    if session_id:
        session.execute(
            delete(DashboardSession).where(DashboardSession.id_hash == _hash(session_id))
        )
