"""Custom resources carry the fields their operators require (tests/deploy/crds/), and refer to what exists."""

from __future__ import annotations

import copy
import functools
from typing import Any

import pytest
import yaml
from deploykit import CRD_SCHEMAS, Doc, Rendered, documented_secrets
from jsonschema import Draft202012Validator


@functools.cache
def _validators() -> dict[tuple[str, str], Draft202012Validator]:
    found = {}
    for path in CRD_SCHEMAS.glob("*.yaml"):
        schema = yaml.safe_load(path.read_text())
        Draft202012Validator.check_schema(schema)
        props = schema["properties"]
        found[props["apiVersion"]["const"], props["kind"]["const"]] = Draft202012Validator(schema)
    return found


def _errors(doc: Doc) -> list[str]:
    validator = _validators()[doc["apiVersion"], doc["kind"]]
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}" for e in validator.iter_errors(doc)]


def _custom(overlay: Rendered) -> list[Doc]:
    kinds = {kind for _, kind in _validators()}
    return [d for d in overlay.docs if d["kind"] in kinds]


def test_every_custom_resource_has_the_fields_its_operator_requires(overlay: Rendered) -> None:
    docs = _custom(overlay)
    assert {d["kind"] for d in docs} == {kind for _, kind in _validators()}, "every schema kept is used"
    problems = {f"{d['kind']}/{d['metadata']['name']}": _errors(d) for d in docs}
    problems = {name: errs for name, errs in problems.items() if errs}
    assert not problems, f"{overlay.overlay}: {problems}"
    for doc in overlay.docs:
        if doc["apiVersion"].split("/")[0] in {"kafka.strimzi.io", "mongodbcommunity.mongodb.com"}:
            assert (doc["apiVersion"], doc["kind"]) in _validators(), f"no schema for {doc['apiVersion']} {doc['kind']}"


@pytest.mark.parametrize(
    ("kind", "breakage"),
    [
        ("KafkaTopic", lambda d: d["spec"].pop("partitions")),
        ("KafkaUser", lambda d: d["spec"]["authorization"]["acls"][0].pop("operations")),
        ("Kafka", lambda d: d["spec"]["kafka"].__setitem__("replicas", 3)),  # v1: replicas belong to node pools
        ("MongoDBCommunity", lambda d: d["spec"]["users"][0].pop("scramCredentialsSecretName")),
        ("PrometheusRule", lambda d: d["spec"]["groups"][0]["rules"][0].__setitem__("record", "x")),
    ],
)
def test_a_resource_its_operator_would_refuse_is_caught(prod: Rendered, kind: str, breakage: Any) -> None:
    doc = copy.deepcopy(prod.of_kind(kind)[0])
    breakage(doc)
    assert _errors(doc), f"a broken {kind} passed its schema"


def test_the_kraft_cluster_has_controllers_and_brokers(overlay: Rendered) -> None:
    for kafka in overlay.of_kind("Kafka"):
        name = kafka["metadata"]["name"]
        pools = [p for p in overlay.of_kind("KafkaNodePool") if p["metadata"]["labels"]["strimzi.io/cluster"] == name]
        roles = {
            role: sum(p["spec"]["replicas"] for p in pools if role in p["spec"]["roles"])
            for role in ("controller", "broker")
        }
        assert roles["controller"] >= 1 and roles["broker"] >= 1, f"{overlay.overlay}: {name} lacks a role: {roles}"
        assert roles["controller"] % 2 == 1, "an odd number of controllers keeps a KRaft quorum through a failure"


def test_topics_and_users_belong_to_a_cluster_that_runs_their_operators(overlay: Rendered) -> None:
    clusters = {k["metadata"]["name"]: k for k in overlay.of_kind("Kafka")}
    for kind, operator in (("KafkaTopic", "topicOperator"), ("KafkaUser", "userOperator")):
        for doc in overlay.of_kind(kind):
            cluster = clusters.get(doc["metadata"]["labels"]["strimzi.io/cluster"])
            assert cluster is not None, f"{kind}/{doc['metadata']['name']} names no Kafka in the overlay"
            assert operator in cluster["spec"].get("entityOperator", {}), f"nothing reconciles {kind}s"


def test_kafka_users_authenticate_the_way_a_listener_accepts(overlay: Rendered) -> None:
    for kafka in overlay.of_kind("Kafka"):
        accepted = {(lst.get("authentication") or {}).get("type") for lst in kafka["spec"]["kafka"]["listeners"]}
        simple = kafka["spec"]["kafka"].get("authorization", {}).get("type") == "simple"
        for user in overlay.of_kind("KafkaUser"):
            assert user["spec"]["authentication"]["type"] in accepted
            assert simple, "KafkaUser ACLs need the cluster's simple authorization"


def test_the_replica_set_has_its_members_and_its_users_secrets(overlay: Rendered) -> None:
    (mongo,) = overlay.of_kind("MongoDBCommunity")
    assert mongo["spec"]["members"] == (3 if overlay.overlay == "prod" else 1)
    scram = [u["scramCredentialsSecretName"] for u in mongo["spec"]["users"]]
    assert len(scram) == len(set(scram)), "each user needs its own SCRAM credentials secret"
    documented = documented_secrets()
    for user in mongo["spec"]["users"]:
        secret = user["passwordSecretRef"]["name"]
        key = user["passwordSecretRef"].get("key", "password")
        rendered = overlay.get("Secret", secret)
        keys = set((rendered or {}).get("stringData", {})) | set((rendered or {}).get("data", {}))
        assert key in keys or key in documented.get(secret, set()), f"user {user['name']}: no secret {secret}/{key}"
    app = [u for u in mongo["spec"]["users"] if any(r["db"] == "suara" for r in u["roles"])]
    assert app and app[0]["db"] == "suara", "the services' user lives in `suara`, the database its URI names"


def test_monitors_select_services_and_ports_that_exist(overlay: Rendered) -> None:
    for monitor in overlay.of_kind("ServiceMonitor"):
        services = overlay.selected_by("Service", monitor["spec"]["selector"])
        assert services, f"ServiceMonitor/{monitor['metadata']['name']} selects no Service"
        for endpoint in monitor["spec"]["endpoints"]:
            for service in services:
                names = {p.get("name") for p in service["spec"]["ports"]}
                assert endpoint["port"] in names, f"{service['metadata']['name']} has no port {endpoint['port']}"
