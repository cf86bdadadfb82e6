"""The ingest service's OpenAPI 3.1 document, generated from the same msgspec Structs it uses."""

from __future__ import annotations

from typing import Any

import msgspec

from dateline.ingest.wire import (
    BINARY_DATA,
    CE_BATCH,
    CE_JSON,
    NDJSON,
    PROBLEM,
    Accepted,
    Problem,
)
from dateline_schemas import MAX_BATCH_UPDATES, Update
from dateline_schemas.updates import LOG_FIELDS

_REF = "#/components/schemas/{name}"

_REFUSALS = {
    "400": "The body cannot be split into updates (not JSON, not an array, empty), or a "
    "query parameter is not one the route takes (`atomic`); the detail names it.",
    "401": "No valid, unrevoked feed token.",
    "403": "An update is outside the feed's source, story prefixes or types; nothing written.",
    "409": "An expectedversion did not match; `results` says what happened to each update.",
    "413": f"A single update over 64 KiB, or a batch over {MAX_BATCH_UPDATES} updates or 4 MiB.",
    "415": f"The content type is not {CE_JSON}, {CE_BATCH} or {NDJSON[0]}, nor "
    f"{BINARY_DATA} with ce-* headers (binary mode).",
    "422": "Invalid updates; `errors` names each field, `results` says what happened to each.",
    "429": "More than DATELINE_RATE_LIMIT requests a second from this token or address; "
    "nothing written; `Retry-After` says when to send it again.",
    "503": "The log's server cannot take the updates now; `Retry-After` says when to send "
    "them again, with the same ids (a duplicate is accepted once). Its `type` says why: "
    "`unavailable` (it cannot be reached: an update may or may not be in the log), "
    "`server-full` (out of memory or disk) and `refusing-writes` (too few replicas for its "
    "min-replicas-to-write, or a replica), nothing written; `not-replicated` (written, its "
    "replicas did not confirm in time); the log moving or moved, or its append function "
    "missing (nothing written).",
}


_BINARY = {
    "specversion": "`1.0`; its presence (with a JSON body) makes the request binary mode.",
    "id": "The update's id.",
    "source": "The feed's source.",
    "type": "The update type, e.g. `dateline.story.opened`.",
    "subject": "The story id.",
    "time": "When it happened (RFC 3339; `+` percent-encoded as `%2B`).",
    "timeprecision": "`exact`, `minute`, `day`, `month` or `approximate`.",
    "expectedversion": "The version the story must hold (a number).",
}


def _binary_headers() -> list[dict[str, Any]]:
    """Binary mode's attributes as header parameters: optional here (structured mode
    sends none), required together in binary mode, as the contract says."""
    return [
        {
            "name": f"ce-{name}",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": f"Binary mode: {text} Extensions come as ce-<name> too.",
        }
        for name, text in _BINARY.items()
    ]


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
            "description": "Feeds publish story updates as CloudEvents 1.0, in structured "
            f"mode ({CE_JSON}, one update; {CE_BATCH} or {NDJSON[0]}, many) or in binary "
            f"mode (one update: its attributes in ce-* headers, percent-encoded as the "
            f"CloudEvents HTTP binding says, its data the {BINARY_DATA} body). See the "
            "story-update contract for the types and the derivation rules.",
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
                        },
                        *_binary_headers(),
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
                            BINARY_DATA: {
                                "schema": {
                                    "type": "object",
                                    "description": "Binary mode: the update's `data`; its "
                                    "attributes come in the ce-* headers.",
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
