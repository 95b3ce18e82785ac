"""Answers built without FastAPI's second pass over a response model.

A route that declares ``response_model=`` (for the OpenAPI document) and returns
``model_response(model)`` has its body serialised once, by pydantic, from a model it
already validated when it was built; ``json_response`` does the same for plain data.
"""

from __future__ import annotations

from typing import Any

from fastapi import Response
from pydantic import BaseModel
from pydantic_core import to_json


def model_response(model: BaseModel, status_code: int = 200) -> Response:
    return Response(model.model_dump_json(), status_code, media_type="application/json")


def json_response(content: Any, status_code: int = 200) -> Response:
    """Plain JSON data (dicts, lists, strings, numbers) serialised by pydantic-core, as
    compact as ``JSONResponse`` makes it and several times faster for large bodies."""
    return Response(to_json(content), status_code, media_type="application/json")
