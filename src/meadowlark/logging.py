"""structlog set-up. Secrets never reach a log line: known secret keys are masked."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

SECRET_KEYS = frozenset(
    {
        "authorization",
        "password",
        "token",
        "access_token",
        "refresh_token",
        "refreshtoken",
        "client_secret",
        "secret",
        "subject_token",
        "otp",
        "code",
        "cookie",
        "psk",
        "dtls_psk",
        "dtlspsk",
        "psk_key",
    }
)


def _mask_secrets(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in list(event):
        if key.lower() in SECRET_KEYS:
            event[key] = "***"
    return event


HANDLER_NAME = "meadowlark"


def configure_logging(level: str = "info", *, json: bool = False) -> None:
    """structlog's lines, and the standard library's (uvicorn, aiocoap, SQLAlchemy), as
    JSON objects (``json``) or human-readable console lines on standard error.

    Every line carries the context variables bound at the time (the REST request's
    ``request_id``). Standard-library records go through the same processors unless
    something else (a test runner) already handles the root logger.
    """
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _mask_secrets,
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if h.get_name() != HANDLER_NAME]
    if not root.handlers:
        root.addHandler(handler)
    root.setLevel(level.upper())
