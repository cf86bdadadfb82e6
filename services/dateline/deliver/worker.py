"""Working through one subscription's outbox: in order per story, retried, then parked.

Each round reads the oldest `window` entries of the outbox and delivers them, one
story after another within a story and the stories side by side (up to
`concurrency` at once). An update leaves the outbox when the receiver answers 2xx.
Anything else (an error status, a timeout, a refused connection) is a failure: the
story stops there, and its update is tried again after an exponential backoff with
jitter (`RetryPolicy`), kept in Redis so that a restart keeps the schedule. Once
`give_up_after_s` has passed since its first failure, the update is parked in the
subscription's dead letters with the last error, and the story's later updates park
behind it (its order holds) until `dateline subscriptions redrive`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import aiohttp
import structlog

from dateline.deliver.acks import Acknowledgements
from dateline.deliver.targets import guarded_socket
from dateline.deliver.webhook import Headers, Signer, message_id, request
from dateline.runtime.metrics import DELIVERIES, DELIVERY_SECONDS
from dateline.store.connection import UNREACHABLE, described, outage
from dateline.store.subscriptions import Parked, RetryState, Subscription, Subscriptions
from dateline.store.together import gathered

log = structlog.get_logger("dateline.deliver")
Entry = tuple[str, dict[bytes, bytes]]
BEHIND = "parked behind an earlier update of this story"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    first_s: float = 1.0
    """The wait after the first failure; each further failure doubles it..."""
    max_backoff_s: float = 300.0
    """...up to this."""
    give_up_after_s: float = 86_400.0
    """Parked once this long has passed since an update's first failure."""
    timeout_s: float = 10.0
    """For a receiver's whole answer, from connecting to the last byte."""

    def delay(self, attempts: int, rng: Callable[[], float] = random.random) -> float:
        """Seconds before attempt `attempts + 1`: between half and all of the backoff,
        so that subscribers that failed together do not all come back at once."""
        backoff = min(self.max_backoff_s, self.first_s * 2.0 ** min(attempts - 1, 64))
        return backoff / 2 + rng() * backoff / 2


class Outcome:
    """What one delivery attempt came to, for the log and the retry state."""

    def __init__(self, status: int | None, error: str) -> None:
        self.status, self.error = status, error

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


SAID_BYTES = 4096
"""Of a receiver's answer, read: the start of an error's body for the log, and a short
2xx body whole, so that its connection serves the next POST."""


class Sender:
    """POSTs over two aiohttp sessions: the guarded one (`targets.guarded_socket`), and one
    for `--allow-private`. Each is made at its first POST: a session belongs to the event
    loop it was made in, and `create_app` runs before the loop does.

    aiohttp, not httpcore: a POST to a local receiver cost this process 1,044 to 1,283 us
    of CPU with httpcore's pool, 16 in flight (450 to 490 one at a time), against 68 to
    95 us with aiohttp's, whose HTTP parser is in C (`docs/speed.md`, "Deliveries")."""

    def __init__(self, limit: int = 64) -> None:
        self.limit = limit
        self._sessions: dict[bool, aiohttp.ClientSession] = {}

    def _session(self, allow_private: bool) -> aiohttp.ClientSession:
        session = self._sessions.get(allow_private)
        if session is None:
            connector = aiohttp.TCPConnector(
                limit=self.limit, socket_factory=None if allow_private else guarded_socket
            )
            # Redirects are not followed (a 3xx is a failure, as any answer but 2xx),
            # and no proxy is taken from the environment (`trust_env` stays off). No
            # compression is asked for: an error's body is logged as it comes.
            session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None),  # `post` bounds each whole
                skip_auto_headers=("Accept-Encoding",),
                auto_decompress=False,
            )
            self._sessions[allow_private] = session
        return session

    async def post(
        self,
        sub: Subscription,
        headers: Headers,
        body: bytes,
        timeout_s: float,
    ) -> Outcome:
        session = self._session(sub.allow_private)
        try:
            async with (
                asyncio.timeout(timeout_s),
                session.post(sub.url, data=body, headers=headers, allow_redirects=False) as answer,
            ):
                status, said = answer.status, await answer.content.read(SAID_BYTES)
        except TimeoutError:
            return Outcome(None, f"no answer within {timeout_s:g} s")
        except aiohttp.ClientConnectorError as exc:
            return Outcome(None, f"cannot connect to {exc.host}:{exc.port}: {exc.os_error}")
        except (aiohttp.ClientError, OSError) as exc:
            return Outcome(None, f"{type(exc).__name__}: {exc}")
        if 200 <= status < 300:
            return Outcome(status, "")
        text = said[:200].decode(errors="replace").strip()
        return Outcome(status, f"HTTP {status}" + (f": {text}" if text else ""))

    async def aclose(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()


class Sending:
    """The sends under way in a process, each from its request until its outcome is
    written (acknowledged, or its failure counted): none, and none to come once the
    workers hold, is when the outboxes stand still (`DeliveryService._follow_move`)."""

    def __init__(self) -> None:
        self.count = 0
        self.idle = asyncio.Event()
        self.idle.set()

    def __enter__(self) -> None:
        self.count += 1
        self.idle.clear()

    def __exit__(self, *_: object) -> None:
        self.count -= 1
        if not self.count:
            self.idle.set()


class Worker:
    def __init__(
        self,
        subscriptions: Subscriptions,
        name: str,
        sender: Sender,
        policy: RetryPolicy,
        *,
        window: int = 256,
        concurrency: int = 16,
        clock: Callable[[], float] = time.time,
        moving: Callable[[], str | None] = lambda: None,
        sending: Sending | None = None,
    ) -> None:
        self.subscriptions, self.name, self.sender, self.policy = (
            subscriptions,
            name,
            sender,
            policy,
        )
        self.window, self.clock = window, clock
        self.moving = moving
        """Where the log is being moved, or has moved (`dateline migrate`): no send then.
        What this process would send, the copy's outboxes hold, and the target's
        deliver sends it."""
        self.sending = Sending() if sending is None else sending
        self._slots = asyncio.Semaphore(concurrency)
        self._signer: tuple[str, Signer] | None = None
        self._acks = Acknowledgements(partial(subscriptions.delivered, name))

    async def run(self, stop: asyncio.Event) -> None:
        log.info("delivering", subscription=self.name)
        down = False
        while not stop.is_set():
            try:
                if await self._step(stop):
                    return
                if down:
                    log.warning("Redis reachable again; delivering", subscription=self.name)
                    down = False
            except UNREACHABLE as exc:
                if not down:
                    log.warning(
                        f"{outage(exc)}; waiting for it",
                        subscription=self.name,
                        error=described(exc),
                    )
                    down = True
                await _wait(stop, 1.0)

    async def _step(self, stop: asyncio.Event) -> bool:
        """One round; True when the subscription is gone."""
        sub = await self.subscriptions.get(self.name)
        if sub is None:
            log.info("subscription removed; its worker stops", subscription=self.name)
            return True
        secret = await self.subscriptions.secret(self.name)
        if sub.paused or secret is None or self.moving() is not None:
            await _wait(stop, 1.0)
            return False
        self._sign_with(secret)
        if await self.subscriptions.redrive_requested(self.name):
            back = await self.subscriptions.redrive(self.name)
            log.info("redriven", subscription=self.name, updates=back)
        wait_s, after = await self.round(sub)
        if wait_s:
            await self._wait_for_work(stop, wait_s, after)
        return False

    async def round(self, sub: Subscription) -> tuple[float, str | None]:
        """Deliver what is due in the window. Returns how long to wait (0: go on now) and
        the entry after which a new one ends the wait (None: the window was full, so
        newer entries would not be read before the wait is over anyway)."""
        entries = await self.subscriptions.window(self.name, self.window)
        if not entries:
            return 1.0, "0-0"
        retries = await self.subscriptions.retries(self.name, (e for e, _ in entries))
        held = await self.subscriptions.parked_stories(self.name)
        stories: dict[str, list[Entry]] = {}
        for entry in entries:
            stories.setdefault(entry[1].get(b"story", b"").decode(), []).append(entry)
        results = await gathered(  # a story still sending when the round is tried again
            *(self._story(sub, s, chain, retries, s in held) for s, chain in stories.items())
        )
        if any(progress for progress, _ in results):
            return 0.0, None
        due = min(at for _, at in results)
        after = None if len(entries) == self.window else entries[-1][0]
        return max(0.05, min(1.0, due - self.clock())), after

    async def _story(
        self,
        sub: Subscription,
        story: str,
        chain: list[Entry],
        retries: dict[str, RetryState],
        held: bool,
    ) -> tuple[bool, float]:
        """Deliver a story's entries in order: (any progress, when the next one is due)."""
        async with self._slots:
            for n, (entry, fields) in enumerate(chain):
                if held:
                    await self._park(chain[n:], BEHIND, 0)
                    return True, 0.0
                state = retries.get(entry)
                if state is not None and state.next_at > self.clock():
                    return n > 0, state.next_at
                if self.moving() is not None:  # frozen mid-round: not one send more
                    return n > 0, self.clock() + 1.0
                with self.sending:  # until its outcome is written
                    outcome = await self._send(sub, fields)
                    if outcome.ok:
                        await self._acks.add(entry, outcome.status or 0)
                        DELIVERIES.labels(self.name, "delivered").inc()
                        continue
                    next_at = await self._failed(story, chain[n:], state, outcome)
                if next_at is None:  # parked, with the story's rest
                    return True, 0.0
                return n > 0, next_at
            return True, 0.0

    async def _send(self, sub: Subscription, fields: dict[bytes, bytes]) -> Outcome:
        headers, body = request(fields[b"record"], sub.mode)
        now = self.clock()
        assert self._signer is not None  # noqa: S101 - `run` sets it before a round
        headers += self._signer[1].headers(message_id(fields[b"position"].decode()), body, now)
        started = time.perf_counter()
        outcome = await self.sender.post(sub, headers, body, self.policy.timeout_s)
        DELIVERY_SECONDS.labels(self.name).observe(time.perf_counter() - started)
        return outcome

    async def _failed(
        self, story: str, rest: list[Entry], state: RetryState | None, outcome: Outcome
    ) -> float | None:
        """Count a failure: when to try again, or None if it parked the update (and the
        story's rest)."""
        now = self.clock()
        attempts = 1 if state is None else state.attempts + 1
        first = now if state is None else state.first_failed
        entry, fields = rest[0]
        DELIVERIES.labels(self.name, "failed").inc()
        if now - first >= self.policy.give_up_after_s:
            log.error(
                "delivery given up; parked",
                subscription=self.name,
                story=story,
                position=fields[b"position"].decode(),
                attempts=attempts,
                error=outcome.error,
                behind=len(rest) - 1,
            )
            await self._park(rest, outcome.error, attempts)
            return None
        wait = self.policy.delay(attempts)
        log.warning(
            "delivery failed; will retry",
            subscription=self.name,
            story=story,
            position=fields[b"position"].decode(),
            attempt=attempts,
            error=outcome.error,
            retry_in_s=round(wait, 2),
        )
        await self.subscriptions.failed(
            self.name, entry, RetryState(attempts, first, now + wait, outcome.error)
        )
        return now + wait

    async def _park(self, rest: list[Entry], error: str, attempts: int) -> None:
        now = self.clock()
        first = rest[0][1][b"position"].decode()
        parkings = [
            (
                entry,
                fields,
                Parked(
                    entry=entry,
                    story=fields[b"story"].decode(),
                    position=fields[b"position"].decode(),
                    error=error if n == 0 else BEHIND,
                    attempts=attempts if n == 0 else 0,
                    parked_at=now,
                    behind=first if n > 0 else "",
                ),
            )
            for n, (entry, fields) in enumerate(rest)
        ]
        await self.subscriptions.park(self.name, parkings)
        DELIVERIES.labels(self.name, "parked").inc(len(parkings))

    def _sign_with(self, secret: str) -> None:
        if self._signer is None or self._signer[0] != secret:
            self._signer = (secret, Signer(secret))

    async def _wait_for_work(self, stop: asyncio.Event, wait_s: float, after: str | None) -> None:
        """Until an entry after `after` is in the outbox, a retry falls due, or a stop."""
        if after is None:
            await _wait(stop, wait_s)
            return
        outbox = self.subscriptions.state(self.name).outbox
        blocking = asyncio.ensure_future(
            self.subscriptions.client.xread({outbox: after}, block=max(1, int(wait_s * 1000)))
        )
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({blocking, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (blocking, stopping):
                task.cancel()
            await asyncio.gather(blocking, stopping, return_exceptions=True)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        async with asyncio.timeout(seconds):
            await stop.wait()
    except TimeoutError:
        return
