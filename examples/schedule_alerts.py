"""A newsroom app on dateline's log, with the FastStream kit: tell the desk when a
schedule item moves or is cancelled, and when a story's outcome is in.

    REDIS_URL=redis://127.0.0.1:6379/0 python -m examples.schedule_alerts

(or `faststream run examples.schedule_alerts:create_app --factory`, with `faststream[cli]`).

(`dateline redis` prints a REDIS_URL for the embedded server; `dateline demo` publishes
the Hanoi story to it.) Each handler is a plain async function typed with the update
classes it wants; `dateline.kit` does the rest: the consumer group at 0, pending
entries first after a crash, retries in order, poison parked (`dateline dlq`).
Handlers are at-least-once: make what they do idempotent.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import TextIO

from faststream import FastStream

from dateline.kit import DatelineLog
from dateline_schemas.outcome import OutcomeReported
from dateline_schemas.schedule import ScheduleCancelled, ScheduleRescheduled


def create_app(url: str | None = None, *, out: TextIO = sys.stdout) -> FastStream:
    log = DatelineLog(
        url or os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        group="schedule-alerts",
        prefix=os.environ.get("DATELINE_PREFIX", "dateline"),
    )

    def say(story: str, text: str) -> None:
        out.write(f"[{story}] {text}\n")
        out.flush()

    @log.handler
    async def moved(update: ScheduleRescheduled) -> None:
        change = update.data.shift or f"to {update.data.starts_at}"
        because = f": {update.data.reason}" if update.data.reason else ""
        say(update.subject, f"{update.data.item} rescheduled ({change}){because}")

    @log.handler
    async def cancelled(update: ScheduleCancelled) -> None:
        because = f": {update.data.reason}" if update.data.reason else ""
        say(update.subject, f"{update.data.item} cancelled{because}")

    @log.handler
    async def outcome(update: OutcomeReported) -> None:
        say(update.subject, f"outcome {update.data.result}: {update.data.summary}")

    return log.app()


if __name__ == "__main__":
    asyncio.run(create_app().run())  # FastStream stops it cleanly on Ctrl-C or SIGTERM
