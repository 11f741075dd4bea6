"""The status API's OpenAPI document, generated from `schemas.api` (checked in, drift-tested)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from schemas.api import (
    API_MODELS,
    ApiError,
    Health,
    LoadPage,
    LoadQuery,
    LoadStatus,
    Readiness,
    ReadinessCheck,
    ReadinessQuery,
)

_REF = "#/components/schemas/{model}"


def _ref(model: type[BaseModel]) -> dict[str, Any]:
    return {"$ref": _REF.format(model=model.__name__)}


def _json_response(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


_ERRORS = {
    "400": _json_response(ApiError, "bad input: the reason and the parameter"),
    "401": _json_response(ApiError, "missing or wrong bearer token"),
}


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=_REF)
    return [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": prop.get("description", ""),
            "schema": {k: v for k, v in prop.items() if k not in ("description", "title")},
        }
        for name, prop in schema["properties"].items()
    ]


def _path_parameter(name: str, description: str, pattern: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "pattern": pattern},
    }


def openapi_document() -> dict[str, Any]:
    _, schemas = models_json_schema([(m, "serialization") for m in API_MODELS], ref_template=_REF)
    secured: list[dict[str, list[str]]] = [{"bearer": []}]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "holdwatch status API",
            "version": "1",
            "description": "Served by each worker (HOLDWATCH_WEB_PORT). A request for one CCN is "
            "answered by the worker that owns its partition; lists fan out to every worker. "
            "Bearer tokens from HOLDWATCH_WEB_TOKENS; with none configured the server listens on "
            "127.0.0.1 only. Times are the worker's clock.",
        },
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": {
            "/v1/loads/{ccn}": {
                "get": {
                    "summary": "One load's status, its active reasons explained, its open alert",
                    "security": secured,
                    "parameters": [_path_parameter("ccn", "Cargo Control Number", r"^[A-Za-z0-9-]{5,25}$")],
                    "responses": {
                        "200": _json_response(LoadStatus, "the load"),
                        **_ERRORS,
                        "404": _json_response(ApiError, "no load and no event with this CCN"),
                    },
                }
            },
            "/v1/loads": {
                "get": {
                    "summary": "Loads from every partition, filtered, sorted by time to ETA, paged",
                    "security": secured,
                    "parameters": _query_parameters(LoadQuery),
                    "responses": {
                        "200": _json_response(LoadPage, "one page"),
                        **_ERRORS,
                        "503": _json_response(ApiError, "another worker did not answer"),
                    },
                }
            },
            "/v1/importers/{bn}/readiness": {
                "get": {
                    "summary": "The pre-pickup check: what a new load of this importer would be told now",
                    "security": secured,
                    "parameters": [
                        _path_parameter(
                            "bn", "importer business number (BN15)", r"^[0-9]{9}[Rr][Mm][0-9]{4}$"
                        ),
                        *_query_parameters(ReadinessQuery),
                    ],
                    "responses": {"200": _json_response(ReadinessCheck, "the check"), **_ERRORS},
                }
            },
            "/healthz": {
                "get": {"summary": "The process is up", "responses": {"200": _json_response(Health, "up")}}
            },
            "/readyz": {
                "get": {
                    "summary": "Partitions assigned, tables recovered, caught up",
                    "responses": {
                        "200": _json_response(Readiness, "ready"),
                        "503": _json_response(Readiness, "not ready, with the reason"),
                    },
                }
            },
            "/": {
                "get": {
                    "summary": "The dispatch board (HTML); /?token=T stores a token in a cookie",
                    "responses": {
                        "200": {
                            "description": "the board",
                            "content": {"text/html": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        },
    }
