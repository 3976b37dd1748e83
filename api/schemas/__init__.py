"""Request and response bodies (Pydantic v2). Money is integer minor units plus a currency."""

from api.schemas.common import ErrorResponse

__all__ = ["ErrorResponse"]
