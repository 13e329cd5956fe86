"""FastAPI dependencies: the store's state, the caller's principal, scope checks."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from crlhf_store.db import Database
from crlhf_contract.schemas import Scope
from crlhf_store.settings import StoreSettings
from crlhf_store.storage import AdapterStorage
from crlhf_store.tokens import Principal, authenticate


@dataclass
class Store:
    """Everything a request needs: settings, the database, the adapter storage."""

    settings: StoreSettings
    db: Database
    storage: AdapterStorage
    rng: random.Random = field(default_factory=random.Random)


def get_store(request: Request) -> Store:
    return request.app.state.store  # type: ignore[no-any-return]


StoreDep = Annotated[Store, Depends(get_store)]
_bearer = HTTPBearer(auto_error=False, description="a token from `crlhf-store create-annotator`")


def current_principal(
    store: StoreDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        raise HTTPException(
            401,
            "missing bearer token: send `Authorization: Bearer <token>` "
            "(`crlhf-store create-annotator NAME` prints one)",
            headers=challenge,
        )
    with store.db.reading() as session:
        principal = authenticate(session, token=credentials.credentials)
    if principal is None:
        raise HTTPException(401, "unknown or revoked token", headers=challenge)
    return principal


def require(scope: Scope):  # type: ignore[no-untyped-def]
    def check(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if not principal.may(scope):
            raise HTTPException(
                403,
                f"this needs a token with the `{scope}` scope; {principal.name}'s has "
                f"{', '.join(principal.scopes) or 'none'}",
            )
        return principal

    return check


AnnotatorDep = Annotated[Principal, Depends(require("annotator"))]
TrainerDep = Annotated[Principal, Depends(require("trainer"))]
