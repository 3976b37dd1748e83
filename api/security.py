"""Passwords (argon2id) and access tokens (JWT, HS256). No database, no FastAPI."""

from __future__ import annotations

from datetime import datetime, timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from api.errors import Unauthorized

# argon2-cffi's defaults are RFC 9106's low-memory profile (64 MiB, 3 passes).
_hasher = PasswordHasher()
_ALGORITHM = "HS256"
# Verified against when the e-mail is unknown, so both failures take the same time.
_DUMMY_HASH = _hasher.hash("not a password anyone has")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


def issue_token(user_id: int, *, secret: str, now: datetime, lifetime: timedelta) -> str:
    claims = {"sub": str(user_id), "iat": now, "exp": now + lifetime}
    return jwt.encode(claims, secret, algorithm=_ALGORITHM)


def user_id_from_token(token: str, *, secret: str) -> int:
    """The user a token was issued to; Unauthorized if it is forged, malformed or expired."""
    try:
        claims = jwt.decode(token, secret, algorithms=[_ALGORITHM], options={"require": ["exp"]})
        return int(claims["sub"])
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("the access token has expired") from exc
    except (jwt.InvalidTokenError, KeyError, ValueError) as exc:
        raise Unauthorized("the access token is not valid") from exc
