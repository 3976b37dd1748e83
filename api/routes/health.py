"""Liveness and readiness for the supervisor and load balancers."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from api.deps import EngineDep

router = APIRouter(tags=["operations"])


@router.get("/health")
def health() -> dict:
    """The process answers."""
    return {"status": "ok"}


@router.get("/ready")
def ready(engine: EngineDep) -> JSONResponse:
    """The database answers too."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError:
        return JSONResponse({"status": "unavailable", "database": "down"}, status_code=503)
    return JSONResponse({"status": "ok", "database": "up"})
