"""The normalizer on every sample of channels.md §1.2–1.4 and on the odd payloads Meta may also send."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from suara_ingest_wa.normalize import (
    NORMALIZERS,
    UNKNOWN_SENDER,
    Content,
    is_whatsapp_envelope,
    normalize_message,
    normalize_status,
    normalize_webhook,
)
from suara_ingest_wa.testing import citizen, envelope, text_message
from suara_shared.events import Channel, DeliveryState, InboundMessage, MessageKind

#: Copies of `shared/reference/samples/wa_webhook_*.json` (channels.md §1.2–1.4), so that a clone tests alone.
SAMPLES = Path(__file__).parent / "samples"

#: What each sample must come out as: the kinds of its messages, in order, and the states of its statuses.
EXPECTED: dict[str, tuple[list[MessageKind], list[DeliveryState]]] = {
    "wa_webhook_text.json": ([MessageKind.TEXT], []),
    "wa_webhook_text_quoted_reply.json": ([MessageKind.TEXT], []),
    "wa_webhook_image.json": ([MessageKind.IMAGE], []),
    "wa_webhook_media_variants.json": (
        [MessageKind.AUDIO, MessageKind.VIDEO, MessageKind.DOCUMENT, MessageKind.STICKER],
        [],
    ),
    "wa_webhook_location.json": ([MessageKind.LOCATION], []),
    "wa_webhook_interactive_button_reply.json": ([MessageKind.INTERACTIVE], []),
    "wa_webhook_interactive_list_reply.json": ([MessageKind.INTERACTIVE], []),
    "wa_webhook_button.json": ([MessageKind.BUTTON], []),
    "wa_webhook_reaction.json": ([MessageKind.REACTION], []),
    "wa_webhook_contacts.json": ([MessageKind.CONTACTS], []),
    "wa_webhook_unsupported.json": ([MessageKind.UNSUPPORTED], []),
    "wa_webhook_value_errors.json": ([], []),
    "wa_webhook_status_sent.json": ([], [DeliveryState.SENT]),
    "wa_webhook_status_delivered.json": ([], [DeliveryState.DELIVERED]),
    "wa_webhook_status_read.json": ([], [DeliveryState.READ]),
    "wa_webhook_status_failed_131047.json": ([], [DeliveryState.FAILED]),
}

AISHA = "447700900123"
OUTBOUND_WAMID = "wamid.HBgMNDQ3NzAwOTAwMTIzFQIAERgSQjc3NkE0RjBBMjE4QTc5QzVFAA=="


def load_sample(name: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((SAMPLES / name).read_text())
    return payload


def _messages(name: str) -> list[InboundMessage]:
    return list(normalize_webhook(load_sample(name)).messages)


def _only(name: str) -> InboundMessage:
    [message] = _messages(name)
    return message


def test_every_sample_has_an_expectation() -> None:
    assert set(EXPECTED) == {path.name for path in SAMPLES.glob("wa_webhook_*.json")}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_normalizes_to_expected_kinds_without_losing_anything(name: str) -> None:
    payload = load_sample(name)
    value = payload["entry"][0]["changes"][0]["value"]
    kinds, states = EXPECTED[name]
    batch = normalize_webhook(payload)

    assert is_whatsapp_envelope(payload)
    assert [m.kind for m in batch.messages] == kinds
    assert [m.platform_message_id for m in batch.messages] == [m["id"] for m in value.get("messages", [])]
    assert [s.status for s in batch.statuses] == states
    assert [s.platform_message_id for s in batch.statuses] == [s["id"] for s in value.get("statuses", [])]
    assert batch.ignored == ()
    for message, raw in zip(batch.messages, value.get("messages", []), strict=True):
        assert message.channel is Channel.WHATSAPP
        assert message.conversation_key == message.sender.channel_user_id == AISHA
        assert message.sender.display_name == "Aisha Rahman"
        assert message.received_at == datetime.fromtimestamp(int(raw["timestamp"]), UTC)
        assert message.raw == raw
        assert message.metadata["phone_number_id"] == "106540352242922"
        # What goes on the wire must come back the same on the other side.
        assert InboundMessage.model_validate_json(message.model_dump_json()) == message


def test_text() -> None:
    message = _only("wa_webhook_text.json")
    assert message.text == "My parcel 8841 arrived damaged, I want a refund"
    assert message.received_at == datetime(2024, 6, 1, 10, 0, tzinfo=UTC)
    assert message.reply_context is None
    assert message.attachments == ()
    assert message.partition_key == f"whatsapp:{AISHA}".encode()


def test_quoted_reply_points_at_the_quoted_message() -> None:
    message = _only("wa_webhook_text_quoted_reply.json")
    assert message.text == "Yes, that is the order"
    assert message.reply_context is not None
    assert message.reply_context.in_reply_to == OUTBOUND_WAMID


def test_image() -> None:
    message = _only("wa_webhook_image.json")
    [image] = message.attachments
    assert image.kind is MessageKind.IMAGE
    assert image.media_id == "1472580369258147"
    assert image.mime_type == "image/jpeg"
    assert image.sha256 == "u0n6Jf0VQ3oQv3vC2e7S8a1m9Yw4cZt5Xk2bH1pL6rE="
    assert image.caption == message.text == "Photo of the damaged box"


def test_audio_video_document_sticker() -> None:
    audio, video, document, sticker = _messages("wa_webhook_media_variants.json")
    assert audio.attachments[0].media_id == "2583691470258369"
    assert audio.attachments[0].mime_type == "audio/ogg; codecs=opus"
    assert audio.metadata["voice"] is True
    assert audio.text is None
    assert (video.attachments[0].media_id, video.attachments[0].mime_type) == ("3692581470369258", "video/mp4")
    assert video.text == "Unboxing"
    assert document.attachments[0].filename == "invoice-8841.pdf"
    assert document.attachments[0].mime_type == "application/pdf"
    assert document.attachments[0].caption == "Invoice"
    assert sticker.attachments[0].kind is MessageKind.STICKER
    assert sticker.attachments[0].mime_type == "image/webp"
    assert sticker.metadata["animated"] is False


def test_location() -> None:
    message = _only("wa_webhook_location.json")
    assert message.location is not None
    assert (message.location.latitude, message.location.longitude) == (51.5072178, -0.1275862)
    assert message.location.name == "Trafalgar Square"
    assert message.location.address == "Trafalgar Sq, London WC2N 5DN"
    assert message.metadata["url"] == "https://example.org/place"


def test_interactive_button_and_list_replies() -> None:
    button = _only("wa_webhook_interactive_button_reply.json")
    assert button.text == "Resolved"
    assert button.metadata["interactive_type"] == "button_reply"
    assert button.metadata["reply_id"] == "csat_good"
    assert button.reply_context is not None
    assert button.reply_context.in_reply_to == "wamid.HBgMNDQ3NzAwOTAwMTIzFQIAERgSMTIzNDU2Nzg5MEFCQ0RFRjAxAA=="
    listed = _only("wa_webhook_interactive_list_reply.json")
    assert listed.text == "Delivery problem"
    assert listed.metadata["reply_id"] == "cat_delivery"
    assert listed.metadata["description"] == "Late, lost or damaged parcel"


def test_template_button() -> None:
    message = _only("wa_webhook_button.json")
    assert message.text == "Talk to an agent"
    assert message.metadata["payload"] == "TALK_TO_AGENT"
    assert message.reply_context is not None


def test_reaction_points_at_the_message_reacted_to() -> None:
    message = _only("wa_webhook_reaction.json")
    assert message.text == "👍"
    assert message.reply_context is not None
    assert message.reply_context.in_reply_to == OUTBOUND_WAMID
    assert message.metadata["reaction_removed"] is False


def test_removed_reaction() -> None:
    raw = {
        "from": "6281234567890",
        "id": "wamid.removed",
        "timestamp": "1717236430",
        "type": "reaction",
        "reaction": {"message_id": "wamid.x", "emoji": ""},
    }
    message = normalize_message(raw)
    assert message.kind is MessageKind.REACTION
    assert message.text is None
    assert message.metadata["reaction_removed"] is True


def test_contacts() -> None:
    message = _only("wa_webhook_contacts.json")
    assert message.text == "Omar Haddad: +44 7700 900456"
    assert message.metadata["contacts"] == [{"name": "Omar Haddad", "phones": ["+44 7700 900456"]}]


def test_unsupported_keeps_raw_and_errors() -> None:
    message = _only("wa_webhook_unsupported.json")
    assert message.text is None
    assert message.metadata["wa_type"] == "unsupported"
    assert message.metadata["errors"] == [
        {"code": "131051", "title": "Message type unknown", "detail": "Message type is currently not supported."}
    ]
    assert message.raw is not None and message.raw["errors"][0]["code"] == 131051


def test_value_errors_are_reported_not_published() -> None:
    batch = normalize_webhook(load_sample("wa_webhook_value_errors.json"))
    assert (batch.messages, batch.statuses) == ((), ())
    [error] = batch.errors
    assert (error.code, error.title) == ("131000", "Something went wrong")
    assert error.detail == "Unknown error. Please retry the request."


def test_statuses() -> None:
    [sent] = normalize_webhook(load_sample("wa_webhook_status_sent.json")).statuses
    assert sent.channel is Channel.WHATSAPP
    assert sent.platform_message_id == OUTBOUND_WAMID
    assert sent.error is None
    assert sent.occurred_at == datetime.fromtimestamp(1717236005, UTC)
    assert sent.partition_key == OUTBOUND_WAMID.encode()


def test_failed_status_carries_the_platform_error() -> None:
    [failed] = normalize_webhook(load_sample("wa_webhook_status_failed_131047.json")).statuses
    assert failed.status is DeliveryState.FAILED
    assert failed.error is not None
    assert failed.error.code == "131047"
    assert failed.error.title == "Re-engagement message"
    assert failed.error.detail is not None and failed.error.detail.startswith("Message failed to send")
    assert failed.occurred_at == datetime(2024, 6, 3, 10, 3, 20, tzinfo=UTC)


def test_played_counts_as_read_and_untracked_states_are_set_aside() -> None:
    payload = envelope(
        {
            "statuses": [
                {"id": "wamid.a", "status": "played", "timestamp": "1717236050", "recipient_id": AISHA},
                {"id": "wamid.b", "status": "deleted", "timestamp": "1717236050", "recipient_id": AISHA},
                {"status": "read", "timestamp": "1717236050"},
            ]
        }
    )
    batch = normalize_webhook(payload)
    assert [(s.platform_message_id, s.status) for s in batch.statuses] == [("wamid.a", DeliveryState.READ)]
    assert batch.ignored == ("status:deleted", "status:read")
    assert normalize_status("not a status") is None


# --- several messages, and the odd ones among them -------------------------------------------------------


def test_many_entries_changes_and_messages_each_become_an_event_in_order() -> None:
    first = envelope(
        {
            "contacts": citizen("6281234567890", "Siti"),
            "messages": [
                text_message("6281234567890", "m1", "Jalan rusak"),
                text_message("6281234567890", "m2", "di Sluke"),
            ],
        },
        {"contacts": citizen("6285700000001", "Budi"), "messages": [text_message("6285700000001", "m3", "Lampu mati")]},
    )
    second_entry = envelope(
        {
            "statuses": [{"id": "wamid.out", "status": "delivered", "timestamp": "1717236006"}],
            "contacts": citizen("6281234567890", "Siti"),
            "messages": [text_message("6281234567890", "m4", "Tolong segera")],
        }
    )["entry"][0]
    payload = {**first, "entry": [*first["entry"], second_entry]}
    batch = normalize_webhook(payload)
    assert [(m.platform_message_id, m.conversation_key, m.text) for m in batch.messages] == [
        ("m1", "6281234567890", "Jalan rusak"),
        ("m2", "6281234567890", "di Sluke"),
        ("m3", "6285700000001", "Lampu mati"),
        ("m4", "6281234567890", "Tolong segera"),
    ]
    assert [m.sender.display_name for m in batch.messages] == ["Siti", "Siti", "Budi", "Siti"]
    assert batch.messages[0].sender.phone == "+6281234567890"
    assert [s.platform_message_id for s in batch.statuses] == ["wamid.out"]


def test_unknown_type_then_text_both_kept_in_order() -> None:
    odd = {"from": "6281234567890", "id": "m-odd", "timestamp": "1717236000", "type": "hologram", "hologram": {}}
    payload = envelope(
        {"contacts": citizen("6281234567890", "Siti"), "messages": [odd, text_message("6281234567890", "m-t", "Halo")]}
    )
    unknown, text = normalize_webhook(payload).messages
    assert (unknown.kind, unknown.platform_message_id, unknown.raw) == (MessageKind.UNSUPPORTED, "m-odd", odd)
    assert unknown.metadata["wa_type"] == "hologram"
    assert unknown.conversation_key == "6281234567890"
    assert (text.kind, text.text) == (MessageKind.TEXT, "Halo")


def test_a_message_unlike_its_type_is_kept_as_unsupported() -> None:
    broken = {"from": "6281234567890", "id": "m-broken", "timestamp": "1717236000", "type": "text", "text": "hi"}
    message = normalize_message(broken, contacts=citizen("6281234567890", "Siti"))
    assert (message.kind, message.platform_message_id, message.raw) == (MessageKind.UNSUPPORTED, "m-broken", broken)
    assert message.metadata["normalize_error"] == "MalformedMessage"
    assert message.sender.display_name == "Siti"


def test_a_normalizer_that_raises_never_blocks_the_next_message() -> None:
    def explode(_: Any) -> Content:
        raise RuntimeError("bug in a normalizer")

    normalizers = {**NORMALIZERS, "image": explode}
    image = {"from": "6281234567890", "id": "m-img", "timestamp": "1", "type": "image", "image": {"id": "1"}}
    message = normalize_message(image, normalizers=normalizers)
    assert (message.kind, message.platform_message_id) == (MessageKind.UNSUPPORTED, "m-img")
    assert message.metadata["normalize_error"] == "RuntimeError"


def test_messages_without_id_or_sender_are_still_kept() -> None:
    no_id = {"from": "6281234567890", "timestamp": "1717236000", "type": "text", "text": {"body": "x"}}
    first, again = normalize_message(no_id), normalize_message(dict(no_id))
    assert first.kind is MessageKind.UNSUPPORTED
    assert first.platform_message_id.startswith("sha256:")
    assert first.platform_message_id == again.platform_message_id  # Meta's retries still deduplicate
    nobody = normalize_message({"id": "m-nobody", "type": "text", "text": {"body": "x"}})
    assert (nobody.kind, nobody.sender.channel_user_id) == (MessageKind.UNSUPPORTED, UNKNOWN_SENDER)
    garbage = normalize_message("garbage")
    assert garbage.kind is MessageKind.UNSUPPORTED
    assert garbage.raw == {"value": "garbage"}


def test_business_scoped_user_id_is_the_conversation_key() -> None:
    user_id = "ID.1410018717833190"
    contacts = [{"profile": {"name": "Siti"}, "wa_id": "6281234567890", "user_id": user_id}]
    message = normalize_message(text_message("6281234567890", "m-bsuid", "Halo"), contacts=contacts)
    assert message.conversation_key == message.sender.channel_user_id == user_id
    assert message.sender.phone == "+6281234567890"
    assert message.sender.display_name == "Siti"
    # A username-only citizen: no phone number at all, only the business-scoped id.
    username_only = {"from_user_id": user_id, "id": "m-user", "timestamp": "1", "type": "text", "text": {"body": "x"}}
    message = normalize_message(username_only, contacts=[{"profile": {"name": "Siti"}, "user_id": user_id}])
    assert (message.kind, message.conversation_key, message.sender.phone) == (MessageKind.TEXT, user_id, None)
    assert message.sender.display_name == "Siti"


def test_forwarded_and_bad_timestamps() -> None:
    raw = {**text_message("6281234567890", "m-fwd", "Info banjir", timestamp="soon"), "context": {"forwarded": True}}
    message = normalize_message(raw)
    assert message.metadata["forwarded"] is True
    assert message.reply_context is None
    assert message.received_at.tzinfo is not None and message.received_at.year >= 2025


def test_other_objects_and_fields_are_not_whatsapp_messages() -> None:
    assert not is_whatsapp_envelope({"object": "page", "entry": []})
    assert not is_whatsapp_envelope([{"object": "whatsapp_business_account"}])
    updates = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "account_update", "value": {"event": "X"}}]}],
    }
    batch = normalize_webhook(updates)
    assert (batch.messages, batch.statuses, batch.ignored) == ((), (), ("field:account_update",))
    assert normalize_webhook({"object": "whatsapp_business_account"}).ignored == ("entry:missing",)
