"""Errors raised by services; the API turns each into an HTTP status and error body."""

from __future__ import annotations


class ServiceError(Exception):
    status = 400
    code: int | None = None

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidInput(ServiceError):
    status = 400


class NotAuthenticated(ServiceError):
    status = 401


class TwoFactorRequired(NotAuthenticated):
    """Credentials were right but the account needs a valid one-time code too."""


class Forbidden(ServiceError):
    status = 403


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class Throttled(ServiceError):
    status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PayloadTooLarge(ServiceError):
    status = 413


class UnsupportedMediaType(ServiceError):
    status = 415


class Unavailable(ServiceError):
    """A feature this server is not configured for, or a retry-later condition."""

    status = 503
