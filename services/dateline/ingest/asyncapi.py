"""The AsyncAPI 3.0 document of dateline's streams, built from the contract's msgspec Structs.

FastStream's generator reads pydantic models, not msgspec Structs, so the message
schemas come from `msgspec.json.schema_components` instead.

python -m dateline.ingest.asyncapi           # rewrite schemas/asyncapi.json
python -m dateline.ingest.asyncapi --check   # exit 1 if it is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import msgspec

from dateline.store.layout import GroupKeys, inbox_key, partition_stream, rejected_key
from dateline_schemas import UPDATE_CLASSES, Update

PATH = Path(__file__).resolve().parents[3] / "schemas" / "asyncapi.json"
PREFIX = "dateline"
_REF = "#/components/schemas/{name}"


def _entry(fields: dict[str, str], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {name: {"type": "string", "description": d} for name, d in fields.items()},
        "required": required,
    }


def _asyncapi_schema(node: Any) -> Any:
    """msgspec writes OpenAPI's `discriminator: {propertyName, mapping}`; an AsyncAPI
    Schema Object wants the property name alone."""
    if isinstance(node, dict):
        out = {k: _asyncapi_schema(v) for k, v in node.items()}
        if isinstance(out.get("discriminator"), dict):
            out["discriminator"] = out["discriminator"]["propertyName"]
        return out
    if isinstance(node, list):
        return [_asyncapi_schema(v) for v in node]
    return node


def document() -> dict[str, Any]:
    (union, *_), schemas = msgspec.json.schema_components(
        [Update, *UPDATE_CLASSES], ref_template=_REF
    )
    components: dict[str, Any] = _asyncapi_schema(schemas)
    components["Update"] = _asyncapi_schema(union)
    components["StreamEntry"] = _entry(
        {"__data__": "One CloudEvent as JSON: a `#/components/schemas/Update`."}, ["__data__"]
    )
    components["Rejected"] = _entry(
        {
            "feed": "The feed whose inbox held it.",
            "entry": "Its stream id in that inbox.",
            "record": "The entry's `__data__` as sent (may be empty or not JSON).",
            "field": "What was wrong: a field of the update, or `feed`, `entry`, `update`.",
            "reason": "Why, in words.",
        },
        ["feed", "entry", "record", "field", "reason"],
    )
    components["Parked"] = _entry(
        {
            "story": "The story id ('' if the entry had none readable).",
            "partition": "The partition number.",
            "entry": "Its stream id in the partition stream.",
            "record": "The update as the log holds it.",
            "error": "The error the projection raised, or why it waits.",
            "traceback": "The traceback of that error.",
            "behind": "`<partition>:<entry>` parked first, if this one waits behind it.",
        },
        ["story", "partition", "entry", "record", "error"],
    )
    entry_note = (
        "A stream entry with one field, `__data__`, holding the CloudEvent as JSON "
        "(structured mode). The payload below is that JSON."
    )
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "dateline streams",
            "version": "1.0.0",
            "description": (
                "The Redis streams of dateline. Feeds append to their inbox; the validator "
                "moves valid updates into the log (partition streams) and refused ones into "
                "`rejected`; projectors consume the partitions and park poison updates in "
                "dead letters. Keys start with the deployment's prefix, `dateline` by default."
            ),
        },
        "servers": {
            "redis": {
                "host": "127.0.0.1:6379",
                "protocol": "redis",
                "description": "Redis 6.2+ or Valkey; AOF with appendfsync always.",
            }
        },
        "channels": {
            "inbox": {
                "address": inbox_key(PREFIX, "{feed}"),
                "title": "A feed's inbox",
                "description": "XADD <inbox> * __data__ '<CloudEvent JSON>'. The feed's ACL "
                "user may only XADD here.",
                "parameters": {"feed": {"description": "The feed name (`dateline feeds add`)."}},
                "messages": {"update": {"$ref": "#/components/messages/update"}},
            },
            "partition": {
                "address": partition_stream(PREFIX, "{tag}"),
                "title": "A partition of the log",
                "description": "Written only by the append script; never trimmed. Each record "
                "carries `version`, `position` and `recordedtime` set by the log.",
                "parameters": {
                    "tag": {
                        "description": "The partition's hash tag `{pN}`, N = CRC-32 of the "
                        "story id mod the partition count."
                    }
                },
                "messages": {"record": {"$ref": "#/components/messages/record"}},
            },
            "rejected": {
                "address": rejected_key(PREFIX),
                "title": "Refused inbox entries",
                "messages": {"rejected": {"$ref": "#/components/messages/rejected"}},
            },
            "deadLetters": {
                "address": GroupKeys(PREFIX, "{group}").dlq,
                "title": "Parked updates of a consumer group",
                "parameters": {"group": {"description": "e.g. `projector-v1`."}},
                "messages": {"parked": {"$ref": "#/components/messages/parked"}},
            },
        },
        "operations": {
            "publishToInbox": {
                "action": "send",
                "title": "A feed publishes an update",
                "channel": {"$ref": "#/channels/inbox"},
                "messages": [{"$ref": "#/channels/inbox/messages/update"}],
            },
            "validateInbox": {
                "action": "receive",
                "title": "The validator reads inboxes (group `validator`)",
                "channel": {"$ref": "#/channels/inbox"},
                "messages": [{"$ref": "#/channels/inbox/messages/update"}],
            },
            "project": {
                "action": "receive",
                "title": "Projectors read the partitions (group `projector-<version>`)",
                "channel": {"$ref": "#/channels/partition"},
                "messages": [{"$ref": "#/channels/partition/messages/record"}],
            },
            "reject": {
                "action": "send",
                "title": "The validator records a refusal",
                "channel": {"$ref": "#/channels/rejected"},
                "messages": [{"$ref": "#/channels/rejected/messages/rejected"}],
            },
            "park": {
                "action": "send",
                "title": "A consumer parks a poison update and the story's later ones",
                "channel": {"$ref": "#/channels/deadLetters"},
                "messages": [{"$ref": "#/channels/deadLetters/messages/parked"}],
            },
        },
        "components": {
            "schemas": components,
            "messages": {
                "update": {
                    "name": "update",
                    "title": "A story update (CloudEvent)",
                    "contentType": "application/json",
                    "description": entry_note,
                    "payload": {"$ref": "#/components/schemas/Update"},
                },
                "record": {
                    "name": "record",
                    "title": "An update as the log holds it",
                    "contentType": "application/json",
                    "description": entry_note
                    + " The log adds `version`, `position` and `recordedtime`.",
                    "payload": {"$ref": "#/components/schemas/Update"},
                },
                "rejected": {
                    "name": "rejected",
                    "title": "A refused inbox entry",
                    "description": "A stream entry with these fields.",
                    "payload": {"$ref": "#/components/schemas/Rejected"},
                },
                "parked": {
                    "name": "parked",
                    "title": "A parked update",
                    "description": "A stream entry with these fields.",
                    "payload": {"$ref": "#/components/schemas/Parked"},
                },
            },
        },
    }


def rendered() -> bytes:
    return msgspec.json.format(msgspec.json.encode(document()), indent=2) + b"\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether it is stale")
    args = parser.parse_args(argv)
    if args.check:
        if not PATH.is_file() or PATH.read_bytes() != rendered():
            print(f"stale: {PATH}; run: python -m dateline.ingest.asyncapi", file=sys.stderr)
            return 1
        return 0
    PATH.write_bytes(rendered())
    print(f"wrote {PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
