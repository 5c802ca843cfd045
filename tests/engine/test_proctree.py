"""``engine.proctree`` pieces that need no executor: the no-child fast path of
``kill_descendants`` (checked in a fresh interpreter, which has no child of its own)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import os, subprocess, sys
from backfill.engine import proctree
assert not proctree._has_children()
assert proctree.kill_descendants() == 0
child = subprocess.Popen([sys.executable, "-c", "pass"])
os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
assert proctree._has_children()  # the check reaps nothing
assert proctree._has_children()
sleeper = subprocess.Popen(["sleep", "60"])
assert proctree.kill_descendants() == 2  # the zombie and the sleeper, both reaped
assert not proctree._has_children()
try:
    os.kill(sleeper.pid, 0)
except ProcessLookupError:
    pass
else:
    raise AssertionError("the sleeper is still there")
print("ok")
"""


def test_kill_descendants_without_children_is_one_check_and_with_children_still_kills() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
