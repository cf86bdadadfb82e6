"""Settings from the environment, checked once with errors that name the variable."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dateline.store.seal import SEAL_KEY_FILE, key_of, parse_key

Fsync = Literal["always", "everysec", "no"]
_PREFIX = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_REDIS_URL = re.compile(r"(rediss?|unix)://\S+")
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:\d{1,5})?")
_ORIGIN_PATH = re.compile(r"https?://[A-Za-z0-9.-]+(:\d{1,5})?(/[A-Za-z0-9._~/-]*)?")


class SettingsError(ValueError):
    """An environment variable holds a value dateline cannot use."""


@dataclass(frozen=True, slots=True)
class Settings:
    redis_url: str | None
    """REDIS_URL. None: dateline runs its own embedded server in `data_dir`."""
    data_dir: Path
    """DATELINE_DATA_DIR, default .dateline/ under the working directory."""
    prefix: str = "dateline"
    """DATELINE_PREFIX: every key starts with it, so deployments can share a server."""
    partitions: int | None = None
    """DATELINE_PARTITIONS: partition streams, fixed when the log is made. Unset: the log's
    count, and for a new log 8 on one server, 48 on a cluster (`store.log.log_keys`)."""
    fsync: Fsync = "always"
    """DATELINE_FSYNC: the embedded server's appendfsync policy."""
    lease_ttl_ms: int = 10_000
    """DATELINE_LEASE_TTL_MS: how long a dead consumer's partitions wait for another."""
    maxmemory_mb: int = 0
    """DATELINE_MAXMEMORY_MB: the embedded server's `maxmemory` (noeviction: a full server
    refuses writes, feeds get a 503, nothing is evicted). 0: half of this machine's RAM."""
    max_live_streams: int = 1000
    """DATELINE_MAX_LIVE_STREAMS: open live streams a query process serves; then 503."""
    public_url: str = ""
    """DATELINE_PUBLIC_URL: where readers reach the query service (https://news.example/
    dateline), for the `@id`s of JSON-LD exports; unset, they are relative. Never the
    request's `Host`, which a client chooses."""
    cors_origins: tuple[str, ...] = ()
    """DATELINE_CORS_ORIGINS: web origins (comma-separated) whose pages may read the
    query API with a token; none, no cross-origin reads at all."""
    rate_limit: float = 200.0
    """DATELINE_RATE_LIMIT: requests a second per token and per client address, to
    each ingest and query process (bursts of two seconds' worth); past it, 429. 0: off."""
    max_requests: int = 64
    """DATELINE_MAX_REQUESTS: requests a query process works on at once (live streams and
    probes apart); the next wait their turn, 10 s at most, then 503. Bounds its memory."""
    story_cache_mb: int = 32
    """DATELINE_STORY_CACHE_MB: story reads a query process keeps until it hears of a
    commit to their partition (`query/cache.py`). 0: every read goes to Redis."""

    min_replicas: int = -1
    """DATELINE_MIN_REPLICAS: replicas that must confirm an append before a feed is told
    it is in (`WAIT`), 0 to 16; `auto` (-1, the default): one if the server has a replica
    when a service starts, else none."""
    replica_timeout_ms: int = 1000
    """DATELINE_REPLICA_TIMEOUT_MS: how long an append waits for them; then a feed gets
    a 503 saying the update may or may not be in the log, and a retry is safe."""
    seal_key: bytes | None = None
    """DATELINE_SEAL_KEY: 64 hex digits, the key that seals the log's records
    (`store/seal.py`). For the projector, query, delivery and the CLI; never for ingest
    or the validator. Unset with the embedded server: `seal.key` in the data dir."""

    views_url: str | None = None
    """DATELINE_VIEWS_URL: the server that holds the read models, their checkpoints and
    the doorbell, apart from the log's (`docs/projections.md`, "Read models in a store of
    their own"). None: the log's server holds them, or the embedded one (`own_views`)."""
    own_views: bool = False
    """DATELINE_VIEWS_URL unset and no REDIS_URL: a second embedded server holds them,
    beside the log's (`store.embedded.served_views`). `log` turns it off."""
    live_pace_ms: int = 2
    """DATELINE_LIVE_PACE_MS: the least time between two wakes of a query process's live
    streams (`Doorbell.ring`): commits that come faster are pushed together, up to this
    much later. 0: each commit wakes them."""
    projector_warm_mb: int = 64
    """DATELINE_PROJECTOR_WARM_MB: the story states a projector process keeps decoded
    between batches, those written last (`projector/commit.py`, `Kept`). A hot story
    past them is decoded again every update: raise it for many long, hot stories."""
    projector_keep_mb: int = 32
    """DATELINE_PROJECTOR_KEEP_MB: the story states a projector process keeps packed
    between batches, beyond the decoded ones (`Kept`). A story past them is read from
    the store again when it next comes: raise it for many stories in play at once."""
    lag_trail_s: int = 5
    """DATELINE_LAG_TRAIL_S: how often a query process reads the projection's lag for the
    operations page's chart, which it keeps five minutes of: the page draws them as it
    opens. 0: not read (the chart starts with the page's own polls)."""

    def seal(self) -> bytes | None:
        """The seal key: DATELINE_SEAL_KEY, else the embedded server's (`seal.key`, which
        its start makes), else none."""
        if self.seal_key is not None or self.redis_url is not None:
            return self.seal_key
        path = self.data_dir / SEAL_KEY_FILE if self.data_dir else None
        return key_of(self.data_dir) if path is not None and path.exists() else None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        url = environ.get("REDIS_URL") or None
        data_dir = Path(environ.get("DATELINE_DATA_DIR") or ".dateline").absolute()
        prefix = environ.get("DATELINE_PREFIX") or "dateline"
        if not _PREFIX.fullmatch(prefix):
            raise SettingsError(
                f"DATELINE_PREFIX: expected 1 to 64 of A-Z a-z 0-9 _ . -, got {prefix!r}"
            )
        parts = (
            _number(environ, "DATELINE_PARTITIONS", "", 1, 1024, "1 to 1024")
            if environ.get("DATELINE_PARTITIONS")
            else None
        )
        fsync = environ.get("DATELINE_FSYNC") or "always"
        if fsync not in ("always", "everysec", "no"):
            raise SettingsError(f"DATELINE_FSYNC: expected always, everysec or no, got {fsync!r}")
        ttl = _number(
            environ, "DATELINE_LEASE_TTL_MS", "10000", 100, 3_600_000, "100 to 3600000 (ms)"
        )
        mem = _number(
            environ,
            "DATELINE_MAXMEMORY_MB",
            "0",
            0,
            16 * 1024 * 1024,
            "megabytes (0: half the RAM)",
        )
        live = _number(environ, "DATELINE_MAX_LIVE_STREAMS", "1000", 1, 100_000, "1 to 100000")
        requests = _number(environ, "DATELINE_MAX_REQUESTS", "64", 1, 100_000, "1 to 100000")
        cache = _number(
            environ, "DATELINE_STORY_CACHE_MB", "32", 0, 1_000_000, "0 (off) to 1000000"
        )
        public = (environ.get("DATELINE_PUBLIC_URL") or "").rstrip("/")
        if public and not _ORIGIN_PATH.fullmatch(public):
            raise SettingsError(
                f"DATELINE_PUBLIC_URL: expected http(s)://host[:port][/path], got {public!r}"
            )
        origins = tuple(
            o.strip() for o in (environ.get("DATELINE_CORS_ORIGINS") or "").split(",") if o.strip()
        )
        for origin in origins:
            if not _ORIGIN.fullmatch(origin):
                raise SettingsError(
                    f"DATELINE_CORS_ORIGINS: expected origins like https://desk.example "
                    f"(scheme, host, port; no path), got {origin!r}"
                )
        raw_rate = environ.get("DATELINE_RATE_LIMIT") or "200"
        try:
            rate = float(raw_rate)
        except ValueError:
            rate = -1.0
        if not 0 <= rate <= 1_000_000:
            raise SettingsError(
                f"DATELINE_RATE_LIMIT: expected requests a second (0: off), got {raw_rate!r}"
            )
        raw_replicas = environ.get("DATELINE_MIN_REPLICAS") or "auto"
        if raw_replicas != "auto" and not (raw_replicas.isdigit() and int(raw_replicas) <= 16):
            raise SettingsError(
                f"DATELINE_MIN_REPLICAS: expected auto or 0 to 16, got {raw_replicas!r}"
            )
        replicas = -1 if raw_replicas == "auto" else int(raw_replicas)
        wait_ms = _number(
            environ, "DATELINE_REPLICA_TIMEOUT_MS", "1000", 1, 60_000, "1 to 60000 (ms)"
        )
        views = environ.get("DATELINE_VIEWS_URL") or None
        if views is not None and views != "log" and not _REDIS_URL.fullmatch(views):
            raise SettingsError(
                "DATELINE_VIEWS_URL: expected redis://, rediss:// or unix:// and where the "
                f"store of read models is, or `log` (on the log's server), got {views!r}"
            )
        pace = _number(environ, "DATELINE_LIVE_PACE_MS", "2", 0, 1000, "0 to 1000 (ms)")
        warm = _number(
            environ, "DATELINE_PROJECTOR_WARM_MB", "64", 1, 1_000_000, "1 to 1000000 (MB)"
        )
        keep = _number(
            environ, "DATELINE_PROJECTOR_KEEP_MB", "32", 1, 1_000_000, "1 to 1000000 (MB)"
        )
        trail = _number(environ, "DATELINE_LAG_TRAIL_S", "5", 0, 300, "0 (off) to 300 (s)")
        raw_key = environ.get("DATELINE_SEAL_KEY") or ""
        try:
            seal_key = parse_key(raw_key) if raw_key else None
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
        return cls(
            url,
            data_dir,
            prefix,
            parts,
            fsync,  # type: ignore[arg-type]
            ttl,
            mem,
            live,
            public,
            origins,
            rate,
            requests,
            cache,
            replicas,
            wait_ms,
            seal_key,
            None if views == "log" else views,
            views is None and url is None,
            pace,
            warm,
            keep,
            lag_trail_s=trail,
        )


def _number(
    environ: Mapping[str, str], name: str, default: str, low: int, high: int, expected: str
) -> int:
    raw = environ.get(name) or default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise SettingsError(f"{name}: expected {expected}, got {raw!r}")
    return int(raw)
