"""Answers built without FastAPI's second pass over a response model.

A route that declares ``response_model=`` (for the OpenAPI document) and returns
``model_response(model)`` has its body serialised once, by pydantic, from a model it
already validated when it was built.
"""

from __future__ import annotations

from fastapi import Response
from pydantic import BaseModel


def model_response(model: BaseModel, status_code: int = 200) -> Response:
    return Response(model.model_dump_json(), status_code, media_type="application/json")
