"""`make bench`: load the whole embedded stack with signed WhatsApp webhooks and measure it against its ceilings.

It starts its own stack (broker, database, services, sandbox) on free ports, measures in the same run the raw
produce rate of the broker and the raw bulk-upsert rate of the database with documents of the same size, then
sends webhooks at a set rate and concurrency, each a new citizen's text (so each opens a ticket and earns an
acknowledgement). It reports webhook latency, end-to-end latency to the ticket stored and to the acknowledgement
received by the sandbox, throughput, each service's peak memory, the CPU time each process (services, broker,
database, the bench's own driver) spent while the load lasted and drained, lost and duplicated messages, writes a
JSON result and a PNG plot of latency over time.

With `--catch-up`, ticketing is stopped while the load is sent and started again after it, as after an outage: the
webhooks wait in the broker, and the bench reports the backlog, how long ticketing took to work it off and at what
rate, against the database ceiling (the end-to-end figures then include the downtime)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pymongo import UpdateOne

from suara_shared import db
from suara_shared.events import Channel, InboundMessage, Sender
from suara_shared.http import freeze_startup_objects

from .infra import EmbeddedInfra, default_env, free_port
from .sandbox.social import IG_MEDIA_ID, PAGE_POST_ID, X_USERNAME
from .stack import SANDBOX_SOCIAL_ENV, SANDBOX_X_ENV, Stack, default_services
from .testing import _free_base, url

BENCH_TOPIC = "suara.bench.v1"
APP_SECRET = default_env()["META_APP_SECRET"]


#: The kinds of message the load may carry: a channel's direct messages by its name, its public ones (comments under
#: our posts, posts mentioning us) by theirs.
KINDS = ("whatsapp", "web", "facebook", "instagram", "x", "facebook_comment", "instagram_comment", "x_mention")
#: The channel each kind arrives on.
CHANNEL_OF = {kind: kind.split("_")[0] for kind in KINDS}
#: The default load's shares: mostly WhatsApp (the kabupaten's one number for complaints), then the web form, then
#: Facebook, Instagram and X, direct and public alike. An assumption, not a measurement: `--mix` sets another.
DEFAULT_MIX = "whatsapp=80,web=8,facebook=2,instagram=2,x=2,facebook_comment=2,instagram_comment=2,x_mention=2"
#: Kinds whose every message is a new conversation (`--per-citizen` does not apply): a web complaint is a new
#: submission, a post mentioning us a thread of its own.
ALWAYS_NEW = ("web", "x_mention")
#: What a channel's endpoint answers when it has the message: webhooks 200, the web form's API 202.
ACCEPTED = (200, 202)


@dataclass
class Sent:
    channel: str  # the channel its stored copy names
    #: The platform's id of the message, which its stored copy carries (a web complaint's: its submission id, from
    #: the answer).
    message_id: str
    #: Its conversation on the channel (one ticket per citizen), and whom the sandbox sees the acknowledgement
    #: addressed to ("" on the web, whose acknowledgement is the status page).
    conversation: str
    recipient: str
    at: float = 0.0  # wall clock (time.time()), comparable with the services' timestamps on this machine
    latency: float = 0.0
    status: int = 0
    #: Its kind in the mix (`KINDS`); its channel's name for a direct message.
    kind: str = ""

    def __post_init__(self) -> None:
        self.kind = self.kind or self.channel

    @property
    def key(self) -> tuple[str, str]:
        return (self.channel, self.message_id)

    @property
    def citizen(self) -> tuple[str, str]:
        return (self.channel, self.conversation)


@dataclass
class Result:
    settings: dict[str, Any]
    machine: dict[str, Any]
    ceilings: dict[str, float] = field(default_factory=dict)
    load: dict[str, Any] = field(default_factory=dict)
    memory_mib: dict[str, float] = field(default_factory=dict)
    #: CPU seconds (user + system, children included) each process used from the first webhook to the last ack.
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    #: What the load cost the database, per collection: commands and the time it reports spending on them (µs).
    database: dict[str, dict[str, int]] = field(default_factory=dict)
    series: dict[str, list[list[float]]] = field(default_factory=dict)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0–100) by nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered)) - 1))
    return ordered[rank]


def _webhook(wa_id: str, wamid: str, text: str) -> bytes:
    from suara_ingest_wa.testing import citizen, envelope, meta_body, text_message

    value = {
        "contacts": citizen(wa_id, "Warga Bench"),
        "messages": [text_message(wa_id, wamid, text, timestamp=str(int(time.time())))],
    }
    return bytes(meta_body(envelope(value)))


def _sample_event() -> bytes:
    """An inbound event the size the pipeline carries, for the broker ceiling."""
    wa_id = "6281234500000"
    event = InboundMessage(
        channel=Channel.WHATSAPP,
        platform_message_id=f"wamid.{uuid.uuid4().hex}",
        conversation_key=wa_id,
        sender=Sender(channel_user_id=wa_id, display_name="Warga Bench", phone="+6281234500000"),
        text="Jalan berlubang di depan SD Negeri 1 Lasem, mohon segera diperbaiki sebelum musim hujan.",
        raw={
            "from": wa_id,
            "id": "wamid.x",
            "timestamp": "1717236000",
            "type": "text",
            "text": {"body": "Jalan berlubang di depan SD Negeri 1 Lasem"},
        },
    )
    return event.model_dump_json().encode()


async def produce_ceiling(bootstrap: str, *, count: int) -> float:
    """Messages per second the broker takes with acks=all, the producer batching freely."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if BENCH_TOPIC not in await admin.list_topics():
            await admin.create_topics([NewTopic(BENCH_TOPIC, 6, 1)])
    finally:
        await admin.close()
    value = _sample_event()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        started = time.perf_counter()
        futures = [await producer.send(BENCH_TOPIC, value, key=str(i % 64).encode()) for i in range(count)]
        await asyncio.gather(*futures)
        return count / (time.perf_counter() - started)
    finally:
        await producer.stop()


async def upsert_ceiling(uri: str, *, count: int, batch: int = 500) -> float:
    """Documents per second the database upserts in bulk, each the size of a stored message."""
    client, database = db.connect(uri)
    collection = database["bench_ceiling"]
    doc = json.loads(_sample_event())
    try:
        await collection.drop()
        started = time.perf_counter()
        for offset in range(0, count, batch):
            ops = [UpdateOne({"_id": f"m{offset + i}"}, {"$set": doc}, upsert=True) for i in range(batch)]
            await collection.bulk_write(ops, ordered=False)
        return count / (time.perf_counter() - started)
    finally:
        await collection.drop()
        await db.close(client)


def parse_mix(text: str) -> dict[str, int]:
    """`whatsapp=80,web=20`: each kind's share of the load (whole numbers, not necessarily adding up to 100)."""
    mix: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, _, share = part.partition("=")
        kind = kind.strip()
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r} in the mix (known: {', '.join(KINDS)})")
        if not share.strip().isdigit():
            raise ValueError(f"the share of {kind} must be a whole number, e.g. {kind}=10")
        mix[kind] = mix.get(kind, 0) + int(share)
    mix = {kind: share for kind, share in mix.items() if share > 0}
    if not mix:
        raise ValueError("the mix names no channel with a share above 0")
    return mix


def schedule(mix: dict[str, int], total: int) -> list[str]:
    """`total` kinds in the mix's proportions, spread evenly (smooth weighted round robin): every stretch of the
    load carries each kind in its share, not one kind after the other."""
    weight = sum(mix.values())
    credit = dict.fromkeys(mix, 0)
    out = []
    for _ in range(total):
        for kind, share in mix.items():
            credit[kind] += share
        chosen = max(credit, key=lambda c: credit[c])
        credit[chosen] -= weight
        out.append(chosen)
    return out


#: Our Page, Instagram account and X account in the stack the bench starts (the sandbox's own).
FB_PAGE_ID = SANDBOX_SOCIAL_ENV["FB_PAGE_ID"]
IG_ACCOUNT_ID = SANDBOX_SOCIAL_ENV["IG_ACCOUNT_ID"]
X_USER_ID = SANDBOX_X_ENV["X_USER_ID"]
X_SECRET = SANDBOX_X_ENV["X_CONSUMER_SECRET"]


@dataclass(frozen=True)
class Request:
    sent: Sent
    url: str
    body: bytes
    headers: dict[str, str]


def prepare(kind: str, i: int, citizen: int, *, run: str, urls: dict[str, str]) -> Request:
    """The `i`-th request of the load, of `kind`, from that kind's `citizen`-th citizen (its number in the run),
    signed as its platform signs it."""
    text = f"Laporan uji beban {i}: lampu jalan mati di Kecamatan Sluke"
    tag = int(run[:6], 16) % 1000  # keeps the citizens of two runs on one database apart
    user = f"{KINDS.index(kind) + 1}{tag:03d}{citizen:09d}"  # a platform's user id, each kind's own
    number = f"{int(run, 16) % 10**9:09d}{i:07d}"  # a platform's numeric id for the message
    endpoint = urls[CHANNEL_OF[kind]]
    if kind == "whatsapp":
        from suara_ingest_wa.testing import signed_headers

        wa_id, wamid = f"62812{tag:03d}{citizen:05d}", f"wamid.bench-{run}-{i}"
        body = _webhook(wa_id, wamid, text)
        return Request(Sent(kind, wamid, wa_id, wa_id), endpoint, body, signed_headers(body, APP_SECRET))
    if kind == "web":
        # The form's API: each complaint is a new submission, whose id comes back in the answer. Its idempotency
        # key makes a retried one the same complaint.
        body = json.dumps({"text": text, "kecamatan": "Sluke"}).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": f"bench-{run}-{i}"}
        return Request(Sent(kind, "", "", ""), endpoint, body, headers)
    from suara_ingest_social import testing as social

    channel = CHANNEL_OF[kind]
    if kind in ("x", "x_mention"):
        if kind == "x":
            payload = social.x_direct_message(
                for_user_id=X_USER_ID, sender=user, name="Warga Bench", event_id=number, text=text
            )
            sent = Sent(channel, f"dm:{number}", f"dm:{user}", user, kind=kind)
        else:  # a post mentioning us: answered by a post in reply to it
            payload = social.x_mention(
                for_user_id=X_USER_ID, sender=user, name="Warga Bench", tweet_id=number, text=f"@{X_USERNAME} {text}"
            )
            sent = Sent(channel, number, f"tweet:{number}:{user}", number, kind=kind)
        body = social.compact(payload)
        return Request(sent, endpoint, body, social.x_headers(body, X_SECRET))
    own = FB_PAGE_ID if channel == "facebook" else IG_ACCOUNT_ID
    if kind in ("facebook", "instagram"):
        mid = f"m_bench-{run}-{i}"
        entry: dict[str, Any] = {"messaging": [social.messaging_event(sender=user, recipient=own, mid=mid, text=text)]}
        sent = Sent(channel, mid, f"dm:{user}", user, kind=kind)
    elif kind == "facebook_comment":  # answered under the comment
        comment = f"{PAGE_POST_ID.split('_')[-1]}_{number}"
        change = social.page_comment(
            post_id=PAGE_POST_ID, sender=user, name="Warga Bench", comment_id=comment, text=text
        )
        entry = {"changes": [change]}
        sent = Sent(channel, comment, f"post:{PAGE_POST_ID}:{user}", comment, kind=kind)
    else:  # instagram_comment
        change = social.instagram_comment(
            media_id=IG_MEDIA_ID, sender=user, username=f"warga{user[-6:]}", comment_id=number, text=text
        )
        entry = {"changes": [change]}
        sent = Sent(channel, number, f"media:{IG_MEDIA_ID}:{user}", number, kind=kind)
    body = social.compact(social.meta_envelope(channel, own, entry))
    return Request(sent, endpoint, body, social.meta_headers(body, APP_SECRET))


def endpoints(stack: Stack) -> dict[str, str]:
    """Where each channel's messages go in the bench's stack."""
    return {
        "whatsapp": url(stack, "ingest-wa", "/webhooks/whatsapp"),
        "web": url(stack, "ingest-social", "/api/v1/web/complaints"),
        **{c: url(stack, "ingest-social", f"/webhooks/{c}") for c in ("facebook", "instagram", "x")},
    }


async def send_load(
    urls: dict[str, str],
    *,
    rate: float,
    seconds: float,
    concurrency: int,
    run: str,
    mix: dict[str, int],
    per_citizen: int = 1,
) -> list[Sent]:
    """Send one request every 1/rate seconds for `seconds`, its kind by the `mix`, at most `concurrency` in
    flight. With `per_citizen` above one, every citizen writes that many messages: all first messages, then all
    second ones, and so on (a citizen's next message comes a 1/per_citizen of the run later, as a follow-up to a
    ticket opened before). Not on the web nor for posts mentioning us, each a conversation of its own."""
    total = int(rate * seconds)
    kinds = schedule(mix, total)
    counts = {k: kinds.count(k) for k in mix}
    citizens = {k: n if k in ALWAYS_NEW else max(1, n // per_citizen) for k, n in counts.items()}
    gate = asyncio.Semaphore(concurrency)
    sent: list[Sent] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as http:
        # Built and signed before the clock starts: the driver shares the machine with what it measures.
        seen = dict.fromkeys(mix, 0)
        prepared = []
        for i, kind in enumerate(kinds):
            prepared.append(prepare(kind, i, seen[kind] % citizens[kind], run=run, urls=urls))
            seen[kind] += 1
        # Nor should the driver's own garbage collector walk all it has loaded while it times a webhook.
        freeze_startup_objects()

        async def one(i: int) -> None:
            request = prepared[i]
            item = request.sent
            async with gate:
                for _attempt in range(5):  # as the platforms do: retry what was not taken
                    item.at = item.at or time.time()
                    started = time.perf_counter()
                    try:
                        async with http.post(request.url, data=request.body, headers=request.headers) as response:
                            answer = await response.read()
                            item.status = response.status
                    except (aiohttp.ClientError, TimeoutError):
                        item.status = 0
                    item.latency = time.perf_counter() - started
                    if item.status in ACCEPTED:
                        if item.kind == "web":
                            item.message_id = item.conversation = json.loads(answer)["id"]
                        break
                    await asyncio.sleep(0.5)
            sent.append(item)

        loop = asyncio.get_running_loop()
        start = loop.time()
        tasks = []
        for i in range(total):
            delay = start + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return sent


def messages_query(channel: str, ids: list[str]) -> dict[str, Any]:
    """The stored messages of a channel with these platform ids, through ticketing's index on them."""
    return {"channel": channel, "channel_message_id": {"$in": ids}}


def tickets_query(channel: str, conversations: list[str]) -> dict[str, Any]:
    """The tickets of these conversations of a channel, through ticketing's index on a ticket's conversation."""
    return {"channel": channel, "conversation_key": {"$in": conversations}}


X_DM = re.compile(r"^/2/dm_conversations/with/(?P<participant>[^/]+)/messages$")
COMMENT_REPLY = re.compile(r"^/v[0-9.]+/(?P<comment>[^/]+)/(?P<edge>comments|replies)$")
OWN_ACCOUNTS = {FB_PAGE_ID: "facebook", IG_ACCOUNT_ID: "instagram"}


def addressee(call: dict[str, Any]) -> tuple[str, str] | None:
    """The kind and addressee of a message the sandbox was asked to send: a WhatsApp message (its number), a
    Messenger, Instagram or X direct message (the user), a reply under a Facebook or Instagram comment (the
    comment), a post in reply to one mentioning us (that post). None for any other call (read receipts, typing,
    private replies, uploads...)."""
    if call["method"] != "POST":
        return None
    body = call.get("body")
    body = body if isinstance(body, dict) else {}
    if found := X_DM.match(call["path"]):
        return ("x", found["participant"])
    if call["path"] == "/2/tweets" and isinstance(body.get("reply"), dict):
        return ("x_mention", str(body["reply"].get("in_reply_to_tweet_id")))
    if (found := COMMENT_REPLY.match(call["path"])) and "message" in body:
        return ("facebook_comment" if found["edge"] == "comments" else "instagram_comment", found["comment"])
    if not call["path"].endswith("/messages"):
        return None
    if isinstance(body.get("to"), str) and body.get("type") in ("text", "template"):
        return ("whatsapp", body["to"])
    recipient = body.get("recipient")
    channel = OWN_ACCOUNTS.get(call["path"].split("/")[-2])
    if channel and isinstance(recipient, dict) and "id" in recipient and "message" in body:
        return (channel, str(recipient["id"]))
    return None


async def collect(stack: Stack, sent: list[Sent], *, within: float) -> dict[str, Any]:
    """Wait until every accepted message is stored and acknowledged (or `within` passes) and gather timings.

    The database's time is what is measured, so the wait costs it little: the loop watches the sandbox (cheap),
    reads the database only now and then, and then asks only for the messages not seen stored yet, through the
    index on their platform ids, `db.PART` at a time (a scan of the messages every second, a regular expression
    over their `_id`s, or one `$in` of a run's 3,000 ids, 6 s of the database's time, took it from the pipeline
    being measured). The counts of copies are left to `count_copies`, which the bench asks after it has read the
    processes' CPU time. A web complaint's acknowledgement is shown on its status page, not sent: only the other
    channels' are awaited at the sandbox."""
    ok = {s.key: s for s in sent if s.status in ACCEPTED}
    # The citizens answered at the sandbox, by whom their acknowledgement is addressed to: one ticket and one
    # acknowledgement each.
    by_recipient = {(s.kind, s.recipient): s.citizen for s in ok.values() if s.recipient}
    answered = set(by_recipient.values())
    sandbox = url(stack, "sandbox")
    client, database = db.connect(stack.infra.mongodb_uri)
    acks: dict[tuple[str, str], list[float]] = {}
    seq = 0
    deadline = time.monotonic() + within
    next_read = time.monotonic() + 15.0
    stored: dict[tuple[str, str], float] = {}

    async def read_stored() -> None:
        for channel in {s.channel for s in ok.values()}:
            waiting = [m for c, m in ok if c == channel and (c, m) not in stored]
            for part in db.parts(waiting):
                query = messages_query(channel, part)
                async for doc in database["messages"].find(query, {"channel_message_id": 1, "stored_at": 1}):
                    stored[(channel, doc["channel_message_id"])] = doc["stored_at"].timestamp()

    try:
        async with httpx.AsyncClient(timeout=30) as http:
            while time.monotonic() < deadline:
                calls = (await http.get(f"{sandbox}/_sandbox/calls", params={"since": seq})).json()
                for call in calls:
                    seq = max(seq, call["seq"])
                    citizen = by_recipient.get(addressee(call) or ("", ""))
                    if citizen is not None:
                        acks.setdefault(citizen, []).append(datetime.fromisoformat(call["at"]).timestamp())
                if len(acks) >= len(answered) or time.monotonic() >= next_read:
                    await read_stored()
                    next_read = time.monotonic() + 15.0
                    if len(stored) >= len(ok) and len(acks) >= len(answered):
                        break
                await asyncio.sleep(1.0)
            await read_stored()
    finally:
        await db.close(client)
    return {"ok": ok, "stored": stored, "acks": acks, "answered": len(answered)}


async def count_copies(stack: Stack, ok: dict[tuple[str, str], Sent]) -> dict[str, int]:
    """How many tickets the run's citizens have, and how many copies of their messages are stored (more than one
    copy of a message would be a duplicate)."""
    client, database = db.connect(stack.infra.mongodb_uri)
    try:
        counts = {"tickets": 0, "inbound": 0}
        for channel in {s.channel for s in ok.values()}:
            mine = [s for s in ok.values() if s.channel == channel]
            for part in db.parts({s.conversation for s in mine}):
                counts["tickets"] += await database["tickets"].count_documents(tickets_query(channel, part))
            for part in db.parts(s.message_id for s in mine):
                counts["inbound"] += await database["messages"].count_documents(messages_query(channel, part))
        return counts
    finally:
        await db.close(client)


PUBLISH_BUCKET = re.compile(r'^suara_kafka_publish_seconds_bucket\{le="([^"]+)"\} ([0-9.e+]+)$', re.MULTILINE)


async def publish_buckets(stack: Stack) -> dict[float, float]:
    """ingest-wa's histogram of how long its publications waited for the broker: upper bound (s) -> count."""
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(url(stack, "ingest-wa", "/metrics"))).text
    return {float(le): float(count) for le, count in PUBLISH_BUCKET.findall(text)}


def _ms(seconds: float | None) -> float | None:
    """Milliseconds, or None when unknown or past the histogram's last bound."""
    return None if seconds is None or seconds == float("inf") else round(seconds * 1000, 1)


def _bound(ms: float | None) -> str:
    return "?" if ms is None else f"≤ {ms:g}"


def bucket_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float | None:
    """The upper bound of the bucket holding the q-quantile of what was counted between two readings (the
    histogram says no more precisely); None when nothing was."""
    counts = sorted((le, after[le] - before.get(le, 0.0)) for le in after)
    total = counts[-1][1] if counts else 0.0
    if total <= 0:
        return None
    for le, cumulative in counts:
        if cumulative >= q / 100 * total:
            return le
    return counts[-1][0]


def peak_memory_mib(stack: Stack) -> dict[str, float]:
    """Each service's peak resident memory (VmHWM), from /proc."""
    out: dict[str, float] = {}
    for name, run in stack.running.items():
        try:
            status = Path(f"/proc/{run.proc.pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                out[name] = round(int(line.split()[1]) / 1024, 1)
    return out


def _children(pid: int) -> list[int]:
    """Every descendant of `pid`, from /proc (a service started through a wrapper does its work in a child)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def cpu_seconds(pid: int, *, children: bool = True) -> float:
    """User + system CPU seconds of `pid` so far, 0 if it is gone; with `children`, those of its descendants too
    (living ones, and those it has waited for). Without, its own alone."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for one in [pid, *(_children(pid) if children else [])]:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime, stime (fields 14, 15 of stat), then cutime, cstime: children it waited for (16, 17).
        total += sum(int(f) for f in fields[11 : 15 if children else 13]) / tick
    return total


BENCH_DRIVER = "bench driver"


def processes(stack: Stack) -> dict[str, int]:
    """The pid of every process the bench loads: services, sandbox, broker, database and the bench itself."""
    pids = {name: run.proc.pid for name, run in stack.running.items()}
    pids.update({name: proc.pid for name, proc in stack.infra.procs.items()})
    pids[BENCH_DRIVER] = os.getpid()
    return pids


def cpu_by_process(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each process; the driver without its children, which are the stack's processes."""
    return {name: cpu_seconds(pid, children=name != BENCH_DRIVER) for name, pid in pids.items()}


#: `top`'s sections for each kind of command (mongod's shape), in the order the table lists them.
TOP_KINDS = {"queries": "find", "getmore": "getMore", "insert": "insert", "update": "update", "remove": "delete"}


async def database_top(uri: str) -> dict[str, dict[str, int]]:
    """The database's own account of its work so far (`top`, as mongod gives it): per collection, the commands it
    ran and the microseconds they took, in all (`count`, `micros`) and by kind (`find`, `update`… `other`, and
    `find_us`… for their time)."""
    client, _database = db.connect(uri)
    try:
        totals = (await client.admin.command("top"))["totals"]
    finally:
        await db.close(client)
    out: dict[str, dict[str, int]] = {}
    for ns, sections in totals.items():
        if not isinstance(sections, dict) or "total" not in sections or ns.startswith(("admin.", "config.")):
            continue
        work = {"count": int(sections["total"]["count"]), "micros": int(sections["total"]["time"])}
        for section, kind in TOP_KINDS.items():
            work[kind] = int(sections.get(section, {}).get("count", 0))
            work[kind + "_us"] = int(sections.get(section, {}).get("time", 0))
        work["other"] = work["count"] - sum(work[kind] for kind in TOP_KINDS.values())
        work["other_us"] = work["micros"] - sum(work[kind + "_us"] for kind in TOP_KINDS.values())
        out[ns.split(".", 1)[1]] = work
    return out


def top_difference(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """What was done between two readings of `database_top`, collections with nothing done left out."""
    out = {}
    for name, now in after.items():
        was = before.get(name, {})
        done = {key: value - was.get(key, 0) for key, value in now.items()}
        if done["count"] > 0:
            out[name] = done
    return out


def plot(result: Result, path: Path) -> None:
    """Latency over time: webhook answer, ticket stored, acknowledgement received."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5), dpi=100)
    styles = {"webhook_ms": ("webhook answered", 2), "stored_ms": ("ticket stored", 2), "ack_ms": ("ack at sandbox", 2)}
    for key, (label, size) in styles.items():
        points = result.series.get(key, [])
        if points:
            ax.scatter([p[0] for p in points], [p[1] for p in points], s=size, label=label, alpha=0.6)
    ax.set_yscale("log")
    ax.set_xlabel("seconds since the first webhook")
    ax.set_ylabel("latency (ms, log scale)")
    load = result.load
    ax.set_title(
        f"Suara bench: {load.get('sent', 0)} webhooks at {result.settings['rate']}/s, "
        f"{load.get('e2e_per_s', 0):.0f} tickets/s end to end"
    )
    ax.legend(loc="upper left")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def summarise(result: Result, sent: list[Sent], gathered: dict[str, Any]) -> None:
    ok: dict[tuple[str, str], Sent] = gathered["ok"]
    stored: dict[tuple[str, str], float] = gathered["stored"]
    acks: dict[tuple[str, str], list[float]] = gathered["acks"]
    first = min((s.at for s in sent), default=0.0)
    # A citizen's acknowledgement answers their first message (later ones thread into the same ticket).
    first_at: dict[tuple[str, str], float] = {}
    for s in sorted(ok.values(), key=lambda s: s.at):
        first_at.setdefault(s.citizen, s.at)

    def figures(items: list[Sent]) -> dict[str, Any]:
        webhook_ms = [s.latency * 1000 for s in items]
        stored_ms = [(stored[s.key] - s.at) * 1000 for s in items if s.key in stored]
        citizens = {s.citizen for s in items}
        ack_ms = [(min(acks[c]) - first_at[c]) * 1000 for c in citizens if c in acks]
        return {
            "accepted": len(items),
            "stored": len(stored_ms),
            "acknowledged": sum(1 for c in citizens if c in acks),
            "webhook_p50_ms": round(percentile(webhook_ms, 50), 2),
            "webhook_p99_ms": round(percentile(webhook_ms, 99), 2),
            "stored_p50_ms": round(percentile(stored_ms, 50), 1),
            "stored_p99_ms": round(percentile(stored_ms, 99), 1),
            "ack_p50_ms": round(percentile(ack_ms, 50), 1),
            "ack_p99_ms": round(percentile(ack_ms, 99), 1),
        }

    everything = figures(list(ok.values()))
    last_stored = max(stored.values(), default=first)
    last_ack = max((min(t) for t in acks.values()), default=first)
    webhook_ms = [s.latency * 1000 for s in ok.values()]
    result.load = {
        "sent": len(sent),
        "refused": len(sent) - len(ok),
        **everything,
        "answered": gathered.get("answered", len(acks)),
        "tickets": gathered["tickets"],
        "lost": len(ok) - len(stored),
        "duplicated_messages": max(0, gathered["inbound"] - len(stored)),
        "duplicated_acks": sum(len(t) - 1 for t in acks.values() if len(t) > 1),
        # From the first webhook sent to the last message stored (or acknowledged): while the load lasts, and after
        # it as long as a backlog drains. Equal to the sending rate when the pipeline keeps up.
        "e2e_per_s": round(len(stored) / max(1e-6, last_stored - first), 1),
        "acked_per_s": round(len(acks) / max(1e-6, last_ack - first), 1),
        "webhook_mean_ms": round(statistics.fmean(webhook_ms), 2) if webhook_ms else 0.0,
        "kinds": {
            kind: {"sent": sum(1 for s in sent if s.kind == kind), **figures(items)}
            for kind in KINDS
            if (items := [s for s in ok.values() if s.kind == kind])
        },
    }
    result.series = {
        "webhook_ms": [[round(s.at - first, 3), round(s.latency * 1000, 2)] for s in ok.values()],
        "stored_ms": [
            [round(s.at - first, 3), round((stored[s.key] - s.at) * 1000, 1)] for s in ok.values() if s.key in stored
        ],
        "ack_ms": [
            [round(at - first, 3), round((min(acks[c]) - at) * 1000, 1)] for c, at in first_at.items() if c in acks
        ],
    }


def catch_up_figures(
    stored: dict[str, float], *, backlog: int, restarted_at: float, healthy_at: float, ceiling: float
) -> dict[str, Any]:
    """How fast a ticketing started again worked off the backlog its downtime left: the rate from the first message
    it stored to the last (its pace once going), and from the moment it was started (what an operator waits). It
    may answer `/healthz` well before it stores anything (its consumers join their groups first), hence both."""
    first = min(stored.values(), default=restarted_at)
    last = max(stored.values(), default=restarted_at)
    per_s = len(stored) / max(1e-6, last - first)
    return {
        "catch_up_backlog": backlog,
        "catch_up_healthy_s": round(healthy_at - restarted_at, 2),
        "catch_up_first_stored_s": round(first - restarted_at, 2),
        "catch_up_drain_s": round(last - restarted_at, 2),
        "catch_up_per_s": round(per_s, 1),
        "catch_up_from_restart_per_s": round(len(stored) / max(1e-6, last - restarted_at), 1),
        "catch_up_of_db_ceiling": round(per_s / ceiling, 3) if ceiling else 0.0,
    }


def _catch_up_rows(load: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The backlog `--catch-up` left and how fast ticketing worked it off; the other figures include the downtime."""
    return [
        (
            "backlog (ticketing down while sending)",
            f"{load['catch_up_backlog']:,} msg",
            "end-to-end rates and latencies in this table include the downtime",
        ),
        (
            "catch-up (first → last ticket stored)",
            f"{load['catch_up_per_s']:,.1f} msg/s",
            f"{load['catch_up_of_db_ceiling']:.1%} of the database ceiling",
        ),
        (
            "catch-up (ticketing started → last stored)",
            f"{load['catch_up_from_restart_per_s']:,.1f} msg/s",
            f"drained in {load['catch_up_drain_s']:,} s (first ticket after {load['catch_up_first_stored_s']} s, "
            f"/healthz after {load['catch_up_healthy_s']} s)",
        ),
    ]


def _kind_rows(load: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Each kind's part of the load: what was sent, stored and acknowledged, and its latencies."""
    rows = []
    for kind, c in load.get("kinds", {}).items():
        acked = "–" if kind == "web" else f"{c['acknowledged']}"
        ack = "" if kind == "web" else f"; acknowledged p50 {c['ack_p50_ms'] / 1000:,.1f} s"
        rows.append(
            (
                f"  {kind}: sent / stored / acknowledged",
                f"{c['sent']} / {c['stored']} / {acked}",
                f"webhook p50 / p99 {c['webhook_p50_ms']} / {c['webhook_p99_ms']} ms; "
                f"stored p50 {c['stored_p50_ms'] / 1000:,.1f} s{ack}",
            )
        )
    return rows


def _cpu_rows(result: Result) -> list[tuple[str, str, str]]:
    """CPU seconds per process, busiest first, with its share and the milliseconds it cost per stored message."""
    total = sum(result.cpu_seconds.values()) or 1.0
    stored = result.load.get("stored") or 1
    rows = [
        (f"CPU {name}", f"{seconds:,.1f} s", f"{seconds / total:.0%}, {seconds * 1000 / stored:.2f} ms per message")
        for name, seconds in sorted(result.cpu_seconds.items(), key=lambda kv: -kv[1])
    ]
    for name, work in sorted(result.database.items(), key=lambda kv: -kv[1]["micros"]):
        kinds = ", ".join(
            f"{work[kind] / stored:.2f} {kind}" for kind in [*TOP_KINDS.values(), "other"] if work.get(kind)
        )
        rows.append(
            (f"database on {name}", f"{work['micros'] / 1000 / stored:.2f} ms", f"per message; commands: {kinds}")
        )
    return rows


def table(result: Result) -> str:
    c, load = result.ceilings, result.load
    ratio = load["e2e_per_s"] / c["db_upserts_per_s"] if c.get("db_upserts_per_s") else 0.0
    rows = [
        ("broker ceiling (produce, acks=all)", f"{c['broker_produce_per_s']:,.0f} msg/s", ""),
        ("database ceiling (bulk upsert)", f"{c['db_upserts_per_s']:,.0f} doc/s", ""),
        (
            "end to end (webhook → ticket stored)",
            f"{load['e2e_per_s']:,.1f} msg/s",
            f"{ratio:.1%} of the database ceiling (target ≥ 60 %)",
        ),
        (
            "end to end (webhook → acknowledgement at the sandbox)",
            f"{load.get('acked_per_s', 0):,.1f} msg/s",
            "",
        ),
        *(_catch_up_rows(load) if result.settings.get("catch_up") else []),
        (
            "webhook latency p50 / p99",
            f"{load['webhook_p50_ms']} / {load['webhook_p99_ms']} ms",
            f"target p99 ≤ 25 ms at 500/s (sent at {result.settings['rate']}/s)",
        ),
        (
            "  of which waiting for the broker p50 / p99",
            f"{_bound(load.get('broker_ack_p50_ms'))} / {_bound(load.get('broker_ack_p99_ms'))} ms",
            "ingest-wa's suara_kafka_publish_seconds, while sending",
        ),
        ("webhook → ticket stored p50 / p99", f"{load['stored_p50_ms']:,} / {load['stored_p99_ms']:,} ms", ""),
        (
            "webhook → acknowledgement at the sandbox p50 / p99",
            f"{load['ack_p50_ms']:,} / {load['ack_p99_ms']:,} ms",
            "",
        ),
        (
            "sent / accepted / stored / acknowledged",
            f"{load['sent']} / {load['accepted']} / {load['stored']} / {load['acknowledged']}",
            f"{load['tickets']} tickets; messages per citizen: {result.settings.get('per_citizen', 1)}; "
            f"{load.get('answered', load['acknowledged'])} citizens answered at the sandbox (the web's on its page)",
        ),
        *_kind_rows(load),
        (
            "lost / duplicated messages / duplicated acks",
            f"{load['lost']} / {load['duplicated_messages']} / {load['duplicated_acks']}",
            "target 0 / 0 / 0",
        ),
        *[(f"peak memory {name}", f"{mib} MiB", "") for name, mib in sorted(result.memory_mib.items())],
        *_cpu_rows(result),
    ]
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    return "\n".join(f"{a:<{width}}  {b:>{vwidth}}  {n}".rstrip() for a, b, n in rows)


async def start_again(
    stack: Stack, name: str, pids: dict[str, int], cpu_before: dict[str, float]
) -> tuple[float, float]:
    """Start a stopped service again; the wall-clock times it was started and answered `/healthz`. Its CPU is
    counted from then on, in `pids` and `cpu_before`: its start-up is the restart's cost, not the backlog's."""
    print(f"bench: starting {name} again to work off the backlog…", flush=True)
    started = time.time()
    await asyncio.to_thread(stack.start_service, name)
    healthy = time.time()
    pids[name] = stack.running[name].proc.pid
    cpu_before[name] = cpu_seconds(pids[name])
    return started, healthy


async def bench(args: argparse.Namespace) -> Result:
    tmp = Path(tempfile.mkdtemp(prefix="suara-bench-"))
    infra = EmbeddedInfra(data_dir=tmp / "data", log_dir=tmp / "logs", broker_port=free_port(), db_port=free_port())
    # The load comes from one address: the web form's limit per client would refuse it after its burst.
    stack = Stack(infra=infra, services=default_services(base_port=_free_base()), env={"WEB_FORM_RATE_PER_MINUTE": "0"})
    result = Result(
        settings={
            "rate": args.rate,
            "seconds": args.seconds,
            "concurrency": args.concurrency,
            "per_citizen": args.per_citizen,
            "mix": args.mix,
            "catch_up": args.catch_up,
        },
        machine={
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "system": platform.platform(),
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    )
    await asyncio.to_thread(stack.start, timeout=90)
    try:
        print("bench: measuring the ceilings…", flush=True)
        result.ceilings["broker_produce_per_s"] = round(
            await produce_ceiling(infra.bootstrap, count=args.ceiling_count), 1
        )
        result.ceilings["db_upserts_per_s"] = round(
            await upsert_ceiling(infra.mongodb_uri, count=args.ceiling_count), 1
        )
        run = uuid.uuid4().hex[:8]
        total = int(args.rate * args.seconds)
        if args.catch_up:
            print("bench: stopping ticketing: what is sent waits in the broker…", flush=True)
            await asyncio.to_thread(stack.stop_service, "ticketing")
        shares = ", ".join(f"{kind} {share}" for kind, share in args.mix.items())
        print(f"bench: sending {total} at {args.rate}/s ({shares}), {args.per_citizen} per citizen…", flush=True)
        pids = processes(stack)
        cpu_before = cpu_by_process(pids)
        top_before = await database_top(infra.mongodb_uri)
        acks_before = await publish_buckets(stack)
        sent = await send_load(
            endpoints(stack),
            rate=args.rate,
            seconds=args.seconds,
            concurrency=args.concurrency,
            run=run,
            mix=args.mix,
            per_citizen=args.per_citizen,
        )
        acks_after = await publish_buckets(stack)
        restart = await start_again(stack, "ticketing", pids, cpu_before) if args.catch_up else None
        print("bench: waiting for every ticket and acknowledgement…", flush=True)
        gathered = await collect(stack, sent, within=args.drain_timeout)
        result.cpu_seconds = {name: round(s - cpu_before[name], 1) for name, s in cpu_by_process(pids).items()}
        result.database = top_difference(top_before, await database_top(infra.mongodb_uri))
        gathered.update(await count_copies(stack, gathered["ok"]))
        result.memory_mib = peak_memory_mib(stack)
        summarise(result, sent, gathered)
        if restart is not None:
            restarted_at, healthy_at = restart
            result.load.update(
                catch_up_figures(
                    gathered["stored"],
                    backlog=len(gathered["ok"]),
                    restarted_at=restarted_at,
                    healthy_at=healthy_at,
                    ceiling=result.ceilings["db_upserts_per_s"],
                )
            )
        # What the webhooks' answers waited for: the broker's acknowledgement, while the load was sent.
        for q in (50, 99):
            result.load[f"broker_ack_p{q}_ms"] = _ms(bucket_quantile(acks_before, acks_after, q))
    finally:
        await asyncio.to_thread(stack.stop)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="suara-dev bench", description=__doc__)
    parser.add_argument("--rate", type=float, default=500.0, help="webhooks per second")
    parser.add_argument("--seconds", type=float, default=6.0, help="how long to send")
    parser.add_argument("--concurrency", type=int, default=64, help="webhooks in flight at most")
    parser.add_argument(
        "--per-citizen", type=int, default=1, help="messages each citizen sends (the ones after the first thread)"
    )
    parser.add_argument(
        "--mix",
        type=parse_mix,
        default=DEFAULT_MIX,
        help=f"each kind's share of the load, of {', '.join(KINDS)} (default {DEFAULT_MIX})",
    )
    parser.add_argument("--ceiling-count", type=int, default=10_000, help="messages/documents for the ceilings")
    parser.add_argument(
        "--catch-up",
        action="store_true",
        help="stop ticketing while sending and start it after: how fast it works off the backlog (the end-to-end "
        "latencies then include the downtime)",
    )
    parser.add_argument("--drain-timeout", type=float, default=900.0, help="seconds to wait for every ticket")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args(argv)
    result = asyncio.run(bench(args))
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    json_path = args.out / f"bench-{stamp}.json"
    png_path = args.out / f"bench-{stamp}.png"
    json_path.write_text(json.dumps(result.__dict__, indent=2))
    plot(result, png_path)
    print()
    print(table(result))
    print(f"\nresult: {json_path}\nplot:   {png_path}")
    load = result.load
    return 0 if load["lost"] == 0 and load["duplicated_messages"] == 0 and load["duplicated_acks"] == 0 else 1
