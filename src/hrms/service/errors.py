"""Domain errors and their HTTP shapes (404, 409, 422, 403)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


class ServiceError(Exception):
    """A user-facing error: answered with ``status`` and ``{"detail": message}``."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(ServiceError):  # noqa: N818 - named after the HTTP answer
    """The resource does not exist (or belongs to another tenant)."""

    status = 404


class Conflict(ServiceError):  # noqa: N818 - named after the HTTP answer
    """The request conflicts with the current state (a duplicate, an overlap)."""

    status = 409


class RuleBroken(ServiceError):  # noqa: N818 - named after the HTTP answer
    """The request breaks a business rule (e.g. not enough leave balance)."""

    status = 422


class Forbidden(ServiceError):  # noqa: N818 - named after the HTTP answer
    """The caller's role may not do this."""

    status = 403


def install_error_handlers(app: FastAPI) -> None:
    """Answer :class:`ServiceError` with its status and message."""

    async def on_service_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ServiceError)
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    app.add_exception_handler(ServiceError, on_service_error)
