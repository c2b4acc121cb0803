"""The garbage collector's full passes skip what the daemon holds for good, once its caches are filled.

Run in a child process: setting objects aside is for the whole interpreter, and this test process holds
every other test's objects.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import gc, json, weakref
    import anyio
    from daemon.collector import set_aside_when_filled

    class Node:
        pass

    async def main():
        cache = [{"seq": n, "terms": [n, n + 1]} for n in range(50_000)]  # what a filled cache holds
        vectors, lexical = anyio.Event(), anyio.Event()
        report = {}
        async with anyio.create_task_group() as tg:
            await tg.start(set_aside_when_filled, [vectors.wait, lexical.wait])
            await anyio.sleep(0.05)
            report["before the caches were filled"] = gc.get_freeze_count()
            vectors.set()
            await anyio.sleep(0.05)
            report["with one cache filled"] = gc.get_freeze_count()
            lexical.set()
        report["once both were filled"] = gc.get_freeze_count()
        report["the cache's objects"] = len(cache)
        cycle = Node()
        cycle.me = cycle  # garbage made later, reachable only from itself
        collected = []
        weakref.finalize(cycle, collected.append, True)
        del cycle
        gc.collect()
        report["a later cycle is still collected"] = collected == [True]
        print(json.dumps(report))

    anyio.run(main)
    """
)


def test_once_every_cache_is_filled_the_objects_alive_are_set_aside_and_later_garbage_is_still_collected() -> (
    None
):
    import json

    done = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=True
    )
    report = json.loads(done.stdout)
    assert report["before the caches were filled"] == 0
    assert report["with one cache filled"] == 0
    assert report["once both were filled"] > report["the cache's objects"]
    assert report["a later cycle is still collected"] is True
