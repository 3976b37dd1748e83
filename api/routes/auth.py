"""Sign-up, sign-in and who am I."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter

from api import ratelimit
from api.deps import CallerDep, NowDep, SessionDep, SettingsDep
from api.models import User
from api.schemas.accounts import LogIn, MeRead, SignUp, TokenRead, UserRead
from api.schemas.common import AUTH_ERRORS, CONFLICT, ErrorResponse
from api.services import accounts

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post(
    "/signup",
    status_code=201,
    response_model=UserRead,
    responses={**CONFLICT, 429: {"model": ErrorResponse}},
)
def sign_up(body: SignUp, session: SessionDep, ip: ratelimit.ClientIp) -> User:
    ratelimit.check("login", f"signup:{ip}")
    return accounts.sign_up(
        session, email=body.email, password=body.password, full_name=body.full_name
    )


@router.post(
    "/login",
    response_model=TokenRead,
    responses={401: {"model": ErrorResponse}, 429: {"model": ErrorResponse}},
)
def log_in(
    body: LogIn, session: SessionDep, settings: SettingsDep, now: NowDep, ip: ratelimit.ClientIp
) -> dict:
    ratelimit.check("login", f"{ip}:{body.email.lower()}")
    token = accounts.log_in(
        session,
        email=body.email,
        password=body.password,
        secret=settings.effective_jwt_secret,
        now=now,
        lifetime=timedelta(minutes=settings.access_token_minutes),
    )
    return {"access_token": token.token, "expires_in": token.expires_in}


@router.get("/me", response_model=MeRead, responses=AUTH_ERRORS)
def me(caller: CallerDep, session: SessionDep) -> dict:
    user = session.get(User, caller.user_id)
    return {
        **UserRead.model_validate(user).model_dump(),
        "organizer_ids": sorted(caller.organizer_ids),
    }
