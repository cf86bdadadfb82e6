"""When a server dateline runs itself rewrites its AOF: in a lull, not in a burst.

Valkey rewrites its AOF by itself once the file has grown by `auto-aof-rewrite-percentage`
since the last rewrite (100% by default). The rewrite forks, and its child writes the whole
dataset: a core and the disk, for seconds, while `appendfsync always` makes every reply
wait for an fsync behind those writes. Under load the AOF grows fastest, so that is when
the rewrite came: the p99 from append to read model in 5-second rounds at 5,000 updates/s
read 57 ms at the median of 11 rounds that met one, 32 ms of 5 that did not; a two-worker
rebuild of 1M updates, 124k/s with one in it, 148k/s without (medians of 6; `docs/speed.md`).

So the embedded server's own rule is set far out (`HARD_GROWTH_PCT`: a bound the server
keeps in any traffic, whatever happens to this process), and `LullRewrites` asks for the
rewrite at Valkey's usual point (the AOF doubled) once the writes and the reads have
paused (`Lull`). A newsroom's traffic has lulls; a burst of breaking news then meets no
rewrite.

The reads too: a rebuild with its read models apart only reads the log's server, whose
AOF alone read as a lull, so the log's rewrite (a core for seconds) came in the middle
of the rebuild, which then ran at 137.9k and 145.5k updates a second rather than 170k
to 181k (two workers, 1M updates; `docs/speed.md`, "The log's rewrite in a rebuild").
So what the server sends its clients counts as well (`quiet_sent_bytes_s`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import redis
import structlog

from dateline.store.connection import described

log = structlog.get_logger("dateline.store")

HARD_GROWTH_PCT = 1000
"""The server rewrites by itself once its AOF is eleven times what the last rewrite left,
busy or not: the bound on the disk it takes. What a rewrite leaves is a compressed RDB,
3.5 times smaller than the data in memory on the bench's mix (175 MB in memory, 50 MB
rewritten), so the bound is about three times the data. At Valkey's default (100%), a
rebuild of every read model writes 130% of that base and five seconds at 5,000 updates/s
about as much: most of them met a rewrite."""
MIN_SIZE = 64 * 2**20
"""Below this an AOF is never rewritten (Valkey's own `auto-aof-rewrite-min-size`)."""


@dataclass(frozen=True)
class Sizes:
    """What `INFO persistence` says of the AOF at one moment."""

    at: float
    """time.monotonic() when read."""
    current: int
    base: int
    """The size the last rewrite left."""
    busy: bool
    """A rewrite runs or is scheduled."""
    sent: int = 0
    """The bytes the server has sent its clients so far (`INFO stats`)."""


@dataclass
class Lull:
    """Is a rewrite due now? Once the AOF has grown by `growth` since the last rewrite (and
    is `min_size` at least), when it grew by `quiet_bytes_s` a second at most over the last
    `lull_s` seconds, all of them since that rewrite, and sent its clients
    `quiet_sent_bytes_s` a second at most over them. Pure: it sees the sizes it is given,
    in order."""

    growth: float = 1.0
    min_size: int = MIN_SIZE
    lull_s: float = 10.0
    quiet_bytes_s: float = 64 * 1024
    """About 20 updates a second (an update writes 3.5 KB to the AOF, with its read models)."""
    quiet_sent_bytes_s: float = 2**20
    """What the server sends its clients, a second: the log's server sent 12 KB a second
    at 20 updates a second and 54 KB at 100 (to a projector, its read models apart), and
    49 to 69 MB to a rebuild reading the stories' histories."""
    poll_s: float = 1.0
    """How often `LullRewrites` reads the sizes."""

    def __post_init__(self) -> None:
        self._seen: deque[Sizes] = deque()

    def due(self, now: Sizes) -> bool:
        seen = self._seen
        if seen and seen[-1].base != now.base:
            # A rewrite ended (ours or anyone's): sizes before it are of another file, and
            # a drop across it would read as a lull while the writes go on.
            seen.clear()
        seen.append(now)
        while len(seen) > 1 and seen[1].at <= now.at - self.lull_s:
            seen.popleft()  # the first kept is the last one read at least lull_s ago
        if now.busy or now.current < max(self.min_size, now.base * (1 + self.growth)):
            return False
        then = seen[0]
        span = now.at - then.at
        if span <= 0 or span < self.lull_s:
            return False  # not watched for a whole lull yet
        unwritten = (now.current - then.current) / span <= self.quiet_bytes_s
        return unwritten and (now.sent - then.sent) / span <= self.quiet_sent_bytes_s


def sizes(client: redis.Redis) -> Sizes | None:
    """The AOF's sizes and what the server has sent, or None if it keeps no AOF."""
    info = client.info("persistence")
    if not int(info.get("aof_enabled", 0)):
        return None
    stats = client.info("stats")
    return Sizes(
        time.monotonic(),
        int(info["aof_current_size"]),
        int(info["aof_base_size"]),
        bool(int(info["aof_rewrite_in_progress"]) or int(info["aof_rewrite_scheduled"])),
        int(stats["total_net_output_bytes"]),
    )


_running: set[str] = set()
"""The servers of this process whose rewrite a watch started and has not seen end."""
_one_at_a_time = threading.Lock()


class LullRewrites:
    """A thread that reads the server's AOF sizes every `lull.poll_s` and starts a
    rewrite when `lull` says one is due. It only ever makes a rewrite come sooner than
    the server's own rule would; stopped or failing, the server still keeps its bound.

    One rewrite at a time among the servers this process watches: the nodes of a local
    cluster take the same writes and pause together, and six forks at once (seen in the
    bench) took both cores from everything else."""

    def __init__(self, client: redis.Redis, lull: Lull, name: str) -> None:
        self.client, self.lull, self.name = client, lull, name
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"aof-lull {name}", daemon=True)
        self.rewrites = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        with _one_at_a_time:
            _running.discard(self.name)
        self.client.close()

    def _run(self) -> None:
        failing = False
        while not self._stop.wait(self.lull.poll_s):
            try:
                self._check()
                failing = False
            except redis.RedisError as exc:
                if not failing:  # once a spell: a server restarting answers nothing for a while
                    log.warning("AOF lull watch failed", server=self.name, error=described(exc))
                failing = True
                with _one_at_a_time:  # a server gone must not keep the others from theirs
                    _running.discard(self.name)
            finally:
                # No connection held between checks: a server killed with one open
                # leaves its port in TIME_WAIT, and a test that binds the dead server's
                # port to keep it from coming back (a crash drill) could not.
                self.client.connection_pool.disconnect()

    def _check(self) -> None:
        now = sizes(self.client)
        if now is None:
            return
        due = self.lull.due(now)
        with _one_at_a_time:
            if not now.busy:
                _running.discard(self.name)  # ours ended, if it was ours
            if not due or _running:
                return
            self.client.bgrewriteaof()
            _running.add(self.name)
            self.rewrites += 1
            log.info(
                "AOF rewrite started in a lull",
                server=self.name,
                aof_bytes=now.current,
                after_last_rewrite=now.base,
            )
