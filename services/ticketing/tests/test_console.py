"""The console as a desk's browser runs it (its app.js in Node, against a stand-in for the ticket API, on a virtual
clock): what it asks of the API in a busy hour."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import suara_ticketing

APP = Path(suara_ticketing.__file__).parent / "console" / "static" / "app.js"
HARNESS = Path(__file__).parent / "data" / "console_harness.js"
COUNTS_EVERY = 30.0  # app.js's COUNTS_MS


def run_console(busy: tuple[float, float], total_seconds: int) -> list[dict[str, Any]]:
    """Every API call an inbox makes in `total_seconds`, with its time, when a ticket changes at every poll
    within the `busy` seconds (from, until)."""
    node = shutil.which("node")
    assert node, "Node.js runs the console's tests: it is on the machine (see README, 'Tests')"
    done = subprocess.run(  # noqa: S603 - the machine's node, our harness and app.js, no shell
        [node, str(HARNESS), str(APP), *map(str, busy), str(total_seconds)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr  # the console logged no error
    calls: list[dict[str, Any]] = json.loads(done.stdout)
    return calls


def test_a_busy_hour_keeps_the_inbox_live_and_recounts_it_every_30_s_counting_the_last_change() -> None:
    """The counts above the inbox read every ticket; at every refresh of every open console they were the desk's
    largest cost (146 ms of the embedded database each at 10,000 tickets). The list still reloads at each change;
    the counts come when the inbox is shown, then at most every 30 s, and always after the last change."""
    calls = run_console(busy=(0, 60), total_seconds=180)
    lists = [c["at"] for c in calls if c["path"] == "/tickets"]
    counts = [c["at"] for c in calls if c["path"] == "/stats/counts"]
    changes_seen = [c["at"] for c in calls if c["path"] == "/changes" and 0 < c["at"] < 60]
    assert counts[0] == 0 and lists[0] == 0  # shown: the list and its counts at once
    assert len(lists) >= len(changes_seen) >= 20  # every change reloads the list (every 2.5 s)
    assert all(b - a >= COUNTS_EVERY for a, b in itertools.pairwise(counts)), counts
    assert len(counts) <= 1 + 60 / COUNTS_EVERY + 1, counts
    last_change = max(changes_seen)
    assert last_change <= counts[-1] <= last_change + COUNTS_EVERY, (last_change, counts)


def test_a_change_after_a_quiet_while_is_counted_at_once_and_one_soon_after_a_count_within_30_s() -> None:
    calls = run_console(busy=(41, 43), total_seconds=120)  # one change, seen by the poll at 42.5 s
    assert [c["at"] for c in calls if c["path"] == "/stats/counts"] == [0, 42.5]
    calls = run_console(busy=(0, 3), total_seconds=120)  # one change, seen at 2.5 s, just after the first count
    assert [c["at"] for c in calls if c["path"] == "/stats/counts"] == [0, 30]
    calls = run_console(busy=(0, 0), total_seconds=120)
    assert [c["at"] for c in calls if c["path"] == "/stats/counts"] == [0]  # nothing changed: nothing recounted
