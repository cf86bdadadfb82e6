"""Who owns the embedded server when several dateline processes share a data dir.

A brief command (`publish`, `status`, `readers add`) that finds no server starts one
and stops it when it ends. A lasting process (`up`, `demo`, `redis`) started meanwhile
used to take that server for its own services, which then lost it a moment later
("cannot be reached": `up` exited 1). It now waits for the command to end and starts
its own; brief commands still share whatever server runs, and a server's owner waits for
the brief commands sharing it to end before it stops it (before, a brief command's server
stopped under another brief command using it when the first ended)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from dateline.store.config import Settings
from dateline.store.embedded import served

_BRIEF = """
import sys, time
from dateline.store.config import Settings
from dateline.store.embedded import served
with served(Settings.from_env()) as (url, own):
    print(url, own is not None, own.pid if own else 0, flush=True)
    if sys.argv[1] == "told":
        sys.stdin.readline()
    else:
        time.sleep(float(sys.argv[1]))
"""


def _settings(data_dir: Path) -> Settings:
    return Settings.from_env({"DATELINE_DATA_DIR": str(data_dir)})


def _brief(data_dir: Path, seconds: float | None) -> tuple[subprocess.Popen[str], str, int]:
    """A brief command's server (started by it), held for `seconds`, or with None until a
    line comes on its stdin (`told`); its URL and pid."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL",)}
    env["DATELINE_DATA_DIR"] = str(data_dir)
    proc = subprocess.Popen(
        [sys.executable, "-c", _BRIEF, "told" if seconds is None else str(seconds)],
        env=env,
        stdin=subprocess.PIPE if seconds is None else None,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    url, started, pid = proc.stdout.readline().split()
    assert started == "True"
    return proc, url, int(pid)


def test_a_lasting_process_waits_for_a_brief_commands_server_and_starts_its_own(
    tmp_path: Path,
) -> None:
    brief, brief_url, brief_pid = _brief(tmp_path, 2.0)
    try:
        began = time.monotonic()
        with served(_settings(tmp_path), lasting=True) as (url, own):
            # The command's server had stopped (the command itself may still be exiting).
            with pytest.raises(ProcessLookupError):
                os.kill(brief_pid, 0)
            assert time.monotonic() - began > 1.0
            assert own is not None  # the server is this process's
            assert url != brief_url
            client = redis.Redis.from_url(url)
            assert client.ping()  # and it outlives the command
            client.close()
            # A brief command now shares it, and does not stop it when it ends.
            assert _brief_guest(tmp_path) == url
            assert redis.Redis.from_url(url).ping()
    finally:
        brief.kill()
        brief.wait()


def _brief_guest(data_dir: Path) -> str:
    """The URL a brief command used, which it did not start."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL",)}
    env["DATELINE_DATA_DIR"] = str(data_dir)
    done = subprocess.run(
        [sys.executable, "-c", _BRIEF, "0"], env=env, capture_output=True, text=True, check=True
    )
    url, started, _ = done.stdout.split()
    assert started == "False"
    return url


def test_a_brief_command_shares_a_brief_commands_server(tmp_path: Path) -> None:
    brief, brief_url, _ = _brief(tmp_path, 3.0)
    try:
        with served(_settings(tmp_path)) as (url, own):
            assert own is None and url == brief_url
    finally:
        brief.kill()
        brief.wait()


_GUEST = """
import sys, time, redis
from dateline.store.config import Settings
from dateline.store.embedded import served
with served(Settings.from_env()) as (url, own):
    print(url, own is not None, flush=True)
    time.sleep(float(sys.argv[1]))
    print(redis.Redis.from_url(url).ping(), flush=True)
"""


def test_a_brief_commands_server_outlives_it_while_another_brief_command_uses_it(
    tmp_path: Path,
) -> None:
    owner, owner_url, owner_pid = _brief(tmp_path, None)
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL",)}
    env["DATELINE_DATA_DIR"] = str(tmp_path)
    guest = subprocess.Popen(
        [sys.executable, "-c", _GUEST, "2.5"], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert guest.stdout is not None
        url, started = guest.stdout.readline().split()
        assert (url, started) == (owner_url, "False")
        # The owner's own work ends first, told once the guest is in (a guest slow to
        # start under load would otherwise find no server); it waits for its guest
        # before stopping.
        told(owner)
        assert owner.wait(timeout=30) == 0
        assert guest.stdout.readline().strip() == "True"  # the server answered to the end
        assert guest.wait(timeout=30) == 0
        with pytest.raises(ProcessLookupError):
            os.kill(owner_pid, 0)  # and then it stopped
        # A brief command after both starts its own.
        with served(_settings(tmp_path)) as (_, own):
            assert own is not None
    finally:
        for proc in (owner, guest):
            proc.kill()
            proc.wait()


def told(proc: subprocess.Popen[str]) -> None:
    """A brief command held until told (`_brief`'s None), told to end its work."""
    assert proc.stdin is not None
    proc.stdin.write("\n")
    proc.stdin.close()
