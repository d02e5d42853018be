"""The send ledger (collection `notifier_sends`): each reply is claimed in the database before its platform is
called, and closed with the platform's answer before its status is published and its offset committed.

One document per outbound reply, `_id` = its outbound id, so the unique `_id` index is what lets only one process
call the platform for it. `state` says how far it got:

- `sending`: a platform call may be in flight, or part of a split reply was taken. Its owner alone may go on;
  once its lease has run out the owner is gone and nobody can know whether the platform took the message.
- `waiting`: the last call failed transiently (the platform took nothing); the owner tries again when its pause
  ends, and once the lease has run out another process may take the claim over and send.
- `sent` or `failed`: done; `status` holds the DeliveryStatus to publish again if a copy of the reply comes back.

A lease is the owner's own promise of how long it may hold the claim without writing to it (one send, or one
pause between attempts); it is compared with the reader's clock, so clocks need only agree to a few seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from suara_shared import db
from suara_shared.events import DeliveryState, DeliveryStatus, OutboundReply, new_id, utcnow

COLLECTION = "notifier_sends"
#: Finished entries are dropped after this long: far past the outbound topic's retention (7 days), so a copy of
#: a reply can never come back after its entry is gone.
KEEP_FINISHED = timedelta(days=30)


class SendState(StrEnum):
    SENDING = "sending"
    WAITING = "waiting"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Claim:
    """A ledger entry as read: who holds the reply, in what state, until when, and its status once done."""

    outbound_id: str
    state: SendState
    owner: str
    lease_until: datetime
    #: Bumped on every change, so that a conditional write acts only on the entry as it was read.
    revision: int
    status: DeliveryStatus | None

    @property
    def done(self) -> bool:
        return self.state in (SendState.SENT, SendState.FAILED)

    def lease_left(self) -> float:
        """Seconds until the holder's lease runs out (negative once it has)."""
        return (self.lease_until - utcnow()).total_seconds()

    @classmethod
    def from_document(cls, doc: db.Document) -> Claim:
        status = doc.get("status")
        return cls(
            outbound_id=doc["_id"],
            state=SendState(doc["state"]),
            owner=doc["owner"],
            lease_until=doc["lease_until"],
            revision=doc.get("revision", 0),
            status=DeliveryStatus.model_validate(status) if status else None,
        )


class SendLedger:
    """The claims of one notifier process (its `owner` id) in the shared collection."""

    def __init__(self, database: db.Database, *, owner: str | None = None) -> None:
        self._sends = database[COLLECTION]
        #: Claims and outcomes of the replies in flight (up to SEND_CONCURRENCY) go to the database together.
        self._group = db.GroupWrites(self._sends)
        self.owner = owner or new_id()

    async def ensure_indexes(self) -> None:
        """Finished entries expire; unfinished ones never do (they are settled first)."""
        await self._sends.create_index("finished_at", expireAfterSeconds=int(KEEP_FINISHED.total_seconds()))

    async def claim(self, reply: OutboundReply, *, lease: float) -> Claim | None:
        """Claim the reply for this process (state `sending`): None when it is ours now, else the entry that was
        there first. One round trip (shared with the other claims made meanwhile), two when the reply was claimed
        before."""
        now = utcnow()
        try:
            await self._group.insert(
                {
                    "_id": reply.outbound_id,
                    "state": SendState.SENDING.value,
                    "owner": self.owner,
                    "revision": 0,
                    "channel": reply.channel.value,
                    "claimed_at": now,
                    "lease_until": now + timedelta(seconds=lease),
                }
            )
        except db.DuplicateKeyError:
            found = await self._sends.find_one({"_id": reply.outbound_id})
            if found is not None:
                return Claim.from_document(found)
            return await self.claim(reply, lease=lease)  # expired between the two calls: claim it afresh
        return None

    async def read(self, outbound_id: str) -> Claim | None:
        found = await self._sends.find_one({"_id": outbound_id})
        return Claim.from_document(found) if found is not None else None

    async def take_over(self, claim: Claim, *, lease: float) -> bool:
        """Make `claim` ours, in state `sending`, if nobody changed it since it was read."""
        return await self._change(
            {"_id": claim.outbound_id, "revision": claim.revision},
            {"owner": self.owner, "state": SendState.SENDING.value, "lease_until": _after(lease)},
        )

    async def hold(self, outbound_id: str, *, state: SendState, lease: float) -> bool:
        """Renew our claim: `sending` before a call, `waiting` between attempts. False when it is not ours any
        more (another process took it over after our lease ran out): then this process must not call."""
        assert state in (SendState.SENDING, SendState.WAITING)
        unfinished = [SendState.SENDING.value, SendState.WAITING.value]
        return await self._change(
            {"_id": outbound_id, "owner": self.owner, "state": {"$in": unfinished}},
            {"state": state.value, "lease_until": _after(lease)},
        )

    async def finish(self, status: DeliveryStatus) -> bool:
        """Record what the platform answered; from then on nobody sends the reply again. Idempotent; False when
        the claim was not ours any more (our lease ran out and another process settled it)."""
        assert status.outbound_id is not None
        return await self._group.update(
            {"_id": status.outbound_id, "owner": self.owner}, {"$set": _finished(status), "$inc": {"revision": 1}}
        )

    async def settle(self, claim: Claim, status: DeliveryStatus) -> bool:
        """Close someone else's claim with `status` (it stopped in the middle), if it is still as read."""
        return await self._change(
            {"_id": claim.outbound_id, "revision": claim.revision}, {"owner": self.owner, **_finished(status)}
        )

    async def _change(self, match: db.Document, fields: db.Document) -> bool:
        result = await self._sends.update_one(match, {"$set": fields, "$inc": {"revision": 1}})
        return result.matched_count == 1


def _after(seconds: float) -> datetime:
    return utcnow() + timedelta(seconds=seconds)


def _finished(status: DeliveryStatus) -> db.Document:
    return {
        "state": (SendState.FAILED if status.status is DeliveryState.FAILED else SendState.SENT).value,
        "status": status.model_dump(mode="json"),
        "finished_at": utcnow(),
    }
