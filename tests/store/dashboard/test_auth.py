"""crlhf_store.dashboard.auth on SQLite and PostgreSQL: sessions live and die with tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from crlhf_store.dashboard import auth
from crlhf_store.dashboard.models import DashboardSession
from crlhf_store.db import Database
from crlhf_store.tokens import create_annotator, revoke_token
from sqlalchemy import select


def test_a_session_holds_no_token_and_ends_with_it(db: Database) -> None:
    with db.writing() as s:
        token = create_annotator(s, name="root", scope="admin")
        session_id = auth.open_session(s, token=token)
    assert session_id and session_id != token
    with db.reading() as s:
        admin = auth.session_of(s, session_id=session_id)
        stored = s.scalars(select(DashboardSession.id_hash)).all()
    assert admin is not None and admin.name == "root" and len(admin.csrf) >= 32
    assert stored == [auth._hash(session_id)] and session_id not in stored
    with db.writing() as s:
        revoke_token(s, token=token)
    with db.reading() as s:
        assert auth.session_of(s, session_id=session_id) is None


def test_a_token_pasted_with_surrounding_whitespace_logs_in(db: Database) -> None:
    """It was checked stripped but looked up unstripped: no token row, a 500 at login."""
    with db.writing() as s:
        token = create_annotator(s, name="root", scope="admin")
        session_id = auth.open_session(s, token=f"  {token}\r\n")
    with db.reading() as s:
        admin = auth.session_of(s, session_id=session_id)
    assert admin is not None and admin.name == "root"


def test_logout_expiry_and_refusals(db: Database) -> None:
    with db.writing() as s:
        token = create_annotator(s, name="root", scope="admin")
        plain = create_annotator(s, name="ann", scope="trainer")
        assert auth.open_session(s, token="crlhf_unknown") is None
        with pytest.raises(auth.NotAdmin, match="ann's token lacks the `admin` scope"):
            auth.open_session(s, token=plain)
        old = auth.open_session(s, token=token, now=datetime.now(UTC) - timedelta(days=1))
        live = auth.open_session(s, token=token)
    with db.reading() as s:
        assert auth.session_of(s, session_id=old) is None  # expired
        assert auth.session_of(s, session_id=live) is not None
        assert auth.session_of(s, session_id=None) is None
        assert auth.session_of(s, session_id="forged") is None
    with db.writing() as s:
        auth.close_session(s, session_id=live)
    with db.reading() as s:
        assert auth.session_of(s, session_id=live) is None


def test_csrf_comparison() -> None:
    token = auth.new_csrf()
    assert auth.csrf_ok(token, token)
    assert not auth.csrf_ok(token, token[:-1] + "x")
    assert not auth.csrf_ok(None, "") and not auth.csrf_ok("", "")
