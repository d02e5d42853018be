"""What Suara says to citizens, in Bahasa Indonesia."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

WIB = ZoneInfo("Asia/Jakarta")

STATUS_LABELS = {
    "new": "Baru diterima",
    "open": "Sedang diproses",
    "pending": "Menunggu tanggapan Anda",
    "resolved": "Selesai",
    "closed": "Ditutup",
}


def wib(moment: datetime) -> str:
    return moment.astimezone(WIB).strftime("%d-%m-%Y %H:%M WIB")


def acknowledgement(*, reference: str, status_url: str, extra: str = "", private_page: bool = False) -> str:
    """The first answer. With `private_page` (a confidential report from the web form, whose replies show only on
    the reporter's own page, where this is read) it points there, not to the reference's public page."""
    follow = (
        "Laporan ini dirahasiakan: tanggapan petugas hanya tampil di halaman ini, simpan alamatnya."
        if private_page
        else f"Cek status kapan saja dengan mengirim: cek {reference} atau buka {status_url}/{reference}"
    )
    return (
        f"Terima kasih, laporan Anda sudah kami terima dengan nomor {reference}. "
        f"Laporan akan diverifikasi dan diteruskan ke dinas terkait paling lambat 3 hari kerja.{extra} {follow}"
    )


def status_answer(*, reference: str, status: str, updated_at: datetime, department: str | None) -> str:
    where = f" di {department}" if department else ""
    return f"Status laporan {reference}: {STATUS_LABELS.get(status, status)}{where} (diperbarui {wib(updated_at)})."


def status_not_found(reference: str) -> str:
    return f"Nomor laporan {reference} tidak kami temukan. Mohon periksa kembali nomornya, misalnya RMB-2026-000123."


def forwarded(*, forward_to: str, advice: str | None) -> str:
    """Added to the acknowledgement when the complaint belongs to a body outside the kabupaten."""
    return f" Laporan ini kami teruskan ke {forward_to}." + (f" {advice}" if advice else "")


def linked(previous: str) -> str:
    """Added to the acknowledgement of a ticket that follows up a finished one."""
    return f" Laporan ini terhubung dengan laporan Anda sebelumnya, {previous}."


def resolved_with_survey(*, reference: str) -> str:
    return (
        f"Laporan {reference} telah selesai ditindaklanjuti. Seberapa puas Anda dengan penanganannya? "
        "Balas dengan satu angka: 1 (sangat tidak puas) sampai 5 (sangat puas). "
        "Jika masalahnya belum selesai, balas saja pesan ini dengan penjelasan Anda."
    )


def survey_thanks(*, reference: str, score: int) -> str:
    return f"Terima kasih, penilaian Anda ({score} dari 5) untuk laporan {reference} sudah kami catat."


#: Placeholders a canned response may use, with what each becomes.
CANNED_PLACEHOLDERS = ("reference", "name", "department", "due_date", "category", "kecamatan")
SALUTATION = "Bapak/Ibu"


def due_date(moment: datetime | None) -> str:
    return moment.astimezone(WIB).strftime("%d-%m-%Y") if moment else "-"
