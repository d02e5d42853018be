"""`python -m suara_shared.dlq`: list the dead-letter topic, or replay its messages to the topics they came from."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from . import logs, topics
from .kafka import Publisher, client_options
from .settings import ServiceSettings

#: The consumer group whose committed offsets mark what was already replayed.
REPLAY_GROUP = "suara-dlq-replay"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead-lettered message and where it came from."""

    offset: int
    origin_topic: str
    origin_partition: str
    origin_offset: str
    reason: str
    detail: str
    failed_at: str
    #: How often the message failed: more than once when a replay of it failed again (the reason is the last's).
    failures: int

    @classmethod
    def of(cls, record: ConsumerRecord[bytes, bytes]) -> DeadLetter:
        headers = {k: v.decode(errors="replace") for k, v in (record.headers or ())}
        return cls(
            offset=record.offset,
            origin_topic=headers.get("x-origin-topic", ""),
            origin_partition=headers.get("x-origin-partition", ""),
            origin_offset=headers.get("x-origin-offset", ""),
            reason=headers.get("x-error-reason", ""),
            detail=headers.get("x-error-detail", ""),
            failed_at=headers.get("x-failed-at", ""),
            failures=int(failures) if (failures := headers.get("x-failures", "1")).isdigit() else 1,
        )


async def replay(
    settings: ServiceSettings,
    *,
    origin_topic: str | None = None,
    reason: str | None = None,
    dry_run: bool = False,
    group: str = REPLAY_GROUP,
) -> list[DeadLetter]:
    """Replay every dead letter not replayed yet (up to the end of the topic as it is now) to its origin topic.

    Each is republished with its key, value and headers plus `x-replayed-from-offset`, and the replay group's
    offset is committed only after the broker acknowledged it, so an interrupted replay resumes where it stopped.
    Filters choose which letters are republished; each letter they pass over is put back at the end of the topic,
    as it was, before the group moves past it: it stays "not replayed yet" for the next `list` or `replay` (one
    group offset cannot mark some letters of a stretch replayed and others not). `dry_run` lists what would be
    replayed and commits nothing."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **client_options(settings),
    )
    publisher = Publisher(settings)
    done: list[DeadLetter] = []
    await consumer.start()
    try:
        await consumer.topics()  # loads the topics' metadata, so that the partitions are known
        partitions = [
            TopicPartition(topics.DEAD_LETTER, p) for p in consumer.partitions_for_topic(topics.DEAD_LETTER) or ()
        ]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            committed = await consumer.committed(tp)
            consumer.seek(tp, committed or 0)

        async def behind() -> bool:
            for tp in partitions:
                if await consumer.position(tp) < ends[tp]:
                    return True
            return False

        while await behind():
            batches = await consumer.getmany(timeout_ms=1000, max_records=500)
            for tp, records in batches.items():
                for record in records:
                    if record.offset >= ends[tp]:
                        break
                    letter = DeadLetter.of(record)
                    wanted = (origin_topic in (None, letter.origin_topic)) and (reason in (None, letter.reason))
                    replayed = wanted and bool(letter.origin_topic)
                    if replayed:
                        done.append(letter)
                    if dry_run:
                        continue
                    if replayed:
                        headers = [
                            *[(k, v) for k, v in (record.headers or ()) if not k.startswith("x-replayed")],
                            ("x-replayed-from-offset", str(record.offset).encode()),
                        ]
                        await publisher.send_raw([(letter.origin_topic, record.key, record.value or b"", headers)])
                    else:
                        passed_over = list(record.headers or ())
                        await publisher.send_raw([(topics.DEAD_LETTER, record.key, record.value or b"", passed_over)])
                    await consumer.commit({tp: record.offset + 1})
    finally:
        await consumer.stop()
        await publisher.stop()
    return done


def arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (`list` or `replay`, and filters); exits with usage on a wrong one, as argparse does."""
    parser = argparse.ArgumentParser(prog="python -m suara_shared.dlq", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("list", "list dead letters not replayed yet"), ("replay", "replay them")):
        command = sub.add_parser(name, help=help_text)
        command.add_argument("--topic", help="only letters that came from this topic")
        command.add_argument("--reason", help="only letters with this x-error-reason (e.g. handler_error)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = arguments(argv)
    settings = ServiceSettings()
    letters = asyncio.run(replay(settings, origin_topic=args.topic, reason=args.reason, dry_run=args.command == "list"))
    for letter in letters:
        # The job's log is a log like the services': an error that quoted a citizen's number shows it masked.
        print(json.dumps({**asdict(letter), "detail": logs.mask(letter.detail)}))
    verb = "would replay" if args.command == "list" else "replayed"
    print(f"{verb} {len(letters)} dead letter(s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
