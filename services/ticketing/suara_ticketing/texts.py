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


def acknowledgement(*, reference: str, status_url: str) -> str:
    return (
        f"Terima kasih, laporan Anda sudah kami terima dengan nomor {reference}. "
        "Tim layanan pengaduan Pemkab Rembang akan menindaklanjutinya paling lambat 3 hari kerja. "
        f"Cek status kapan saja dengan mengirim: cek {reference} atau buka {status_url}/{reference}"
    )


def status_answer(*, reference: str, status: str, updated_at: datetime, department: str | None) -> str:
    where = f" di {department}" if department else ""
    return f"Status laporan {reference}: {STATUS_LABELS.get(status, status)}{where} (diperbarui {wib(updated_at)})."


def status_not_found(reference: str) -> str:
    return f"Nomor laporan {reference} tidak kami temukan. Mohon periksa kembali nomornya, misalnya RMB-2026-000123."
