"""The citizen's pages, rendered from small `string.Template` files with every value HTML-escaped."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from importlib import resources
from string import Template

from suara_shared.events import new_id

from .models import KECAMATAN, PublicReply, PublicStatus
from .service import IDEMPOTENCY_KEY

#: Asia/Jakarta has kept UTC+7 without daylight saving since 1964; a fixed offset needs no tz database.
WIB = timezone(timedelta(hours=7), "WIB")

#: Ticketing's labels (its `status_label`), for an answer that lacks one.
STATUS_LABELS = {
    "new": "Baru diterima",
    "open": "Sedang diproses",
    "pending": "Menunggu tanggapan Anda",
    "resolved": "Selesai",
    "closed": "Ditutup",
}
DELIVERY_LABELS = {
    "queued": "Dalam antrean",
    "sent": "Terkirim",
    "delivered": "Diterima",
    "read": "Dibaca",
    "failed": "Gagal terkirim",
}
PURPOSE_LABELS = {
    "acknowledgement": "Tanda terima",
    "agent_reply": "Balasan petugas",
    "status": "Kabar status",
    "resolution": "Pemberitahuan selesai",
    "survey": "Terima kasih atas penilaian Anda",
}
CHANNEL_LABELS = {
    "web": "Formulir web",
    "whatsapp": "WhatsApp",
    "facebook": "Facebook",
    "instagram": "Instagram",
    "x": "X (Twitter)",
}
_MONTHS = ("Januari", "Februari", "Maret", "April", "Mei", "Juni", "Juli", "Agustus", "September",
           "Oktober", "November", "Desember")  # fmt: skip

#: What the form says about each field when it is refused, by field and pydantic error type ("*": any other).
FIELD_MESSAGES: dict[str, dict[str, str]] = {
    "text": {
        "missing": "Isi keluhan wajib diisi.",
        "string_too_short": "Isi keluhan terlalu singkat: tulis paling sedikit 10 karakter.",
        "string_too_long": "Isi keluhan terlalu panjang: paling banyak 5.000 karakter.",
        "*": "Isi keluhan tidak dapat dibaca. Tulis ulang keluhan Anda.",
    },
    "name": {"*": "Nama terlalu panjang: paling banyak 120 karakter."},
    "phone": {"*": "Nomor HP tidak valid. Tulis nomor Indonesia, misalnya 0812-3456-7890."},
    "email": {"*": "Alamat email tidak valid. Contoh: nama@contoh.id"},
    "kecamatan": {"*": "Pilih salah satu kecamatan di Kabupaten Rembang."},
    "desa": {"*": "Nama desa/kelurahan terlalu panjang: paling banyak 120 karakter."},
    "anonymous": {"*": "Pilihan anonim tidak valid."},
    "confidential": {"*": "Pilihan rahasia tidak valid."},
}
FIELD_LABELS = {
    "text": "Isi keluhan",
    "kecamatan": "Kecamatan",
    "desa": "Desa/Kelurahan",
    "name": "Nama",
    "phone": "Nomor HP/WhatsApp",
    "email": "Email",
    "anonymous": "Laporkan secara anonim",
    "confidential": "Rahasiakan laporan dari publik",
    "foto": "Foto",
    "officer": "Nama petugas desa",
}
#: Fields that carry a hint paragraph the screen reader should announce with them.
_HINTS = frozenset({"text", "phone", "anonymous", "confidential", "foto"})


def too_many(seconds: int) -> str:
    """What a citizen over the web form's rate reads (their text stays in the form)."""
    wait = f"{seconds} detik" if seconds < 120 else f"{math.ceil(seconds / 60)} menit"
    return (
        "Terlalu banyak laporan dikirim dari jaringan Anda dalam waktu singkat, jadi laporan ini belum terkirim. "
        f"Isian Anda masih ada di bawah: silakan kirim lagi dalam {wait}."
    )


BROKER_TROUBLE = (
    "Maaf, laporan Anda belum terkirim karena sistem sedang sibuk. Isian Anda masih ada di bawah: "
    "silakan coba lagi dengan menekan “Kirim laporan”."
)


PHOTO_TROUBLE = (
    "Maaf, laporan Anda belum terkirim karena sistem sedang sibuk. Tulisan Anda masih ada di bawah, tetapi foto "
    "perlu dipilih lagi: pilih fotonya, lalu tekan “Kirim laporan”. Bila masih gagal, kirim tanpa foto."
)
PHOTO_AGAIN = "Pilih lagi foto Anda: foto tidak ikut tersimpan saat isian dikembalikan."


def photo_message(reason: str, *, max_bytes: int) -> str:
    """What the form says of photos it cannot take (`photos.PhotoRefused.reason`)."""
    size = f"{max_bytes / (1024 * 1024):.0f} MB"
    return {
        "too_many": "Paling banyak 3 foto per laporan.",
        "too_large": f"Foto terlalu besar: paling besar {size} per foto.",
        "not_image": "Berkas ini bukan foto. Pilih foto berformat JPEG, PNG, WebP, atau HEIC.",
        "budget": "Foto sedang tidak dapat diterima karena terlalu banyak kiriman. Kirim laporan tanpa foto, atau "
        "coba lagi nanti.",
    }.get(reason, "Foto tidak dapat dibaca. Pilih foto lain.")


class Safe(str):
    """Markup built here from escaped parts; inserted into a template as it is."""


def _escape(value: object) -> str:
    return value if isinstance(value, Safe) else html.escape(str(value), quote=True)


@cache
def _read(name: str) -> str:
    return resources.files("suara_ingest_social.web").joinpath("templates", name).read_text(encoding="utf-8")


@cache
def _template(name: str) -> Template:
    return Template(_read(name))


def render(name: str, **values: object) -> Safe:
    """Fill a template; every value that is not `Safe` is escaped first."""
    return Safe(_template(name).substitute({key: _escape(value) for key, value in values.items()}))


_NOTHING = Safe("")


def page(*, title: str, content: Safe, head: Safe = _NOTHING) -> str:
    """A whole HTML page around `content`."""
    return render("layout.html", title=title, content=content, head=head, css=Safe(_read("style.css")))


def field_message(field: str, error_type: str) -> str:
    """The form's Indonesian message for a refused field."""
    messages = FIELD_MESSAGES.get(field, {"*": "Isian ini tidak valid."})
    return messages.get(error_type, messages["*"])


def field_parts(field: str, errors: Mapping[str, str], *, hints: frozenset[str] = _HINTS) -> tuple[Safe, Safe]:
    """The error paragraph and the aria attributes tying a field to its hint (if its form has one) and error."""
    described = [f"{field}-hint"] if field in hints else []
    error = Safe("")
    if field in errors:
        described.insert(0, f"{field}-error")
        error = render("error.html", field=field, message=errors[field])
    attrs = ' aria-invalid="true"' if field in errors else ""
    if described:
        attrs += f' aria-describedby="{" ".join(described)}"'
    return error, Safe(attrs)


def _kecamatan_options(selected: str) -> Safe:
    chosen = selected.strip().casefold()
    options = ['<option value="">— Pilih kecamatan —</option>']
    for name in KECAMATAN:
        mark = " selected" if name.casefold() == chosen else ""
        options.append(f'<option value="{name}"{mark}>{name}</option>')
    return Safe("\n".join(options))


def error_summary(errors: Mapping[str, str]) -> Safe:
    items = "".join(
        f'<li><a href="#{field}">{_escape(FIELD_LABELS.get(field, field))}: {_escape(message)}</a></li>'
        for field, message in errors.items()
    )
    return Safe(f'<div class="alert" role="alert"><h2>Periksa kembali isian Anda</h2><ul>{items}</ul></div>')


#: The form's hidden field holding its idempotency key.
TOKEN_FIELD = "submission_token"  # noqa: S105 (a field name, not a secret)


def form_page(
    *,
    values: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
    notice: str | None = None,
) -> str:
    """The complaint form, with what the citizen typed and what was wrong with it."""
    values = values or {}
    errors = errors or {}
    fields: dict[str, object] = {}
    for field in ("text", "name", "phone", "email", "desa", "kecamatan", "anonymous", "confidential", "foto"):
        fields[f"{field}_error"], fields[f"{field}_attrs"] = field_parts(field, errors)
        fields[f"{field}_value"] = values.get(field, "")
    fields["kecamatan_options"] = _kecamatan_options(values.get("kecamatan", ""))
    # One token per form shown, kept when the form comes back (a 503, a field to fix): sent again, the same
    # complaint is one complaint.
    token = values.get(TOKEN_FIELD, "")
    fields["token_value"] = token if IDEMPOTENCY_KEY.fullmatch(token) else new_id()
    for box in ("anonymous", "confidential"):
        checked = values.get(box, "").strip().lower() in {"true", "on", "1", "yes"}
        fields[f"{box}_checked"] = Safe(" checked" if checked else "")
    if notice:
        fields["notice"] = Safe(f'<div class="alert" role="alert"><p>{_escape(notice)}</p></div>')
    elif errors:
        fields["notice"] = error_summary(errors)
    else:
        fields["notice"] = Safe("")
    content = render("form.html", lookup=lookup_form(), **fields)
    title = "Periksa isian Anda" if errors or notice else "Sampaikan keluhan"
    return page(title=title, content=content)


def lookup_form(ref: str = "") -> Safe:
    return render("lookup.html", ref=ref)


def lookup_page() -> str:
    return page(title="Cek status laporan", content=render("lookup_page.html", lookup=lookup_form()))


def format_wib(moment: datetime) -> str:
    """E.g. `5 Maret 2026 pukul 14.05 WIB`; a time without zone is taken as UTC, as Suara stores it."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    local = moment.astimezone(WIB)
    return f"{local.day} {_MONTHS[local.month - 1]} {local.year} pukul {local:%H.%M} WIB"


def _reply_order(reply: PublicReply) -> tuple[int, datetime]:
    # The acknowledgement opens the conversation even if a clock put it a moment after the first answer.
    created = reply.created_at if reply.created_at.tzinfo else reply.created_at.replace(tzinfo=UTC)
    return (0 if reply.purpose == "acknowledgement" else 1, created)


def _replies(replies: list[PublicReply], *, hidden: bool = False) -> Safe:
    if hidden:
        return Safe(
            "<p>Laporan ini dirahasiakan: tanggapan petugas hanya tampil di halaman status pribadi pelapor "
            "dan di saluran yang dipakai pelapor.</p>"
        )
    if not replies:
        return Safe("<p>Belum ada tanggapan. Kami akan menampilkannya di sini.</p>")
    items = [
        render(
            "reply.html",
            purpose=PURPOSE_LABELS.get(reply.purpose, "Pesan"),
            iso=reply.created_at.isoformat(),
            created_at=format_wib(reply.created_at),
            text=reply.text,
            delivery=DELIVERY_LABELS.get(reply.delivery_status, reply.delivery_status),
        )
        for reply in sorted(replies, key=_reply_order)
    ]
    return Safe('<ol class="replies">\n' + "\n".join(items) + "\n</ol>")


#: Reloads a page that is waiting for ticketing (no script on the citizen's pages).
REFRESH = Safe('<meta http-equiv="refresh" content="5">')
#: How long after a complaint its page may still wait for the acknowledgement: ticketing stores a new ticket a
#: moment before its messages (the ticket first, so that a crash in between loses nothing), and a citizen who
#: opens the page in between must see the acknowledgement land, not "no reply yet" for good.
ACKNOWLEDGEMENT_AWAITED = timedelta(minutes=2)


def status_page(status: PublicStatus) -> str:
    """What ticketing knows of a complaint: its status, where it went, and every reply; a complaint just recorded
    whose acknowledgement is not stored yet refreshes itself until it is."""
    awaited = (
        not status.replies_hidden
        and not any(reply.purpose == "acknowledgement" for reply in status.replies)
        and datetime.now(UTC) - status.created_at < ACKNOWLEDGEMENT_AWAITED
    )
    content = render(
        "status.html",
        reference=status.reference,
        status=status.status_label or STATUS_LABELS.get(status.status, status.status),
        category=status.category_name or status.category or "Belum ditentukan",
        department=status.department_name or status.department or "Belum ditentukan",
        channel=CHANNEL_LABELS.get(status.channel, status.channel),
        created_at=format_wib(status.created_at),
        updated_at=format_wib(status.updated_at),
        replies=_replies(status.replies, hidden=status.replies_hidden),
        lookup=lookup_form(),
    )
    return page(title=f"Laporan {status.reference}", content=content, head=REFRESH if awaited else _NOTHING)


def pending_page(submission_id: str) -> str:
    """A submission the broker took but ticketing has not recorded yet; the page polls by itself."""
    return page(title="Laporan diterima", content=render("pending.html", submission_id=submission_id), head=REFRESH)


def not_found_page(key: str) -> str:
    return page(
        title="Nomor laporan tidak ditemukan",
        content=render("not_found.html", key=key, lookup=lookup_form(key)),
    )


def unavailable_page(key: str) -> str:
    return page(title="Coba lagi nanti", content=render("unavailable.html", key=key))
