"""The log scan that ends every test run: it catches a phone number, a NIK or a test's message text in a log line,
leaves alone what logs are full of (timestamps, wamids, ticket references, offsets, ports, platform ids, masked
numbers), and a run whose logs hold one fails, naming the line with the finding masked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from suara_devstack.logscan import ROOT, Scanner, literal_texts, sample_texts, sent_texts

COMPLAINT = "Lampu jalan di depan Balai Desa Tireman mati sejak seminggu."
scanner = Scanner([COMPLAINT])


def _kinds(line: str) -> list[str]:
    return scanner.scan_line(line)[0]


@pytest.mark.parametrize(
    "phone",
    [
        "081234567890",
        "0812-3456-7890",
        "0812 3456 7890",
        "0812.3456.7890",
        "(0812) 3456-7890",
        "+6281234567890",
        "+62 812-3456-7890",
        "+62 812 3456 7890",
        "6281234567890",
        "62 812 3456 789",
        "085700000001",
    ],
)
def test_a_phone_number_in_any_usual_writing_is_caught(phone: str) -> None:
    for line in (
        f'{{"msg":"reply sent","to":"{phone}"}}',
        f"sending to {phone} now",
        f'{{"conversation_key":"dm:{phone}"}}',
    ):
        kinds, shown = scanner.scan_line(line)
        assert kinds == ["phone number"], line
        assert phone not in shown


def test_a_nik_is_caught_and_an_id_of_sixteen_digits_is_not() -> None:
    kinds, shown = scanner.scan_line('{"msg":"citizen identified","nik":"3317011203900001"}')
    assert kinds == ["NIK"]
    assert "3317011203900001" not in shown and "3317********0001" in shown
    # Facebook page-scoped ids are 16 digits too, but no NIK: no province 65 with month 87.
    assert _kinds('{"sender":"6543210987654321","recipient":"1234567890123456"}') == []


def test_a_message_text_is_caught_even_escaped_in_json() -> None:
    assert _kinds(json.dumps({"msg": "web complaint accepted", "text": COMPLAINT})) == ["message text"]
    escaped = json.dumps({"msg": "x", "detail": COMPLAINT.replace("di depan", "di\ndepan")})
    assert _kinds(escaped) == ["message text"]
    kinds, shown = scanner.scan_line(f"error: {COMPLAINT}")
    assert kinds == ["message text"] and COMPLAINT not in shown


@pytest.mark.parametrize(
    "line",
    [
        # what the services' formatter makes of the same numbers
        '{"msg":"reply sent","to":"0812****7890"}',
        '{"msg":"citizen","nik":"3317********0001"}',
        '{"msg":"[redacted 61 chars]","text":"[redacted 61 chars]"}',
        # what logs are full of
        '{"ts":"2026-08-12T08:12:34.081+00:00","level":"info","service":"ticketing"}',
        '{"timestamp":"1717236000","ms":1717236000123,"watermark":1717235999000}',
        '{"platform_message_id":"wamid.HBgNNjI4MTIzNDU2Nzg5MBUCABEYEjA4MTIzNDU2Nzg5MEFCQ0RFRgA="}',
        '{"platform_message_id":"wamid.08123456789012345"}',
        '{"reference":"RMB-2026-000123","offset":628123,"partition":5}',
        "Uvicorn running on http://127.0.0.1:8001 (Press CTRL+C to quit)",
        '{"msg":"HTTP Request: POST http://127.0.0.1:21669/v23.0/106540352242922/messages"}',
        '{"page":"109876543210987","ig":"17841400000000001","x_user":"1700000000000000000"}',
        '{"event_id":"62812345678901abcdef0123456789ab","uuid":"62812345-6789-4abc-8def-0123456789ab"}',
        '{"retry_in_s":0.8123456789,"p99":62.81234567}',
        '{"display_phone_number":"622959690001"}',
        '{"msg":"webhook parts set aside","ignored":"comment_without_ids"}',
    ],
)
def test_what_logs_are_full_of_is_not_a_finding(line: str) -> None:
    assert _kinds(line) == []


def test_the_texts_of_the_samples_and_the_tests_are_collected_and_product_words_are_not() -> None:
    texts = sent_texts()
    assert "My parcel 8841 arrived damaged, I want a refund" in texts  # wa_webhook_text.json
    assert "Your courier left my parcel in the rain" in texts  # msgr_webhook_text.json
    assert any(t.startswith("Lampu jalan di depan Balai Desa Tireman") for t in texts)  # a test's complaint
    # The product's own sentences (a log message, a page) are not citizens' words.
    assert "webhook for another Graph object ignored" not in texts
    assert not any("Terlalu banyak laporan dikirim" in t for t in texts)


def test_only_message_fields_count_as_texts(tmp_path: Path) -> None:
    sample = tmp_path / "sample.json"
    sample.write_text(json.dumps({
        "entry": [{"message": {"text": "Jalan rusak di depan rumah saya"}, "id": "a sentence that is an id field"}],
        "error": {"message": "Invalid OAuth access token given", "code": 190},
    }))  # fmt: skip
    assert sample_texts([sample]) == {"Jalan rusak di depan rumah saya"}
    source = tmp_path / "test_x.py"
    source.write_text(
        textwrap.dedent("""
        COMPLAINT = "Sampah menumpuk di pasar sejak kemarin"
        def test_it():
            send(text=f"Lampu mati di gang {n} sejak malam", name="Budi Santoso Wijaya Kusuma")
            assert False, "the acknowledgement never came back in time"
    """)
    )
    # An f-string's fixed parts count when they are prose themselves; a name or an assertion's message does not.
    assert literal_texts([source]) == {"Sampah menumpuk di pasar sejak kemarin", "Lampu mati di gang"}


# --- the whole plugin, in a pytest run of its own --------------------------------------------------------------

PLANTED = """
import logging

log = logging.getLogger("suara_ticketing.tickets.service")


def test_logs_{name}():
    log.info({message!r}, extra={extra})
"""


def _run(tmp_path: Path, message: str, extra: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_planted.py").write_text(PLANTED.format(name="something", message=message, extra=extra))
    env = {**os.environ, "SUARA_TEST_ARTIFACTS": str(tmp_path / "artifacts")}
    return subprocess.run(  # noqa: S603 - this interpreter, this repository's plugin
        [sys.executable, "-m", "pytest", "-p", "suara_devstack.logscan", "-q", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path / "test_planted.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_a_run_whose_logs_hold_a_phone_number_fails_and_shows_it_masked(tmp_path: Path) -> None:
    # The formatter masks phone numbers in strings, not in numbers: a WhatsApp id logged as an int gets through.
    run = _run(tmp_path, "reply sent", '{"recipient": 6281234567890}')
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 passed" in run.stdout
    assert "personal data in the logs" in run.stdout
    assert "in-process.log:1: phone number" in run.stdout
    assert "6281234567890" not in run.stdout and "6281*****7890" in run.stdout


def test_a_run_with_clean_logs_passes(tmp_path: Path) -> None:
    run = _run(tmp_path, "ticket opened", '{"reference": "RMB-2026-000123", "phone": "081234567890"}')
    assert run.returncode == 0, run.stdout + run.stderr
    assert "personal data in the logs" not in run.stdout
    logged = (tmp_path / "artifacts" / "logs" / "in-process.log").read_text()
    assert "RMB-2026-000123" in logged and "081234567890" not in logged


def test_the_repository_is_where_the_scanner_looks() -> None:
    assert (ROOT / "conftest.py").is_file() and (ROOT / "services").is_dir()
