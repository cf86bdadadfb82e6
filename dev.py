#!/usr/bin/env python3
"""Set up the project and run one of its jobs, on a machine that has only python3.

    python3 dev.py demo     # the live system on an embedded Redis, the Hanoi story
    python3 dev.py test     # lint, type-check and the default test suite (under 10 minutes)
    python3 dev.py slow     # the slow group: chaos, failovers, bench --quick, a 100k migrate, ...
    python3 dev.py bench    # every benchmark; results under bench/results/
    python3 dev.py chaos --minutes 10 --seed 7   # faults against the whole system, checked
    python3 dev.py soak --minutes 30             # steady load; memory, lag and p99 each minute
    python3 dev.py failover                      # failovers on a local cluster: what was lost

The first run builds .venv from uv.lock (uv itself is pinned below and comes from
PyPI); later runs reuse it and only re-sync when the lock file changed. Standard
library only: this file runs before anything is installed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
UV_VERSION = "0.13.8"
STAMP = VENV / ".dateline-lock-sha256"

JOBS = {
    "demo": "the Hanoi story on the embedded Redis (dateline demo)",
    "test": "ruff, mypy --strict, import-linter and pytest (unit, integration, e2e)",
    "slow": "the marked slow tests (chaos, failovers, bench --quick, 100k migrate); CI runs them",
    "bench": "every benchmark under bench/, results in bench/results/",
    "chaos": "faults on a schedule from a seed, then the checker (--minutes N --seed S)",
    "soak": "the whole system at a steady rate for --minutes N; table and picture in results",
    "failover": "failovers on a local cluster while feeds publish; what each lost (--help)",
    "lint": "ruff, mypy and import-linter only",
    "setup": "build .venv from uv.lock and stop",
}


def say(msg: str) -> None:
    print(f"[dev] {msg}", file=sys.stderr, flush=True)


def run(*cmd: str | Path, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run([str(c) for c in cmd], cwd=ROOT, env=env, check=False)
    if proc.returncode != 0:
        say(f"failed ({proc.returncode}): {' '.join(str(c) for c in cmd)}")
        sys.exit(proc.returncode)


def setup() -> None:
    lock = (ROOT / "uv.lock").read_bytes() + (ROOT / "pyproject.toml").read_bytes()
    want = hashlib.sha256(lock).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == want:
        return
    if sys.version_info < (3, 11):  # noqa: UP036 - this file runs on any python3
        say(f"dateline needs Python 3.11 or newer; this is {sys.version.split()[0]}")
        sys.exit(2)
    if not (BIN / "python").exists():
        say(f"creating {VENV.relative_to(ROOT)} with {sys.executable}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    if not (BIN / "uv").exists():
        say(f"installing uv {UV_VERSION}")
        run(BIN / "python", "-m", "pip", "install", "--quiet", f"uv=={UV_VERSION}")
    say("syncing .venv with uv.lock")
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(VENV)}
    # Bytecode now, once: where PYTHONDONTWRITEBYTECODE is set (this machine's image sets
    # it) every process would compile every module it imports, a second of CPU at each
    # start of a service, a test's subprocess or a rebuild worker.
    run(BIN / "uv", "sync", "--frozen", "--compile-bytecode", "--python", BIN / "python", env=env)
    run(BIN / "python", "-m", "compileall", "-q", "services", "schemas")
    STAMP.write_text(want)


DEBIAN_TOOLS = {
    "chromium": ("chromium", "the dashboard's browser tests", "DATELINE_CHROMIUM", []),
    # Without its recommends, which would add the node exporter, a service of its own.
    "promtool": ("prometheus", "the alert rules' tests", None, ["--no-install-recommends"]),
}
"""A command the tests run: Debian's package that has it, what needs it, a variable that
names another build of it, and apt's options for it."""


def debian_tools() -> None:
    """Debian's packages the tests run (`DEBIAN_TOOLS`), installed when missing and allowed."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    updated = False
    for command, (package, why, elsewhere, options) in DEBIAN_TOOLS.items():
        if shutil.which(command) or (elsewhere and os.environ.get(elsewhere)):
            continue
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            say(f"no {command}: {why} will fail; install Debian's {package} package")
            continue
        say(f"installing Debian's {package} for {why}")
        install = ["apt-get", "install", "-y", "-q", *options, package]
        if subprocess.run(install, stdout=subprocess.DEVNULL, env=env, check=False).returncode:
            if not updated:
                update = ["apt-get", "update", "-q"]
                subprocess.run(update, stdout=subprocess.DEVNULL, env=env, check=False)
                updated = True
            run(*install, env=env)


def asyncapi_parser() -> None:
    """The official AsyncAPI parser (npm) that a test validates schemas/asyncapi.json with."""
    tool = ROOT / "tools" / "asyncapi"
    if (tool / "node_modules" / "@asyncapi" / "parser").is_dir():
        return
    if not shutil.which("npm"):
        say("no npm: the AsyncAPI test will fail; install Node.js 20+")
        return
    say("installing the AsyncAPI parser from tools/asyncapi/package-lock.json")
    run("npm", "ci", "--prefix", tool, "--no-audit", "--no-fund", "--loglevel=error")


def workers(rest: list[str]) -> list[str]:
    """pytest-xdist's options for the default suite: a worker a core, up to four.

    Most of its time is end-to-end tests waiting on processes and servers: on two cores
    two workers took it from 10:09 to 5:47 (2026-12-01; 9:01 on 2026-12-07, the suite
    grown, about 55% of both cores busy). A worker more than the cores took 7:21 to 7:54
    (three runs): not the default, since its first two runs found tests that held only
    on an idle machine or in one order (mended), and one clean run is no proof against
    the next. Each worker starts servers of its own (its session's Valkey, Redis 6.2 and
    local cluster), on ports the system gives. Options of the caller's own win: `python3
    dev.py test -n 0` runs in one process, `-n 3` three workers."""
    if any(a.startswith(("-n", "--numprocesses", "--dist")) for a in rest):
        return []
    # The cores this process may run on (a container's cpuset), not the host's count.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    n = min(4, cores or 1)
    return [] if n < 2 else ["-n", str(n), "--dist", "worksteal"]


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in JOBS:
        print(__doc__.strip(), file=sys.stderr)
        print("\njobs:", file=sys.stderr)
        for name, what in JOBS.items():
            print(f"  {name:<6} {what}", file=sys.stderr)
        sys.exit(0 if argv and argv[0] in {"-h", "--help"} else 2)
    job, rest = argv[0], argv[1:]
    setup()
    if job == "setup":
        return
    if job in {"test", "lint"}:
        run(BIN / "ruff", "check", ".")
        run(BIN / "ruff", "format", "--check", ".")
        run(BIN / "mypy")
        # The layers' rule (docs/architecture.md): a wrong import fails here.
        run(BIN / "lint-imports")
        if job == "lint":
            return
        debian_tools()
        asyncapi_parser()
        run(BIN / "python", "-m", "pytest", *workers(rest), *rest)
    elif job == "slow":
        # The last -m wins over pyproject's "not slow".
        run(BIN / "python", "-m", "pytest", "-m", "slow", *rest)
    elif job == "bench":
        run(BIN / "python", "-m", "bench", *rest)
    elif job == "soak":
        run(BIN / "python", "-m", "bench.soak", *rest)
    elif job == "failover":
        run(BIN / "python", "-m", "tests.failover", *rest)
    elif job == "chaos":
        run(BIN / "python", "-m", "tests.chaos", *rest)
    elif job == "demo":
        os.execv(  # noqa: S606 - replaces this process with the venv's entry point
            BIN / "dateline", [str(BIN / "dateline"), "demo", *rest]
        )


if __name__ == "__main__":
    main(sys.argv[1:])
