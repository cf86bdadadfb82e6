"""The ingest service's OpenAPI 3.1 document, generated from the same msgspec Structs it uses."""

from __future__ import annotations

from typing import Any

import msgspec

from dateline.ingest.wire import CE_BATCH, CE_JSON, NDJSON, PROBLEM, Accepted, Problem
from dateline_schemas import MAX_BATCH_UPDATES, Update
from dateline_schemas.updates import LOG_FIELDS

_REF = "#/components/schemas/{name}"

_REFUSALS = {
    "400": "The body cannot be split into updates (not JSON, not an array, empty).",
    "401": "No valid, unrevoked feed token.",
    "403": "An update is outside the feed's source, story prefixes or types; nothing written.",
    "409": "An expectedversion did not match; `results` says what happened to each update.",
    "413": f"A single update over 64 KiB, or a batch over {MAX_BATCH_UPDATES} updates or 4 MiB.",
    "415": f"The content type is not {CE_JSON}, {CE_BATCH} or {NDJSON[0]}.",
    "422": "Invalid updates; `errors` names each field, `results` says what happened to each.",
}


def document() -> dict[str, Any]:
    (update, accepted, problem), components = msgspec.json.schema_components(
        (Update, Accepted, Problem), ref_template=_REF
    )
    for schema in components.values():  # producers must not send what the log adds
        for name in LOG_FIELDS:
            schema.get("properties", {}).pop(name, None)
    refusal = {"content": {PROBLEM: {"schema": problem}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "dateline ingest",
            "version": "1",
            "description": "Feeds publish story updates as CloudEvents 1.0 (structured mode). "
            "See the story-update contract for the types and the derivation rules.",
        },
        "paths": {
            "/v1/updates": {
                "post": {
                    "operationId": "appendUpdates",
                    "summary": "Append updates: one result per update, in order",
                    "security": [{"feedToken": []}],
                    "parameters": [
                        {
                            "name": "atomic",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "boolean", "default": False},
                            "description": "All or nothing: any refusal writes nothing.",
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            CE_JSON: {"schema": update},
                            CE_BATCH: {
                                "schema": {
                                    "type": "array",
                                    "items": update,
                                    "minItems": 1,
                                    "maxItems": MAX_BATCH_UPDATES,
                                }
                            },
                            NDJSON[0]: {
                                "schema": {
                                    "type": "string",
                                    "description": "One CloudEvent per line.",
                                }
                            },
                        },
                    },
                    "responses": {
                        "202": {
                            "description": "At least one update was appended.",
                            "content": {"application/json": {"schema": accepted}},
                        },
                        "200": {
                            "description": "Every update was a duplicate: nothing new.",
                            "content": {"application/json": {"schema": accepted}},
                        },
                        **{
                            code: {"description": text, **refusal}
                            for code, text in _REFUSALS.items()
                        },
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "summary": "Liveness",
                    "responses": {
                        "200": {
                            "description": "Serving",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "schemas": components,
            "securitySchemes": {
                "feedToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "`dateline feeds add` prints it.",
                }
            },
        },
    }
