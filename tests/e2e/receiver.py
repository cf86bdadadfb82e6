"""A webhook receiver in its own process, for the delivery tests: it records every
request it gets and answers by a script, so that it can fail for a while and recover.

    python -m tests.e2e.receiver --port P --out requests.ndjson --secret whsec_... \
        --script 500:3,hang:2,ok

`500:3`: answer the next three requests with 500; `hang:2`: the next two get no answer
(the sender times out); `ok`: 204 from then on. Each line of the output is one request:
its headers, body, the answer given and whether the Standard Webhooks signature held.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

import uvicorn
from standardwebhooks import Webhook, WebhookVerificationError


def plan(script: str) -> list[str]:
    steps: list[str] = []
    for part in script.split(","):
        what, _, times = part.partition(":")
        steps += [what] * (int(times) if times else 1)
    return steps


def create_app(out: Path, secret: str, script: str) -> Any:
    steps = plan(script)
    last = steps[-1] if steps else "ok"
    webhook = Webhook(secret) if secret else None
    lock = asyncio.Lock()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                # The sender went away mid-request (killed, say): it never had an answer,
                # so this is no delivery, and its half a body is no update.
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        async with lock:
            step = steps.pop(0) if steps else last
        valid = None
        if webhook is not None:
            try:
                webhook.verify(body, headers, json_parse=False)
                valid = True
            except WebhookVerificationError:
                valid = False
        status = {"ok": 204, "500": 500, "hang": 0}.get(step, 204)
        record = {
            "at": time.time(),
            "headers": headers,
            "body": base64.b64encode(body).decode(),
            "answered": status,
            "valid": valid,
        }
        with out.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if step == "hang":
            await asyncio.sleep(3600)
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send(
            {"type": "http.response.body", "body": b"" if status == 204 else b"receiver says no"}
        )

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--secret", default="")
    parser.add_argument("--script", default="ok")
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.out, args.secret, args.script),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        timeout_graceful_shutdown=1,
    )


if __name__ == "__main__":
    main()
