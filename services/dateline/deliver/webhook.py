"""One delivery as an HTTP request: the update as a CloudEvent, signed per Standard Webhooks.

The stored record is a CloudEvent already (the producer's attributes and `data`, and
the log's `version`, `position` and `recordedtime` as extension attributes), so it goes
out as it is. Structured mode sends it whole (`application/cloudevents+json`); binary
mode sends `data` as the body and every other attribute in a `ce-` header,
percent-encoded as the CloudEvents HTTP binding says.

Signing (https://www.standardwebhooks.com): `webhook-id` names the message for good (a
retry carries the same one, so a receiver drops what it has seen); `webhook-timestamp`
is the attempt's time; `webhook-signature` is `v1,` and the base64 HMAC-SHA256 of
`<id>.<timestamp>.<body>` under the subscription's secret.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from standardwebhooks import Webhook

from dateline.store.subscriptions import Mode

STRUCTURED = "application/cloudevents+json; charset=utf-8"
_attributes = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
_plain = msgspec.json.decode
# The HTTP binding: percent-encode space, '"', '%' and everything outside printable ASCII.
_SAFE = frozenset(range(0x21, 0x7F)) - {ord('"'), ord("%")}


def message_id(position: str) -> str:
    """The Standard Webhooks message id of an update: its log position, for good."""
    return "dl_" + position.replace(":", "_")


def percent_encode(value: str) -> str:
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in value.encode())


def _header_value(raw: msgspec.Raw) -> str:
    value: Any = _plain(raw)
    if isinstance(value, bool):
        return "true" if value else "false"
    return percent_encode(str(value))


Headers = list[tuple[str, str]]


def request(record: bytes, mode: Mode) -> tuple[Headers, bytes]:
    """Headers (without the signature's) and body of one update in `mode`."""
    if mode == "structured":
        return [("content-type", STRUCTURED)], record
    attrs = _attributes(record)
    body = bytes(attrs.pop("data", msgspec.Raw(b"null")))
    kind = attrs.pop("datacontenttype", None)
    headers = [("content-type", "application/json" if kind is None else str(_plain(kind)))]
    headers += [(f"ce-{k}", _header_value(v)) for k, v in attrs.items()]
    return headers, body


class Signer:
    """Standard Webhooks headers for one subscription's secret."""

    def __init__(self, secret: str) -> None:
        self._webhook = Webhook(secret)

    def headers(self, msg_id: str, body: bytes, now: float) -> Headers:
        stamp = datetime.fromtimestamp(int(now), tz=UTC)
        signature = self._webhook.sign(msg_id, stamp, body.decode())
        return [
            ("webhook-id", msg_id),
            ("webhook-timestamp", str(int(now))),
            ("webhook-signature", signature),
        ]
