"""Pure functions that turn a WhatsApp Cloud API webhook payload into Suara's events (no I/O, no state)."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from suara_shared import untrusted
from suara_shared.events import (
    Attachment,
    Channel,
    DeliveryError,
    DeliveryState,
    DeliveryStatus,
    InboundMessage,
    Location,
    MessageKind,
    ReplyContext,
    Sender,
    utcnow,
)
from suara_shared.identity import normalize_phone

#: `object` of every WhatsApp Business Account webhook (channels.md §1.2).
WHATSAPP_OBJECT = "whatsapp_business_account"

#: Sender of the rare message that names nobody: kept rather than dropped, so an operator still sees it.
UNKNOWN_SENDER = "unknown"

_ID_MAX = 512
_USER_ID_MAX = 256

Json = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Content:
    """What one message type contributes to an InboundMessage, besides who sent it, when, and its id."""

    kind: MessageKind
    text: str | None = None
    attachments: tuple[Attachment, ...] = ()
    location: Location | None = None
    #: The message this one points at when the type says so itself (a reaction); else `context.id` is used.
    in_reply_to: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


Normalizer = Callable[[Json], Content]


@dataclass(frozen=True, slots=True)
class WebhookBatch:
    """Everything one webhook POST carried, in the order it came."""

    messages: tuple[InboundMessage, ...] = ()
    statuses: tuple[DeliveryStatus, ...] = ()
    #: `value.errors[]`: problems Meta reports outside any message (§1.2); nothing to publish, only to log.
    errors: tuple[DeliveryError, ...] = ()
    #: What was set aside on purpose, e.g. `field:account_update` or `status:deleted`, for logs and metrics.
    ignored: tuple[str, ...] = ()


class MalformedMessage(ValueError):
    """A message whose type-specific object is not what its `type` promises."""


# --- small readers that never trust the payload's types -------------------------------------------------


def _mapping(value: object) -> Json:
    return value if isinstance(value, Mapping) else {}


def _mappings(value: object) -> list[Json]:
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def _text(value: object) -> str | None:
    """A non-empty string, or None."""
    return value if isinstance(value, str) and value else None


def _ident(value: object) -> str | None:
    """An identifier: Meta sends strings, but a number is still an id and keeps its digits."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    return _text(value)


def _float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):  # OverflowError: an integer beyond any float
        return None
    return number if math.isfinite(number) else None


def _timestamp(value: object) -> datetime:
    """Meta's unix seconds (a string) as an aware UTC datetime; the time of reading if it is unusable."""
    seconds = _float(value)
    if seconds is None or seconds <= 0:
        return utcnow()
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return utcnow()


def _type_object(message: Json, key: str) -> Json:
    body = message.get(key)
    if not isinstance(body, Mapping):
        raise MalformedMessage(f"message of type {key!r} has no {key!r} object")
    return body


def _platform_error(error: Json) -> DeliveryError:
    """One entry of Meta's `errors[]` (code, title, message, error_data.details)."""
    details = _text(_mapping(error.get("error_data")).get("details"))
    message = _text(error.get("message"))
    return DeliveryError(
        code=_ident(error.get("code")) or "unknown",
        title=_text(error.get("title")) or message,
        detail=details or message,
    )


# --- one normalizer per message type (channels.md §1.3) ---------------------------------------------------


def _normalize_text(message: Json) -> Content:
    body = _type_object(message, "text").get("body")
    if not isinstance(body, str):
        raise MalformedMessage("text message without a body")
    return Content(MessageKind.TEXT, text=body)


def _media(kind: MessageKind) -> Normalizer:
    """Image, audio, video, document and sticker share one shape: a media id to fetch later (§1.8)."""

    def normalize(message: Json) -> Content:
        body = _type_object(message, kind.value)
        caption = _text(body.get("caption"))
        attachment = Attachment(
            kind=kind,
            media_id=_ident(body.get("id")),
            url=_text(body.get("url")),
            mime_type=_text(body.get("mime_type")),
            sha256=_text(body.get("sha256")),
            caption=caption,
            filename=_text(body.get("filename")),
        )
        # A voice note reads differently from a forwarded audio file; an animated sticker is no photo.
        flags = {name: body[name] for name in ("voice", "animated") if isinstance(body.get(name), bool)}
        return Content(kind, text=caption, attachments=(attachment,), metadata=flags)

    return normalize


def _normalize_location(message: Json) -> Content:
    body = _type_object(message, "location")
    location = Location(
        latitude=_float(body.get("latitude")),
        longitude=_float(body.get("longitude")),
        name=_text(body.get("name")),
        address=_text(body.get("address")),
    )
    url = _text(body.get("url"))
    return Content(MessageKind.LOCATION, location=location, metadata={"url": url} if url else {})


def _normalize_contacts(message: Json) -> Content:
    cards = _mappings(message.get("contacts"))
    if not cards:
        raise MalformedMessage("contacts message without contacts")
    shared: list[dict[str, Any]] = []
    lines: list[str] = []
    for card in cards:
        name_obj = _mapping(card.get("name"))
        parts = [_text(name_obj.get("first_name")), _text(name_obj.get("last_name"))]
        name = _text(name_obj.get("formatted_name")) or " ".join(p for p in parts if p) or None
        numbers = (_text(ph.get("phone")) or _ident(ph.get("wa_id")) for ph in _mappings(card.get("phones")))
        phones = [number for number in numbers if number]
        shared.append({"name": name, "phones": phones})
        # The responder reads the text; the full vCard stays in `raw`.
        lines.append(": ".join(filter(None, [name, ", ".join(phones) or None])) or "(kontak tanpa nama)")
    return Content(MessageKind.CONTACTS, text="\n".join(lines), metadata={"contacts": shared})


def _normalize_interactive(message: Json) -> Content:
    body = _type_object(message, "interactive")
    subtype = _text(body.get("type"))
    if subtype in ("button_reply", "list_reply"):
        reply = _type_object(body, subtype)
        metadata = {"interactive_type": subtype, "reply_id": _ident(reply.get("id"))}
        if description := _text(reply.get("description")):
            metadata["description"] = description
        return Content(MessageKind.INTERACTIVE, text=_text(reply.get("title")), metadata=metadata)
    if subtype == "nfm_reply":
        reply = _type_object(body, subtype)
        # A Flow's answers are in `response_json` (kept in `raw`); `body` is what the citizen saw as sent.
        return Content(
            MessageKind.INTERACTIVE,
            text=_text(reply.get("body")),
            metadata={"interactive_type": subtype, "flow_name": _text(reply.get("name"))},
        )
    return _unsupported_content(message, interactive_type=subtype)


def _normalize_button(message: Json) -> Content:
    body = _type_object(message, "button")
    return Content(MessageKind.BUTTON, text=_text(body.get("text")), metadata={"payload": _text(body.get("payload"))})


def _normalize_reaction(message: Json) -> Content:
    body = _type_object(message, "reaction")
    emoji = _text(body.get("emoji"))
    # An empty emoji is WhatsApp's way of saying the reaction was taken back.
    return Content(
        MessageKind.REACTION,
        text=emoji,
        in_reply_to=_ident(body.get("message_id")),
        metadata={"reaction_removed": emoji is None},
    )


def _unsupported_content(message: Json, **extra: Any) -> Content:
    errors = [_platform_error(e).model_dump() for e in _mappings(message.get("errors"))]
    metadata: dict[str, Any] = {"wa_type": _text(message.get("type")), **extra}
    if errors:
        metadata["errors"] = errors
    return Content(MessageKind.UNSUPPORTED, metadata=metadata)


#: The one map from WhatsApp's `type` to its normalizer; a type not here becomes `unsupported`.
NORMALIZERS: dict[str, Normalizer] = {
    "text": _normalize_text,
    "image": _media(MessageKind.IMAGE),
    "audio": _media(MessageKind.AUDIO),
    "video": _media(MessageKind.VIDEO),
    "document": _media(MessageKind.DOCUMENT),
    "sticker": _media(MessageKind.STICKER),
    "location": _normalize_location,
    "contacts": _normalize_contacts,
    "interactive": _normalize_interactive,
    "button": _normalize_button,
    "reaction": _normalize_reaction,
}


# --- messages ---------------------------------------------------------------------------------------------


def _contact_for(message: Json, contacts: Sequence[Json]) -> Json:
    """The `contacts[]` entry describing this message's sender."""
    ids = {_ident(message.get("from")), _ident(message.get("from_user_id"))} - {None}
    for contact in contacts:
        if ids & {_ident(contact.get("wa_id")), _ident(contact.get("user_id"))}:
            return contact
    # A username-only sender may come with neither id on the message; then a lone contact is the sender.
    if not ids and len(contacts) == 1:
        return contacts[0]
    return {}


def _sender(message: Json, contacts: Sequence[Json]) -> Sender:
    """The citizen: keyed on the business-scoped user id when present (§1.10), else on the WhatsApp id."""
    contact = _contact_for(message, contacts)
    wa_id = _ident(message.get("from")) or _ident(contact.get("wa_id"))
    user_id = _ident(message.get("from_user_id")) or _ident(contact.get("user_id"))
    key = user_id or wa_id
    if key is None:
        raise MalformedMessage("message names no sender")
    name = _text(_mapping(contact.get("profile")).get("name"))
    return Sender(channel_user_id=key, display_name=name[:256] if name else None, phone=normalize_phone(wa_id))


def _fallback_id(raw: Json) -> str:
    """A stable id for a message that lacks a usable one, so that Meta's retries still deduplicate."""
    given = _ident(raw.get("id"))
    if given is not None and len(given) <= _ID_MAX and untrusted.clean_text(given) == given:
        return given  # else too long, or not text the broker can carry (a lone surrogate): its digest instead
    # surrogatepass: a lone surrogate in a hand-built payload must not make the fallback itself fail.
    canonical = json.dumps(raw, sort_keys=True, default=str, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


def _fallback_sender(raw: Json, contacts: Sequence[Json]) -> Sender:
    try:
        sender = _sender(raw, contacts)
        if len(sender.channel_user_id) <= _USER_ID_MAX:
            return sender
    except Exception:  # noqa: S110 - the fallback must not fail: an unknown sender still keeps the message
        pass
    return Sender(channel_user_id=UNKNOWN_SENDER)


def _message_event(raw: Json, content: Content, sender: Sender, message_id: str, business: Json) -> InboundMessage:
    context = _mapping(raw.get("context"))
    in_reply_to = content.in_reply_to or _ident(context.get("id"))
    metadata: dict[str, Any] = {}
    if phone_number_id := _ident(business.get("phone_number_id")):
        metadata["phone_number_id"] = phone_number_id  # which of our numbers it reached: reply from the same
    if context.get("forwarded") is True or context.get("frequently_forwarded") is True:
        metadata["forwarded"] = True
    metadata.update(content.metadata)
    return InboundMessage(
        channel=Channel.WHATSAPP,
        platform_message_id=message_id,
        conversation_key=sender.channel_user_id,
        sender=sender,
        kind=content.kind,
        text=content.text,
        attachments=content.attachments,
        location=content.location,
        reply_context=ReplyContext(in_reply_to=in_reply_to) if in_reply_to else None,
        received_at=_timestamp(raw.get("timestamp")),
        metadata=metadata,
        raw=dict(raw),
    )


def normalize_message(
    message: object,
    *,
    contacts: Sequence[Json] = (),
    business: Json | None = None,
    normalizers: Mapping[str, Normalizer] = NORMALIZERS,
) -> InboundMessage:
    """One entry of `value.messages[]` as an InboundMessage. Never raises: a message that cannot be read
    becomes `unsupported` with its raw payload, so it is kept and never blocks the others."""
    try:
        message = untrusted.clean(message)  # as the webhook does: a lone surrogate never reaches the event
    except untrusted.TooDeep:
        message = {"value": "nested too deeply"}
    raw: Json = message if isinstance(message, Mapping) else {"value": message}
    business = business or {}
    try:
        message_id = _ident(raw.get("id"))
        if message_id is None:
            raise MalformedMessage("message without an id")
        normalizer = normalizers.get(_text(raw.get("type")) or "")
        content = normalizer(raw) if normalizer is not None else _unsupported_content(raw)
        return _message_event(raw, content, _sender(raw, contacts), message_id, business)
    except Exception as exc:  # whatever went wrong, the message is kept as unsupported
        content = _unsupported_content(raw, normalize_error=type(exc).__name__)
        return _message_event(raw, content, _fallback_sender(raw, contacts), _fallback_id(raw), business)


# --- statuses (channels.md §1.4) ----------------------------------------------------------------------------

#: `played` (a voice note was listened to) is read and then some; `deleted` has no place in Suara's states.
_STATES: dict[str, DeliveryState] = {
    "sent": DeliveryState.SENT,
    "delivered": DeliveryState.DELIVERED,
    "read": DeliveryState.READ,
    "played": DeliveryState.READ,
    "failed": DeliveryState.FAILED,
}


def normalize_status(status: object) -> DeliveryStatus | None:
    """One entry of `value.statuses[]`; None when it names no message or a state Suara does not track."""
    try:
        status = untrusted.clean(status)  # the webhook cleaned it already; a caller handing it over raw need not
    except untrusted.TooDeep:
        return None
    entry = _mapping(status)
    message_id = _ident(entry.get("id"))
    state = _STATES.get(_text(entry.get("status")) or "")
    if message_id is None or state is None:
        return None
    errors = _mappings(entry.get("errors"))
    return DeliveryStatus(
        channel=Channel.WHATSAPP,
        platform_message_id=message_id,
        status=state,
        error=_platform_error(errors[0]) if errors else None,
        occurred_at=_timestamp(entry.get("timestamp")),
    )


# --- the whole webhook ------------------------------------------------------------------------------------


def is_whatsapp_envelope(payload: object) -> bool:
    """True for a WhatsApp Business Account webhook; other Graph objects are not this endpoint's."""
    return isinstance(payload, Mapping) and payload.get("object") == WHATSAPP_OBJECT


def _changes(payload: Json, ignored: list[str]) -> Iterator[Json]:
    entries = payload.get("entry")
    if not isinstance(entries, list):
        ignored.append("entry:missing")
        return
    for entry in entries:
        changes = _mapping(entry).get("changes")
        if not isinstance(changes, list):
            ignored.append("entry:invalid")
            continue
        for change in changes:
            if isinstance(change, Mapping):
                yield change
            else:
                ignored.append("change:invalid")


def _items(value: Json, key: str, ignored: list[str]) -> list[object]:
    items = value.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        ignored.append(f"{key}:invalid")
        return []
    return items


def normalize_webhook(payload: Json) -> WebhookBatch:
    """Every message, status and out-of-band error of one webhook, over all its entries and changes."""
    messages: list[InboundMessage] = []
    statuses: list[DeliveryStatus] = []
    errors: list[DeliveryError] = []
    ignored: list[str] = []
    for change in _changes(payload, ignored):
        field_name = change.get("field", "messages")
        value = change.get("value")
        # Only `messages` carries citizens' messages and our statuses; template, quality and account
        # updates are for people running the WhatsApp account, not for tickets.
        if field_name != "messages" or not isinstance(value, Mapping):
            ignored.append(f"field:{str(field_name)[:32]}")  # logged: never more of the payload than a name
            continue
        business = _mapping(value.get("metadata"))
        contacts = _mappings(value.get("contacts"))
        for message in _items(value, "messages", ignored):
            messages.append(normalize_message(message, contacts=contacts, business=business))
        for status in _items(value, "statuses", ignored):
            normalized = normalize_status(status)
            if normalized is None:
                ignored.append(f"status:{(_text(_mapping(status).get('status')) or 'invalid')[:32]}")
            else:
                statuses.append(normalized)
        errors.extend(_platform_error(error) for error in _mappings(value.get("errors")))
    return WebhookBatch(
        messages=tuple(messages), statuses=tuple(statuses), errors=tuple(errors), ignored=tuple(ignored)
    )
