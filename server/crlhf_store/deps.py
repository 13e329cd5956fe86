"""FastAPI dependencies: the store's state, the caller's principal, scope checks."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Annotated, Any

from crlhf_contract.schemas import Scope
from fastapi import Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from crlhf_store.authgate import MISSING, UNKNOWN, principal_of
from crlhf_store.db import Database
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


async def current_principal(
    request: Request,
    store: StoreDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    # BearerGate (crlhf_store.authgate) authenticated the request before its body was
    # read; the lookup below only serves an app assembled without it.
    principal = principal_of(request.scope)
    if principal is not None:
        return principal
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        raise HTTPException(401, MISSING, headers=challenge)

    def lookup() -> Principal | None:
        with store.db.reading() as session:
            return authenticate(session, token=credentials.credentials)

    principal = await run_in_threadpool(lookup)
    if principal is None:
        raise HTTPException(401, UNKNOWN, headers=challenge)
    return principal


def require(scope: Scope):  # type: ignore[no-untyped-def]
    async def check(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
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


def strict_query(request: Request) -> None:
    """Refuse query parameters the matched route does not declare."""
    dependant = getattr(request.scope.get("route"), "dependant", None)
    declared = _query_names(dependant) if dependant is not None else set()
    for name in request.query_params:
        if name not in declared:
            raise RequestValidationError(
                [
                    {
                        "loc": ("query", name),
                        "msg": f"unknown query parameter {name!r}",
                        "type": "extra_forbidden",
                        "input": request.query_params[name],
                    }
                ]
            )


def _query_names(dependant: Any) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names
