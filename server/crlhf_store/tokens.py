"""API tokens and scopes: only a token's sha256 is stored.

A token is ``crlhf_`` + 32 random bytes (urlsafe base64). With 256 bits of entropy a
plain sha256 is enough to make the stored hash useless to a thief (nothing to brute
force), and it lets a request look its token up by an indexed equality in one query.

Scopes nest: ``admin`` ⊇ ``trainer`` ⊇ ``annotator``; a token holds one scope and may do
everything a lower one may.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from crlhf_contract.schemas import Scope
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from crlhf_store.errors import NotFound
from crlhf_store.models import Annotator, ApiToken

SCOPES: tuple[Scope, ...] = ("annotator", "trainer", "admin")
TOKEN_PREFIX = "crlhf_"


def granted(scope: str) -> list[Scope]:
    """The scopes a token of ``scope`` holds, lowest first."""
    return list(SCOPES[: SCOPES.index(scope) + 1]) if scope in SCOPES else []  # type: ignore[arg-type]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the annotator behind a valid token, and what it may do."""

    annotator_id: int
    name: str
    scopes: tuple[Scope, ...]

    def may(self, scope: Scope) -> bool:
        return scope in self.scopes


def authenticate(session: Session, *, token: str) -> Principal | None:
    """The principal of a live token, or None for an unknown or revoked one."""
    row = session.execute(
        select(ApiToken.scope, Annotator.id, Annotator.name)
        .join(Annotator, Annotator.id == ApiToken.annotator_id)
        .where(ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None))
    ).first()
    if row is None:
        return None
    return Principal(annotator_id=row.id, name=row.name, scopes=tuple(granted(row.scope)))


def create_annotator(session: Session, *, name: str, scope: Scope = "annotator") -> str:
    """Create ``name`` (or reuse it) and issue a new token of ``scope``; returns the token."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; use one of {', '.join(SCOPES)}")
    annotator = session.scalar(select(Annotator).where(Annotator.name == name))
    if annotator is None:
        annotator = Annotator(name=name)
        session.add(annotator)
        session.flush()
    token = new_token()
    session.add(
        ApiToken(
            annotator_id=annotator.id,
            token_hash=hash_token(token),
            prefix=token[: len(TOKEN_PREFIX) + 4],
            scope=scope,
        )
    )
    session.flush()
    return token


def revoke_token(
    session: Session, *, token: str | None = None, annotator: str | None = None
) -> int:
    """Revoke one token, or every token of ``annotator``; returns how many were revoked."""
    now = datetime.now(UTC)
    stmt = update(ApiToken).where(ApiToken.revoked_at.is_(None)).values(revoked_at=now)
    if token is not None:
        stmt = stmt.where(ApiToken.token_hash == hash_token(token))
    elif annotator is not None:
        owner = session.scalar(select(Annotator.id).where(Annotator.name == annotator))
        if owner is None:
            raise NotFound(f"no annotator named {annotator!r}")
        stmt = stmt.where(ApiToken.annotator_id == owner)
    else:
        raise ValueError("name a token or an annotator")
    return session.execute(stmt).rowcount  # type: ignore[attr-defined,no-any-return]
