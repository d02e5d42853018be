"""checkov finds nothing in what we apply (each overlay, rendered) and what we build (the Dockerfiles); every
exception is written on its resource with its reason."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from deploykit import OVERLAYS, REPO, SERVICES, render_text

CHECKOV = REPO / ".venv-tools" / "bin" / "checkov"


@pytest.fixture(scope="session")
def report(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """checkov's JSON report on both rendered overlays and the four Dockerfiles (one run: it takes seconds)."""
    workdir = tmp_path_factory.mktemp("checkov")
    assert CHECKOV.exists(), "checkov lives in .venv-tools: run `make tools` (make test does)"
    files = []
    for overlay in OVERLAYS:
        path = workdir / f"{overlay}.yaml"
        path.write_text(render_text(f"overlays/{overlay}"))
        files += ["-f", str(path)]
    files += [arg for s in SERVICES.values() for arg in ("-f", str(REPO / "services" / s.name / "Dockerfile"))]
    # checkov would fetch its guidelines from its vendor's API: skip that, and send anything it still tries to a
    # closed port here, so that the scan stays on this machine.
    local = {"BC_SKIP_MAPPING": "TRUE", "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    done = subprocess.run(  # noqa: S603 - the pinned checkov of .venv-tools, on files we just wrote
        [str(CHECKOV), "--skip-download", "--framework", "kubernetes", "dockerfile", "-o", "json", *files],
        env={**os.environ, **local, "NO_PROXY": ""},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.stdout.strip().startswith(("[", "{")), f"checkov did not report:\n{done.stderr[-3000:]}"
    report = json.loads(done.stdout)
    return report if isinstance(report, list) else [report]


def test_checkov_finds_nothing_in_the_overlays_and_the_dockerfiles(report: list[dict[str, Any]]) -> None:
    assert {r["check_type"] for r in report} == {"kubernetes", "dockerfile"}
    for result in report:
        assert result["summary"]["parsing_errors"] == 0
        assert result["summary"]["passed"] > 0, f"checkov checked nothing of {result['check_type']}"
    failed = [
        f"{c['check_id']} {c['check_name']}: {c['resource']} ({Path(c['file_path']).name})"
        for result in report
        for c in result["results"]["failed_checks"]
    ]
    assert not failed, "checkov findings (fix them, or skip on the resource with the reason):\n" + "\n".join(failed)


def test_every_exception_is_on_its_resource_with_a_reason(report: list[dict[str, Any]]) -> None:
    skipped = [c for result in report for c in result["results"]["skipped_checks"]]
    for check in skipped:
        reason = (check.get("check_result") or {}).get("suppress_comment") or ""
        assert len(reason.split()) >= 5, f"{check['check_id']} on {check['resource']} is skipped without a reason"
    # A skip checkov could not parse would silently skip nothing: each one names a check and gives a reason.
    written = [
        line.split(":", 1)[1].strip()
        for path in (REPO / "deploy").rglob("*.yaml")
        for line in path.read_text().splitlines()
        if re.match(r"\s*(checkov\.io/skip\d+:|value: CKV)", line)
    ]
    for text in written:
        assert re.fullmatch(r"CKV2?_[A-Z0-9_]+=\S.{20,}", text), f"malformed skip: {text}"
    assert {c["check_id"] for c in skipped} == {text.split("=")[0] for text in written}, "every skip is in deploy/"
