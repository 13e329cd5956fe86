"""Health, readiness and ``GET /v1/me``."""

from __future__ import annotations

from crlhf_contract.schemas import Me
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from crlhf_store.deps import AnnotatorDep, StoreDep
from crlhf_store.routes import AUTH
from crlhf_store.strictjson import StrictJSONRoute

router = APIRouter(route_class=StrictJSONRoute)


@router.get("/healthz", tags=["meta"])
def healthz() -> dict[str, str]:
    """The process is up (no database check)."""
    return {"status": "ok"}


@router.get("/readyz", tags=["meta"], responses={503: {"description": "database unreachable"}})
def readyz(store: StoreDep) -> JSONResponse:
    """The database answers."""
    try:
        with store.db.reading() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means "not ready"
        return JSONResponse({"status": "unavailable", "detail": type(exc).__name__}, 503)
    return JSONResponse({"status": "ok"})


@router.get("/v1/me", response_model=Me, tags=["meta"], responses=AUTH)
def me(principal: AnnotatorDep) -> Me:
    return Me(annotator=principal.name, scopes=list(principal.scopes))
