"""Faults the sandbox plays on demand, for fault-injection runs (`make chaos`) and tests: a Graph API that answers
its senders with 5xx and 429 for a while, and webhooks that Meta delivers twice."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .whatsapp import graph_error

router = APIRouter(include_in_schema=False)

#: The Graph error each refused status carries: 500 "Something went wrong", 429 "Rate limit hit" (samples/).
GRAPH_ERROR_FOR_STATUS = {500: 131000, 429: 130429}

Answer = tuple[int, Any, dict[str, str]]


class Every:
    """Picks a steady share of events: with ratio 0.2, exactly one in five, evenly spread (no luck involved, so a
    run's counts are the same every time)."""

    def __init__(self, ratio: float = 0.0) -> None:
        self.ratio = ratio
        self._seen = 0

    def __call__(self) -> bool:
        before = math.floor(self._seen * self.ratio + 1e-9)
        self._seen += 1
        return math.floor(self._seen * self.ratio + 1e-9) > before


@dataclass
class GraphOutage:
    """Graph API sends refused (a share `ratio` of them) until `until`; each recipient's refused sends get the
    `statuses` in turn, so a reply retried through the outage meets every one of them."""

    statuses: tuple[int, ...]
    pick: Every
    until: float | None  # time.monotonic(); None: until switched off
    retry_after: float | None
    tries: Counter[str] = field(default_factory=Counter)

    def active(self) -> bool:
        return self.until is None or time.monotonic() < self.until


@dataclass
class Faults:
    """The sandbox's fault switches and what they did (counts survive switching off, for the run's report)."""

    outage: GraphOutage | None = None
    #: Graph sends refused, by HTTP status.
    refused: Counter[int] = field(default_factory=Counter)
    #: A share of the webhooks taken by ingest-wa are posted a second time, as Meta sometimes does.
    duplicate: Every = field(default_factory=Every)

    def graph_answer(self, method: str, path: str, fields: Mapping[str, Any]) -> Answer | None:
        """The error a Graph API send gets while an outage is on; None when it goes through."""
        outage = self.outage
        if outage is None or method != "POST" or path.startswith("/2/"):  # /2/…: the X API, not Graph
            return None
        if not outage.active():
            self.outage = None
            return None
        if not outage.pick():
            return None
        recipient = fields.get("to") or fields.get("recipient") or path
        outage.tries[str(recipient)] += 1
        status = outage.statuses[(outage.tries[str(recipient)] - 1) % len(outage.statuses)]
        self.refused[status] += 1
        code = GRAPH_ERROR_FOR_STATUS.get(status, 131000)
        _, body = graph_error(code)
        retry_after = outage.retry_after
        headers = {"Retry-After": str(math.ceil(retry_after))} if status == 429 and retry_after else {}
        return status, body, headers

    def state(self) -> dict[str, Any]:
        outage = self.outage if self.outage is not None and self.outage.active() else None
        return {
            "graph_outage": None
            if outage is None
            else {
                "statuses": list(outage.statuses),
                "ratio": outage.pick.ratio,
                "seconds_left": None if outage.until is None else round(max(0.0, outage.until - time.monotonic()), 1),
                "retry_after": outage.retry_after,
            },
            "graph_refused": {str(k): v for k, v in sorted(self.refused.items())},
            "webhook_duplicate_ratio": self.duplicate.ratio,
        }


def _faults(request: Request) -> Faults:
    faults: Faults = request.app.state.faults
    return faults


class OutageUpdate(BaseModel):
    """Refuse Graph API sends (POSTs to Graph paths: WhatsApp, Messenger, Instagram, comments; not the X API)."""

    model_config = ConfigDict(extra="forbid")

    statuses: list[int] = Field(default=[500, 429], min_length=1, description="answered in turn: 500 and/or 429")
    ratio: float = Field(default=1.0, gt=0, le=1, description="share of sends refused, evenly spread")
    seconds: float | None = Field(default=None, gt=0, description="recovers by itself after this; null: never")
    retry_after: float | None = Field(default=None, gt=0, description="Retry-After header on the 429s")

    @field_validator("statuses")
    @classmethod
    def _played(cls, statuses: list[int]) -> list[int]:
        unknown = sorted(set(statuses) - set(GRAPH_ERROR_FOR_STATUS))
        if unknown:
            raise ValueError(f"only {sorted(GRAPH_ERROR_FOR_STATUS)} are played, not {unknown}")
        return statuses


class DuplicateUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ratio: float = Field(ge=0, le=1, description="share of taken webhooks posted a second time")


@router.get("/_sandbox/faults")
async def show_faults(request: Request) -> dict[str, Any]:
    """Which faults are on, and how many Graph sends were refused so far (by status)."""
    return _faults(request).state()


@router.put("/_sandbox/faults/graph")
async def start_outage(request: Request, update: OutageUpdate) -> dict[str, Any]:
    """From now on, answer Graph API sends with the given errors (Meta's 131000 for 500, 130429 for 429)."""
    faults = _faults(request)
    faults.outage = GraphOutage(
        statuses=tuple(update.statuses),
        pick=Every(update.ratio),
        until=None if update.seconds is None else time.monotonic() + update.seconds,
        retry_after=update.retry_after,
    )
    return faults.state()


@router.delete("/_sandbox/faults/graph")
async def end_outage(request: Request) -> dict[str, Any]:
    """The Graph API recovers: sends are answered normally again."""
    faults = _faults(request)
    faults.outage = None
    return faults.state()


@router.put("/_sandbox/faults/webhooks")
async def set_duplicates(request: Request, update: DuplicateUpdate) -> dict[str, Any]:
    """Post this share of the WhatsApp webhooks ingest-wa took a second time (0 stops it)."""
    faults = _faults(request)
    faults.duplicate = Every(update.ratio)
    return faults.state()
