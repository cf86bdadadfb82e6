"""What a command says when Redis is the trouble: one line naming the server, the cause
and what to do, where a traceback of redis-py's frames said it to nobody at 3 a.m.

Only the server's standing conditions are said so (unreachable, credentials refused, a
user not allowed a command, writes refused); any other error keeps its traceback: it
is a bug to report, not an outage to wait out.
"""

from __future__ import annotations

import os

from redis.exceptions import AuthenticationError, NoPermissionError

from dateline.runtime.patience import where
from dateline.store.connection import UNREACHABLE, write_refusal

_REFUSED = {
    "OOM": "it is out of memory (its maxmemory, under noeviction); make room and run "
    "the command again",
    "MISCONF": "it cannot write its append-only file (a full disk?); free the disk and "
    "run the command again",
    "NOREPLICAS": "it has fewer replicas than its min-replicas-to-write; bring them "
    "back, or lower the setting, and run the command again",
    "READONLY": "it is a replica; point REDIS_URL at the primary",
}


def said(exc: BaseException) -> str | None:
    """The line to say for `exc`, or None if it is not the server's condition."""
    at, why = server(), str(exc).rstrip(".")
    # Before UNREACHABLE: redis-py's AuthenticationError is a ConnectionError.
    if isinstance(exc, AuthenticationError):
        return f"Redis at {at} refused the credentials of REDIS_URL: {why}"
    if isinstance(exc, NoPermissionError):
        return (
            f"Redis at {at}: this user may not do that: {why} (the commands each "
            "dateline user needs are in deploy/users.acl and deploy/README.md)"
        )
    if isinstance(exc, UNREACHABLE):
        return (
            f"Redis at {at} cannot be reached: {why}. Is it running, and is REDIS_URL "
            "right? (unset, dateline starts its own in DATELINE_DATA_DIR)"
        )
    if (code := write_refusal(exc)) is not None:
        return (
            f"Redis at {at} refuses writes ({code}): {_REFUSED[code]}. The write it "
            "refused did not happen; what this command wrote before it stays"
        )
    return None


def server() -> str:
    """REDIS_URL's host and port, never its password; or the embedded server."""
    url = os.environ.get("REDIS_URL")
    return where(url) if url else "the embedded server"
