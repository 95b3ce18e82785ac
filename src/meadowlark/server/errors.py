"""Typed failures of server operations; each says which HTTP status fits it best."""

from __future__ import annotations

from meadowlark.server.transport import ResponseCode


class Lwm2mServerError(Exception):
    """Base class; ``http_status`` is what a REST layer should answer with."""

    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class DeviceNotRegisteredError(Lwm2mServerError):
    http_status = 404

    def __init__(self, endpoint: str) -> None:
        super().__init__(f"device {endpoint!r} is not registered")
        self.endpoint = endpoint


class InvalidRequestError(Lwm2mServerError):
    """The caller asked for something that cannot be sent (bad format, path, node)."""

    http_status = 400


class RequestTimeoutError(Lwm2mServerError):
    http_status = 504


class DeviceUnreachableError(Lwm2mServerError):
    """The transport could not deliver the request (e.g. ICMP port unreachable)."""

    http_status = 502


class DeviceErrorResponse(Lwm2mServerError):
    """The device answered with a CoAP error code, e.g. 4.04 Not Found."""

    def __init__(self, code: ResponseCode, diagnostic: str = "") -> None:
        detail = f": {diagnostic}" if diagnostic else ""
        super().__init__(f"device answered {code}{detail}")
        self.code = code
        self.diagnostic = diagnostic
        self.http_status = code.http_status


class InvalidResponseError(Lwm2mServerError):
    """The device answered with a payload we cannot decode."""

    http_status = 502


class RequestQueuedError(Lwm2mServerError):
    """The device sleeps (queue mode): the request waits in the queue as ``request_id``.

    Its outcome is reported later through ``ServerListener.on_queued_request_done``.
    """

    http_status = 202

    def __init__(self, endpoint: str, request_id: str) -> None:
        super().__init__(f"device {endpoint!r} is sleeping; request {request_id} is queued")
        self.endpoint = endpoint
        self.request_id = request_id


class QueuedRequestExpiredError(Lwm2mServerError):
    """A queued request was not delivered before its expiry time."""

    http_status = 504
