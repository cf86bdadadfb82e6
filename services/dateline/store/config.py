"""Settings from the environment, checked once with errors that name the variable."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Fsync = Literal["always", "everysec", "no"]
_PREFIX = re.compile(r"[A-Za-z0-9_.-]{1,64}")
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
    partitions: int = 8
    """DATELINE_PARTITIONS: partition streams. Fixed once the log holds an update."""
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

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        url = environ.get("REDIS_URL") or None
        data_dir = Path(environ.get("DATELINE_DATA_DIR") or ".dateline").absolute()
        prefix = environ.get("DATELINE_PREFIX") or "dateline"
        if not _PREFIX.fullmatch(prefix):
            raise SettingsError(
                f"DATELINE_PREFIX: expected 1 to 64 of A-Z a-z 0-9 _ . -, got {prefix!r}"
            )
        raw_parts = environ.get("DATELINE_PARTITIONS") or "8"
        if not raw_parts.isdigit() or not 1 <= int(raw_parts) <= 1024:
            raise SettingsError(f"DATELINE_PARTITIONS: expected 1 to 1024, got {raw_parts!r}")
        fsync = environ.get("DATELINE_FSYNC") or "always"
        if fsync not in ("always", "everysec", "no"):
            raise SettingsError(f"DATELINE_FSYNC: expected always, everysec or no, got {fsync!r}")
        raw_ttl = environ.get("DATELINE_LEASE_TTL_MS") or "10000"
        if not raw_ttl.isdigit() or not 100 <= int(raw_ttl) <= 3_600_000:
            raise SettingsError(
                f"DATELINE_LEASE_TTL_MS: expected 100 to 3600000 (ms), got {raw_ttl!r}"
            )
        raw_mem = environ.get("DATELINE_MAXMEMORY_MB") or "0"
        if not raw_mem.isdigit() or int(raw_mem) > 16 * 1024 * 1024:
            raise SettingsError(
                f"DATELINE_MAXMEMORY_MB: expected megabytes (0: half the RAM), got {raw_mem!r}"
            )
        raw_live = environ.get("DATELINE_MAX_LIVE_STREAMS") or "1000"
        if not raw_live.isdigit() or not 1 <= int(raw_live) <= 100_000:
            raise SettingsError(
                f"DATELINE_MAX_LIVE_STREAMS: expected 1 to 100000, got {raw_live!r}"
            )
        raw_requests = environ.get("DATELINE_MAX_REQUESTS") or "64"
        if not raw_requests.isdigit() or not 1 <= int(raw_requests) <= 100_000:
            raise SettingsError(
                f"DATELINE_MAX_REQUESTS: expected 1 to 100000, got {raw_requests!r}"
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
        return cls(
            url,
            data_dir,
            prefix,
            int(raw_parts),
            fsync,  # type: ignore[arg-type]
            int(raw_ttl),
            int(raw_mem),
            int(raw_live),
            public,
            origins,
            rate,
            int(raw_requests),
        )
