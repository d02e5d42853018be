"""Routing from the operator's YAML rules: realistic complaints land at the right agency, urgent ones first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from suara_ticketing import places
from suara_ticketing.routing import Router, RulesError, load_rules

CASES: list[dict[str, Any]] = yaml.safe_load((Path(__file__).parent / "data" / "routing_cases.yaml").read_text())
ROUTER = Router(load_rules())


def test_the_case_file_is_big_enough_to_mean_something() -> None:
    assert len(CASES) >= 30
    assert len({c["category"] for c in CASES}) >= 15


@pytest.mark.parametrize("case", CASES, ids=[c["text"][:40] for c in CASES])
def test_complaint_goes_to_the_expected_category_and_agency(case: dict[str, Any]) -> None:
    routing = ROUTER.classify(case["text"])
    assert routing.category == case["category"], routing.matched
    expected_department = ROUTER.rules.categories[case["category"]].department if case["category"] else None
    assert routing.department == expected_department
    if "priority" in case:
        assert routing.priority == case["priority"]


@pytest.mark.parametrize("case", [c for c in CASES if "kecamatan" in c or "desa" in c], ids=lambda c: c["text"][:40])
def test_kecamatan_and_desa_are_read_from_the_text(case: dict[str, Any]) -> None:
    place = places.from_text(case["text"])
    if "kecamatan" in case:
        assert place.kecamatan == case["kecamatan"]
    if "desa" in case:
        assert place.desa == case["desa"]


def test_electricity_is_forwarded_to_pln_not_owned() -> None:
    routing = ROUTER.classify("Listrik mati total sejak semalam")
    assert routing.category == "listrik" and routing.department is None
    assert routing.forward_to and "PLN" in routing.forward_to


def test_common_words_are_not_mistaken_for_places() -> None:
    # "sumber air" (a spring), "pasar" (market), "Pemkab Rembang" (the kabupaten) name no kecamatan.
    for text in ("Sumber air di belakang rumah kering", "Harga di pasar naik", "Terima kasih Pemkab Rembang"):
        assert places.from_text(text) == places.Place(), text


def test_shared_location_is_placed_in_the_nearest_kecamatan_inside_the_kabupaten() -> None:
    assert places.from_point(-6.696, 111.437).kecamatan == "Lasem"
    assert places.from_point(-6.745, 111.69).kecamatan == "Sarang"
    assert places.from_point(-6.2088, 106.8456) == places.Place()  # Jakarta is not Rembang


def test_an_operator_file_overrides_the_shipped_rules(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        """
priorities:
  urgent: {deadline_working_days: 1, keywords: [kobong]}
  high: {deadline_working_days: 2}
  normal: {deadline_working_days: 4}
  low: {deadline_working_days: 8}
departments:
  Damkar: {name: Pemadam Kebakaran, round_robin: true}
categories:
  kebakaran:
    name: Kebakaran
    department: Damkar
    keywords: [kobong, geni*]
""",
        encoding="utf-8",
    )
    router = Router(load_rules(rules))
    routing = router.classify("Omahe tanggane kobong, geninipun ageng")
    assert (routing.category, routing.department, routing.priority) == ("kebakaran", "Damkar", "urgent")
    assert router.deadline_days("normal", department="Damkar") == 4
    assert router.classify("jalan rusak").category is None  # only the operator's categories exist


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("priorities: [", "not valid YAML"),
        ("priorities: {}\ndepartments: {}\ncategories: {}", "priorities: missing"),
        (
            "priorities: {urgent: {deadline_working_days: 1}, high: {deadline_working_days: 2}, "
            "normal: {deadline_working_days: 3}, low: {deadline_working_days: 4}}\n"
            "departments: {}\ncategories: {jalan: {name: Jalan, department: DPU}}",
            "unknown department 'DPU'",
        ),
    ],
)
def test_a_broken_rules_file_is_refused_with_where_it_is_wrong(tmp_path: Path, content: str, message: str) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(content, encoding="utf-8")
    with pytest.raises(RulesError, match=message):
        load_rules(rules)
    with pytest.raises(RulesError, match="cannot be read"):
        load_rules(tmp_path / "missing.yaml")
