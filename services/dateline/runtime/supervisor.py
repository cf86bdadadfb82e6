"""One parent for the services of `dateline demo` and `dateline up`.

Each service is a child process in its own session (so Ctrl-C reaches only the
supervisor, which stops them in order), told by the kernel to exit if the supervisor
dies. A child that exits on its own is logged and restarted, with a backoff that
grows while it keeps dying young. Children write to their own log files, never to a
pipe nobody reads; those files (and the embedded server's) rotate at `LOG_MAX_BYTES`,
`LOG_KEPT` old ones kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dateline.store.embedded import EmbeddedRedis, EmbeddedRedisError, die_with_parent

YOUNG_S = 10.0  # a child that dies sooner than this after starting backs off longer
MAX_BACKOFF_S = 30.0
LOG_MAX_BYTES = 10 * 2**20
LOG_KEPT = 3


@dataclass
class Child:
    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    """Set for this child on top of the supervisor's environment."""
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restarts: int = 0
    fast_deaths: int = 0
    restart_at: float | None = None
    history: list[int] = field(default_factory=list)
    """Exit codes of its past runs."""


def service(name: str, *args: str) -> list[str]:
    """The command line of a `dateline` subcommand, run by this same interpreter."""
    return [sys.executable, "-m", "dateline", name, *args]


class Supervisor:
    def __init__(
        self,
        children: list[Child],
        env: dict[str, str],
        say: Callable[[str], None],
        servers: Sequence[tuple[str, EmbeddedRedis]] = (),
    ) -> None:
        self.children, self.env, self.say = children, env, say
        self.servers = list(servers)
        """The embedded servers this process runs, by name (the log's, the read models'
        store): each restarted like a child."""
        self.server_restarts = 0

    def start(self) -> None:
        for child in self.children:
            self._spawn(child)

    def _spawn(self, child: Child) -> None:
        child.log_path.parent.mkdir(parents=True, exist_ok=True)
        with child.log_path.open("ab") as out:
            child.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                child.argv,
                env={**self.env, **child.env},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - prctl only, no locks taken
            )
        child.started, child.restart_at = time.monotonic(), None

    def check(self) -> None:
        """Restart the server and children that exited, rotate the logs that grew too
        big; call it every half second or so."""
        for name, server in self.servers:
            self._check_server(name, server)
        for path in [c.log_path for c in self.children] + [s.logfile for _, s in self.servers]:
            rotate(path)
        now = time.monotonic()
        for child in self.children:
            if child.proc is not None and (code := child.proc.poll()) is not None:
                child.history.append(code)
                child.proc = None
                lived = now - child.started
                child.fast_deaths = child.fast_deaths + 1 if lived < YOUNG_S else 0
                delay = min(MAX_BACKOFF_S, 0.5 * 2 ** max(0, child.fast_deaths - 1))
                child.restart_at = now + delay
                self.say(
                    f"{child.name} exited with {_status(code)} after {lived:.1f} s; "
                    f"restarting in {delay:g} s (log: {child.log_path})"
                )
            if child.proc is None and child.restart_at is not None and now >= child.restart_at:
                child.restarts += 1
                self._spawn(child)
                self.say(f"{child.name} restarted (restart {child.restarts})")

    def _check_server(self, name: str, server: EmbeddedRedis) -> None:
        """A dead embedded server comes back on its port from its AOF; the services
        reconnect to it by themselves (they wait out the outage, they do not exit)."""
        if (code := server.exited()) is None:
            return
        self.say(
            f"{name} exited with {_status(code)}; restarting it on port {server.port} "
            f"from its AOF (log: {server.logfile})"
        )
        started = time.monotonic()
        try:
            server.start()
        except EmbeddedRedisError as exc:
            self.say(f"{name} did not come back: {exc}; trying again")
            return
        self.server_restarts += 1
        took = time.monotonic() - started
        self.say(f"{name} is back after {took:.1f} s (restart {self.server_restarts})")

    async def watch(self, stop: asyncio.Event, every_s: float = 0.5) -> None:
        while not stop.is_set():
            self.check()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM every child, wait for them, SIGKILL what is left after `grace_s`."""
        running = [
            (c.name, c.proc) for c in self.children if c.proc is not None and c.proc.poll() is None
        ]
        for _, proc in running:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for name, proc in running:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(f"{name} did not stop within {grace_s:g} s; killing it")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def rotate(path: Path, max_bytes: int = LOG_MAX_BYTES, kept: int = LOG_KEPT) -> bool:
    """Past `max_bytes`, `path` goes to `path.1` (`.1` to `.2`, and so on, `kept` in all)
    and starts empty again. Copied, then truncated: the writer keeps its descriptor
    (opened to append, it writes at the new end), as logrotate's copytruncate does; a
    line written between the copy and the truncation is lost with the old file."""
    try:
        if path.stat().st_size <= max_bytes:
            return False
    except FileNotFoundError:
        return False
    for n in range(kept - 1, 0, -1):
        older = path.with_name(f"{path.name}.{n}")
        if older.exists():
            older.replace(path.with_name(f"{path.name}.{n + 1}"))
    shutil.copyfile(path, path.with_name(f"{path.name}.1"))
    os.truncate(path, 0)
    return True


def _status(code: int) -> str:
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"status {code}"
