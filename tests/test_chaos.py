"""Faults do not lose or duplicate anything a citizen sends: `make chaos`'s scenarios, small, on a stack of their own.

Each test plays one fault while citizens write on WhatsApp through the sandbox (whose webhooks are retried until
ingest-wa answers 200) and, for the broker and the database, on the web form's API too (submitting again after a
503, as the answer asks), waits until the system is quiet, and checks against the database and the sandbox that
every message was stored once on one ticket, every ticket's acknowledgement reached the citizen once and shows as
delivered on the ticket, nothing was dead-lettered — and that the fault really happened."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from suara_devstack.chaos import CONSUMER, FAULTS, SCENARIOS, ChaosConfig, Harness, chaos_stack, supervised, table
from suara_devstack.stack import Stack
from suara_devstack.testing import ARTIFACTS

pytestmark = pytest.mark.e2e

CONFIG = ChaosConfig.short()


@pytest.fixture(scope="module")
def faulty_stack() -> Iterator[Stack]:
    """Every service as a process (ticketing's consumer apart from its API), with a broker and database of its own."""
    stack = chaos_stack(
        data_dir=Path(tempfile.mkdtemp(prefix="suara-chaos-")) / "data", log_dir=ARTIFACTS / "logs" / "chaos"
    )
    stack.start(timeout=120)
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
async def harness(faulty_stack: Stack) -> AsyncIterator[Harness]:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # thousands of requests: a failure's log shows the rest
    async with supervised(faulty_stack) as h:
        yield h


def _kills_replaced_the_consumer(e: dict[str, Any]) -> bool:
    pids = e["consumer_pids"]
    return len(e["kills"]) == CONFIG.kills and None not in pids and len(set(pids)) == CONFIG.kills + 1


#: What shows that each fault really happened, as the scenario recorded it.
PROOF: dict[str, tuple[str, Callable[[dict[str, Any]], bool]]] = {
    "consumer-kill": (f"each kill -9 left a new {CONSUMER} process", _kills_replaced_the_consumer),
    "broker-freeze": (
        "webhooks answered 503 while the broker was frozen",
        lambda e: e["webhook_answers"].get("503", 0) > 0,
    ),
    "database-stop": (
        "the database was restarted and the consumer reported itself unready meanwhile",
        lambda e: len(set(e["database_pids"])) == 2 and e["consumer_unready_polls"] > 0,
    ),
    "graph-errors": (
        "the sandbox refused Graph sends with 500 and with 429",
        lambda e: e["graph_refused"].get("500", 0) > 0 and e["graph_refused"].get("429", 0) > 0,
    ),
    "duplicate-webhooks": ("message webhooks were posted twice", lambda e: e["posted_twice"].get("message", 0) > 0),
}


@pytest.mark.parametrize("fault", FAULTS)
async def test_fault_loses_and_duplicates_nothing(harness: Harness, fault: str) -> None:
    outcome = await SCENARIOS[fault](harness, CONFIG)
    report = table([outcome])
    what, shown = PROOF[fault]
    assert shown(outcome.evidence), f"the fault did not show ({what}):\n{report}"
    assert outcome.quiet, f"the system never went quiet:\n{report}"
    assert outcome.sent == CONFIG.size(fault) + CONFIG.web(fault), report
    assert (outcome.lost, outcome.unthreaded, outcome.duplicated) == (0, 0, 0), report
    assert outcome.tickets == outcome.citizens and outcome.split == 0, report
    assert (outcome.acks_missing, outcome.acks_duplicated) == (0, 0), report
    assert outcome.acks_unconfirmed == 0, f"acknowledgements received, not shown delivered on the ticket:\n{report}"
    assert outcome.dlq == 0, report
    assert outcome.ok, report
