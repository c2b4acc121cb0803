"""Large temporaries freed on a worker thread go back to the system (glibc), and a search's smaller ones are
reused rather than faulted in again, as the daemon sets up its heap."""

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
    from daemon.heap import tune_heaps

    def anon_kib():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("RssAnon:"))

    if sys.argv[1] == "unpooled":
        tune_heaps()

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


# In a fresh process: on a worker thread, a search's temporaries (800 KiB arrays, as at 100k memories) made
# and freed a hundred times; prints the pages faulted in per round after the first few.
_REUSE_PROGRAM = textwrap.dedent(
    """
    import sys, threading
    import numpy as np
    from daemon.heap import tune_heaps

    def minor_faults():
        with open("/proc/self/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[7])

    if sys.argv[1] == "daemon":
        tune_heaps()

    def work():
        for _ in range(5):
            scores = np.ones(100_000, np.float64)
            del scores
        before = minor_faults()
        for _ in range(100):
            scores = np.ones(100_000, np.float64)
            products = np.ones(100_000, np.int32)
            del scores, products
        print((minor_faults() - before) / 100)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_a_searchs_temporaries_are_reused_not_faulted_in_again() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _REUSE_PROGRAM, "daemon"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    # ~300 pages a round (1.2 MiB) when they are mapped, or handed back at the heap's top, each time
    assert float(done.stdout) < 10
