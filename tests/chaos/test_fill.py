"""The disk-full fault's filler (in the default suite: it takes a second)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# A file may grow to 8 MiB less 4 KiB in this child (RLIMIT_FSIZE, SIGXFSZ ignored: a
# write past it fails as one on a full disk does). Its last 1 MiB write then puts all but
# 4 KiB down, the case where a buffered file kept the rest for its close to fail on.
_CHILD = """
import resource, signal, sys
from pathlib import Path
from tests.chaos.harness import fill
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (8 * 2**20 - 4096, resource.RLIM_INFINITY))
print(fill(Path(sys.argv[1])).stat().st_size)
"""


def test_fill_takes_every_byte_it_can_and_never_fails_on_its_close(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == 8 * 2**20 - 4096
