"""Large temporaries freed on a worker thread go back to the system (glibc), as the daemon sets up its heap."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO

# In a fresh process: one large block made and freed (glibc then raises its mmap threshold past 1 MiB), then
# twenty 1 MiB arrays made on a worker thread and all but the last freed; prints the RSS they leave behind.
_PROGRAM = textwrap.dedent(
    """
    import sys, threading
    import numpy as np
    from daemon.heap import map_large_blocks

    def anon_kib():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("RssAnon:"))

    if sys.argv[1] == "unpooled":
        map_large_blocks()

    def work():
        big = np.ones(8 << 20, np.uint8)
        del big
        arrays = [np.ones(1 << 20, np.uint8) for _ in range(20)]
        last = arrays[-1]
        before = anon_kib()
        del arrays
        print(before - anon_kib(), last.sum() > 0)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    """
)


def returned_kib(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _PROGRAM, mode],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(done.stdout.split()[0])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_large_temporaries_freed_on_a_thread_go_back_to_the_system() -> None:
    assert returned_kib("unpooled") >= 18 * 1024  # the 19 arrays freed (1 MiB each) leave the RSS
