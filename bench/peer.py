"""Issue 3's peer: the same stories through the eventsourcing library's projection runner.

Its fastest local store is POPO (in memory); it is also the only local one whose
recorder supports the subscriptions the runner needs (9.5's SQLite recorder raises
NotImplementedError; PostgreSQL needs a server). The runner builds its own
application, so the events are saved through `runner.app` while the runner
projects them: the figure is write + project, and the write alone is measured on
the same events for comparison. The view does the same work as our projector,
`advance_in_place`, with a refold from the story's updates when that says so.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

import msgspec
from eventsourcing.application import Application
from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import Tracking
from eventsourcing.popo import POPOTrackingRecorder
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.projection import Projection, ProjectionRunner
from psycopg.sql import SQL, Identifier

from dateline.domain import advance_in_place, project
from dateline.domain.state import StoryState
from dateline_schemas import Update, decode_record

_state_json = msgspec.json.Encoder().encode


class StoryLog(Aggregate):
    def __init__(self, story: str) -> None:
        self.story = story

    @staticmethod
    def create_id(story: str) -> UUID:
        return uuid5(NAMESPACE_URL, f"/stories/{story}")

    @event("Recorded")
    def record(self, body: str) -> None:
        """One update as the log stores it."""


RECORDED: Any = StoryLog.Recorded  # type: ignore[attr-defined]  # made by @event
"""The event class `@event("Recorded")` adds to `StoryLog` when the class is made."""


class Stories(Application[UUID]):
    pass


class Folds:
    """Our projection, as both peers' views run it: fold in place, or refold the story."""

    def __init__(self) -> None:
        self.states: dict[str, StoryState] = {}
        self.updates: dict[str, list[Update]] = {}

    def fold(self, update: Update) -> StoryState:
        story = update.subject
        self.updates.setdefault(story, []).append(update)
        state = self.states.get(story) or StoryState(id=story)
        if not advance_in_place(state, update):
            state = project(story, self.updates[story])
        self.states[story] = state
        return state


class StoryView(POPOTrackingRecorder):
    def __init__(self) -> None:
        super().__init__()
        self.folds = Folds()

    def apply(self, update: Update, tracking: Tracking) -> None:
        with self._database_lock:
            self._assert_tracking_uniqueness(tracking)
            self.folds.fold(update)
            self._insert_tracking(tracking)


class StoryProjection(Projection[StoryView]):
    name = "storyprojection"

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        if isinstance(domain_event, RECORDED):
            self.view.apply(decode_record(domain_event.body.encode()), tracking)
        elif tracking.notification_id:
            with self.view._database_lock:
                self.view._insert_tracking(tracking)


def _story_logs(records: list[bytes]) -> list[StoryLog]:
    logs: dict[str, StoryLog] = {}
    for raw in records:
        story = decode_record(raw).subject
        if story not in logs:
            logs[story] = StoryLog(story)
        logs[story].record(raw.decode())
    return list(logs.values())


def run_peer(records: list[bytes]) -> tuple[float, float, int]:
    """(updates/s written and projected by the runner, updates/s written alone, stories)."""
    env = {"PERSISTENCE_MODULE": "eventsourcing.popo"}
    alone = Stories(env)
    logs = _story_logs(records)
    start = time.perf_counter()
    alone.save(*logs)
    write_rate = len(records) / (time.perf_counter() - start)
    alone.close()
    rate, stories = _run(records, StoryProjection, StoryView, env)
    return rate, write_rate, stories


SAVE_STORIES = 20
"""Stories an application's save holds: about 400 updates in the bench's mix."""


def _run(
    records: list[bytes], projection: type[Any], view: type[Any], env: dict[str, str]
) -> tuple[float, int]:
    """(updates/s saved and projected by a projection runner, stories projected)."""
    logs = _story_logs(records)
    start = time.perf_counter()
    with ProjectionRunner(
        application_class=Stories, projection_class=projection, view_class=view, env=env
    ) as runner:
        # A few stories a save: 10,000 updates in one save hung in psycopg's pipeline
        # (both ends waiting, psycopg/psycopg#685), where 1,000 did not.
        recordings = []
        for i in range(0, len(logs), SAVE_STORIES):
            recordings += runner.app.save(*logs[i : i + SAVE_STORIES])
        runner.wait(max(r.notification.id for r in recordings), timeout=1800)
        rate = len(records) / (time.perf_counter() - start)
        stories = len(runner.projection.view.folds.states)
    return rate, stories


def _pg_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(versions[-1]) if versions else None


@contextlib.contextmanager
def postgres_server(directory: Path) -> Iterator[dict[str, str] | None]:
    """A PostgreSQL server of its own in `directory`, on a loopback port, started from the
    machine's binaries (Debian's `postgresql`); yields eventsourcing's settings for it,
    or None where PostgreSQL is not installed. As root, it runs as user `postgres` (the
    server refuses root)."""
    initdb, pg_ctl = _pg_binary("initdb"), _pg_binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        yield None
        return
    as_user: list[str] = []
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:  # no user to run it as, and the server refuses root
            yield None
            return
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(directory, "postgres")
    data = directory / "pg"
    port = _free_port()
    subprocess.run(
        [*as_user, initdb, "-D", str(data), "-U", "bench", "--auth=trust", "-E", "UTF8"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    options = f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=on"
    subprocess.run(
        [
            *as_user,
            pg_ctl,
            "-D",
            str(data),
            "-o",
            options,
            "-w",
            "-l",
            str(directory / "pg.log"),
            "start",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": "postgres",
            "POSTGRES_HOST": "127.0.0.1",
            "POSTGRES_PORT": str(port),
            "POSTGRES_USER": "bench",
            "POSTGRES_PASSWORD": "",
        }
    finally:
        subprocess.run(
            [*as_user, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgStoryView(PostgresTrackingRecorder):
    """The same projection on PostgreSQL: each update folds the story as ours does, and
    the state is written (an upsert of its JSON, as our projector writes it to Redis)
    with the tracking record, in one transaction."""

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {0}.story_states "
                "(id text PRIMARY KEY, version bigint, state jsonb)"
            ).format(Identifier(self.datastore.schema))
        )
        self.upsert = SQL(
            "INSERT INTO {0}.story_states VALUES (%(id)s, %(version)s, %(state)s) "
            "ON CONFLICT (id) DO UPDATE SET version = %(version)s, state = %(state)s"
        ).format(Identifier(self.datastore.schema))
        self.folds = Folds()

    def apply(self, update: Update, tracking: Tracking) -> None:
        state = self.folds.fold(update)
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                self.upsert,
                {"id": state.id, "version": state.version, "state": _state_json(state).decode()},
            )
            self._insert_tracking(curs, tracking)


class PgStoryProjection(Projection[PgStoryView]):
    name = "pgstoryprojection"

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        if isinstance(domain_event, RECORDED):
            self.view.apply(decode_record(domain_event.body.encode()), tracking)
        elif tracking.notification_id:
            self.view.insert_tracking(tracking)


def run_pg_peer(records: list[bytes], settings: dict[str, str]) -> tuple[float, int]:
    """(updates/s written and projected by the runner on PostgreSQL, stories)."""
    return _run(records, PgStoryProjection, PgStoryView, settings)


def pg_peer_within(
    records: list[bytes], settings: dict[str, str], seconds: float
) -> tuple[float, int] | None:
    """`run_pg_peer` in a process of its own, given `seconds`; None if it had no answer
    by then (the process is killed). One full bench hung there for 20 minutes: the
    application's `save` waited in psycopg's `Pipeline.sync` for a reply while every
    server session was idle; the bench has no other way to end such a wait."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        answer = pool.apply_async(run_pg_peer, (records, settings))
        try:
            return answer.get(seconds)
        except multiprocessing.TimeoutError:
            return None  # leaving the block terminates the pool's process
