"""Routing of complaints to a category, an agency and a priority, from the operator's YAML rules."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..tickets.models import Priority

DEFAULT_RULES = "rules.yaml"
_NOT_WORD = re.compile(r"[^0-9a-z]+")
_CODE = re.compile(r"^[a-z][a-z0-9_]{1,40}$")


def normalize(text: str) -> str:
    """Lower-case words separated by single spaces: what keywords are matched against."""
    return " ".join(_NOT_WORD.sub(" ", text.casefold()).split())


class RulesError(ValueError):
    """The routing file cannot be used; the message says where."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PriorityRule(_Strict):
    deadline_working_days: int = Field(ge=1, le=60)
    keywords: tuple[str, ...] = ()


class DepartmentRule(_Strict):
    name: str = Field(min_length=1, max_length=200)
    round_robin: bool = False


class TriageRule(_Strict):
    name: str = "Tim Pengaduan (triase)"
    deadline_working_days: int = Field(default=3, ge=1, le=60)


class CategoryRule(_Strict):
    name: str = Field(min_length=1, max_length=200)
    department: str | None = None
    priority: Priority | None = None
    forward_to: str | None = Field(default=None, description="an outside body the complaint is forwarded to")
    forward_advice: str | None = None
    keywords: tuple[str, ...] = ()


class RoutingRules(_Strict):
    """The whole routing file."""

    triage: TriageRule = TriageRule()
    priorities: dict[Priority, PriorityRule]
    departments: dict[str, DepartmentRule]
    categories: dict[str, CategoryRule]

    @field_validator("departments")
    @classmethod
    def _department_codes(cls, value: dict[str, DepartmentRule]) -> dict[str, DepartmentRule]:
        for code in value:
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9 ./-]{0,39}", code):
                raise ValueError(f"department code {code!r}: letters, digits, space . / - only, at most 40")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> RoutingRules:
        missing = [p.value for p in Priority if p not in self.priorities]
        if missing:
            raise ValueError(f"priorities: missing {', '.join(missing)}")
        for code, category in self.categories.items():
            if not _CODE.match(code):
                raise ValueError(f"category {code!r}: use lower-case letters, digits and _")
            if category.department is not None and category.department not in self.departments:
                raise ValueError(f"category {code}: unknown department {category.department!r}")
        return self


@dataclass(frozen=True, slots=True)
class Routing:
    """What the rules say about one complaint."""

    category: str | None
    department: str | None
    priority: Priority
    forward_to: str | None = None
    forward_advice: str | None = None
    matched: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class _Keyword:
    words: tuple[str, ...]
    prefix: bool  # the last word matches any word starting with it

    @classmethod
    def parse(cls, raw: str) -> _Keyword:
        prefix = raw.rstrip().endswith("*")
        words = tuple(normalize(raw.replace("*", " ")).split())
        if not words:
            raise RulesError(f"keyword {raw!r} has no letters or digits")
        return cls(words, prefix)

    def found_in(self, tokens: list[str], present: frozenset[str] | None = None) -> bool:
        """Whether the keyword occurs in the tokens; `present` (the tokens as a set) rules most keywords out at once."""
        n = len(self.words)
        if present is None:
            present = frozenset(tokens)
        if n == 1 and not self.prefix:
            return self.words[0] in present
        if n > 1 and self.words[0] not in present:
            return False  # only the last word may match as a prefix
        for i in range(len(tokens) - n + 1):
            if tokens[i : i + n - 1] != list(self.words[:-1]):
                continue
            last = tokens[i + n - 1]
            if last == self.words[-1] or (self.prefix and last.startswith(self.words[-1])):
                return True
        return False


class Router:
    """Classifies complaint texts with one loaded rules file."""

    def __init__(self, rules: RoutingRules) -> None:
        self.rules = rules
        self._categories = [
            (code, rule, [_Keyword.parse(k) for k in rule.keywords]) for code, rule in rules.categories.items()
        ]
        self._priorities = [
            (priority, [_Keyword.parse(k) for k in rules.priorities[priority].keywords])
            for priority in (Priority.URGENT, Priority.HIGH, Priority.LOW)
        ]

    def classify(self, text: str | None, *, category: str | None = None) -> Routing:
        """The category (best keyword score; `category` when the reporter chose one), its agency and priority."""
        tokens = normalize(text or "").split()
        present = frozenset(tokens)
        matched: list[str] = []
        best: tuple[int, str] | None = None
        if category is not None and category in self.rules.categories:
            best = (1, category)
        else:
            for code, _rule, keywords in self._categories:
                hits = [k for k in keywords if k.found_in(tokens, present)]
                score = sum(len(k.words) for k in hits)
                if score and (best is None or score > best[0]):
                    best = (score, code)
                    matched = [" ".join(k.words) for k in hits]
        priority = Priority.NORMAL
        for level, keywords in self._priorities:
            if any(k.found_in(tokens, present) for k in keywords):
                priority = level
                break
        if best is None:
            return Routing(category=None, department=None, priority=priority)
        rule = self.rules.categories[best[1]]
        if rule.priority is not None and _rank(rule.priority) > _rank(priority):
            priority = rule.priority
        return Routing(
            category=best[1],
            department=rule.department,
            priority=priority,
            forward_to=rule.forward_to,
            forward_advice=rule.forward_advice,
            matched=tuple(matched),
        )

    def deadline_days(self, priority: str, *, department: str | None) -> int:
        """Working days an agency has for a ticket of this priority; triage has its own (shorter) deadline."""
        days = self.rules.priorities[Priority(priority)].deadline_working_days
        if department is None:
            return min(days, self.rules.triage.deadline_working_days)
        return days

    def department_name(self, code: str | None) -> str | None:
        if code is None:
            return None
        rule = self.rules.departments.get(code)
        return rule.name if rule else code

    def category_name(self, code: str | None) -> str | None:
        if code is None:
            return None
        rule = self.rules.categories.get(code)
        return rule.name if rule else code


_ORDER = [Priority.LOW, Priority.NORMAL, Priority.HIGH, Priority.URGENT]


def _rank(priority: Priority) -> int:
    return _ORDER.index(priority)


def load_rules(path: str | Path | None = None) -> RoutingRules:
    """Read and check a routing file (the one shipped with Suara when `path` is empty)."""
    try:
        if path:
            raw = Path(path).read_text(encoding="utf-8")
            where = str(path)
        else:
            raw = resources.files(__package__).joinpath(DEFAULT_RULES).read_text(encoding="utf-8")
            where = DEFAULT_RULES
    except OSError as exc:
        raise RulesError(f"routing rules {path}: cannot be read ({exc.strerror})") from exc
    try:
        data: Any = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise RulesError(f"routing rules {where}: not valid YAML: {exc}") from exc
    try:
        rules = RoutingRules.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise RulesError(f"routing rules {where}: {loc}: {first['msg']}") from exc
    Router(rules)  # every keyword parses
    return rules
