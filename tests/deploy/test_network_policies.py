"""The opt-in NetworkPolicies (prod) let through exactly what the code needs: evaluated here the way Kubernetes
evaluates them, on the pods of the prod overlay and the pods the operators and the cluster run."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

import pytest
from deploykit import SERVICES, Rendered, container, kafka_use, pod_labels, rendered, selector_matches, uses_database

NAMESPACE = "suara"


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str
    labels: dict[str, str]
    ports: dict[str, int] = field(default_factory=dict)  # named container ports
    ip: str = "10.0.0.1"


# Pods others run, with the labels their makers give them.
KAFKA = Pod(
    "kafka broker (Strimzi)",
    NAMESPACE,
    {"strimzi.io/cluster": "suara-kafka", "strimzi.io/kind": "Kafka", "strimzi.io/broker-role": "true"},
)
MONGODB = Pod("mongod (MongoDB operator)", NAMESPACE, {"app": "suara-mongodb-svc"})
DNS = Pod("kube-dns", "kube-system", {"k8s-app": "kube-dns"})
INGRESS = Pod("ingress-nginx controller", "ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
PROMETHEUS = Pod("prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"})
STRANGER = Pod("some other workload", "default", {"app": "other"})
META = Pod("graph.facebook.com", "", {}, ip="157.240.22.35")


def _suara_pods(r: Rendered) -> dict[str, Pod]:
    return {
        d["metadata"]["name"]: Pod(
            d["metadata"]["name"],
            NAMESPACE,
            pod_labels(d),
            {p["name"]: p["containerPort"] for p in container(d)["ports"]},
        )
        for d in r.of_kind("Deployment")
    }


def _peer_matches(peer: dict[str, Any], pod: Pod) -> bool:
    if "ipBlock" in peer:
        if pod.namespace != "":  # cluster pods are matched by selectors, the outside world by address
            return False
        address = ipaddress.ip_address(pod.ip)
        block = peer["ipBlock"]
        inside = address in ipaddress.ip_network(block["cidr"])
        return inside and not any(address in ipaddress.ip_network(e) for e in block.get("except", []))
    if pod.namespace == "":
        return False
    if "namespaceSelector" in peer:
        ns_labels = {"kubernetes.io/metadata.name": pod.namespace}
        if not selector_matches(peer["namespaceSelector"], ns_labels):
            return False
    elif pod.namespace != NAMESPACE:
        return False
    return "podSelector" not in peer or selector_matches(peer["podSelector"], pod.labels)


def _port_matches(rule: dict[str, Any], target: Pod, port: int, protocol: str) -> bool:
    if not rule.get("ports"):
        return True
    for entry in rule["ports"]:
        wanted = entry.get("port")
        number = target.ports.get(wanted) if isinstance(wanted, str) else wanted
        if entry.get("protocol", "TCP") == protocol and (wanted is None or number == port):
            return True
    return False


def _allowed_one_way(
    policies: list[Any], subject: Pod, peer: Pod, target: Pod, port: int, protocol: str, way: str
) -> bool:
    """Whether `subject`'s policies of type `way` (Ingress or Egress) let traffic with `peer` through."""
    if subject.namespace != NAMESPACE:
        return True  # only Suara's namespace has policies here
    selecting = [
        p
        for p in policies
        if selector_matches(p["spec"]["podSelector"], subject.labels) and way in p["spec"].get("policyTypes", [])
    ]
    if not selecting:
        return True
    key, peers_key = ("ingress", "from") if way == "Ingress" else ("egress", "to")
    for policy in selecting:
        for rule in policy["spec"].get(key) or []:
            peers = rule.get(peers_key)
            if (not peers or any(_peer_matches(peer_spec, peer) for peer_spec in peers)) and _port_matches(
                rule, target, port, protocol
            ):
                return True
    return False


def connects(policies: list[Any], source: Pod, target: Pod, port: int | str, protocol: str = "TCP") -> bool:
    """Kubernetes' rule: the source's egress and the target's ingress must both allow the connection."""
    number = target.ports[port] if isinstance(port, str) else port
    return _allowed_one_way(policies, source, target, target, number, protocol, "Egress") and _allowed_one_way(
        policies, target, source, target, number, protocol, "Ingress"
    )


@pytest.fixture(scope="module")
def policies() -> list[Any]:
    found = rendered("prod").of_kind("NetworkPolicy")
    assert found, "prod opts into the network-policies component"
    return found


def _service(deployment: str) -> str:
    return next(s.name for s in SERVICES.values() if deployment.startswith(f"suara-{s.name}"))


def test_dev_has_no_network_policies_they_are_opt_in() -> None:
    assert rendered("dev").of_kind("NetworkPolicy") == []


def test_every_service_resolves_names_and_reaches_kafka(policies: list[Any]) -> None:
    for name, pod in _suara_pods(rendered("prod")).items():
        service = SERVICES[_service(name)]
        assert connects(policies, pod, DNS, 53, "UDP"), f"{name} cannot resolve names"
        assert kafka_use(service).produces or kafka_use(service).consumes
        assert connects(policies, pod, KAFKA, 9093), f"{name} cannot reach Kafka's TLS listener"


def test_only_the_services_that_use_the_database_reach_it(policies: list[Any]) -> None:
    for name, pod in _suara_pods(rendered("prod")).items():
        needs = uses_database(SERVICES[_service(name)])
        assert connects(policies, pod, MONGODB, 27017) == needs, f"{name}: database access should be {needs}"


def test_in_cluster_calls_the_settings_name_are_allowed_and_no_others(policies: list[Any]) -> None:
    prod = rendered("prod")
    pods = _suara_pods(prod)
    wanted: set[tuple[str, str]] = set()
    for deployment, _ in prod.deployments():
        for var in container(deployment).get("env", []):
            value = str(var.get("value", ""))
            for svc in prod.of_kind("Service"):
                if value.startswith(f"http://{svc['metadata']['name']}"):
                    (called,) = prod.selected_by("Deployment", svc["spec"]["selector"])
                    wanted.add((deployment["metadata"]["name"], called["metadata"]["name"]))
    assert ("suara-ingest-social", "suara-ticketing-api") in wanted, "the status page asks the ticket API"
    for source in pods.values():
        for target in pods.values():
            if source is not target:
                allowed = connects(policies, source, target, "http")
                assert allowed == ((source.name, target.name) in wanted), f"{source.name} -> {target.name}"


def test_the_ingress_controller_reaches_exactly_the_ingress_backends(policies: list[Any]) -> None:
    prod = rendered("prod")
    backends = {
        d["metadata"]["name"]
        for ingress in prod.of_kind("Ingress")
        for rule in ingress["spec"]["rules"]
        for item in rule["http"]["paths"]
        for svc in [prod.get("Service", item["backend"]["service"]["name"])]
        if svc is not None
        for d in prod.selected_by("Deployment", svc["spec"]["selector"])
    }
    for name, pod in _suara_pods(prod).items():
        assert connects(policies, INGRESS, pod, "http") == (name in backends), name
        assert connects(policies, PROMETHEUS, pod, "http"), f"Prometheus cannot scrape {name}"
        assert not connects(policies, STRANGER, pod, "http"), f"any pod of the cluster reaches {name}"


def test_only_the_services_that_call_the_platforms_reach_the_internet(policies: list[Any]) -> None:
    for name, pod in _suara_pods(rendered("prod")).items():
        fields = SERVICES[_service(name)].settings_class().model_fields
        calls_out = "meta_graph_url" in fields or "x_api_url" in fields  # the Graph API, X's API
        assert connects(policies, pod, META, 443) == calls_out, f"{name}: internet access should be {calls_out}"
        assert not connects(policies, pod, Pod("cluster-internal", "", {}, ip="10.1.2.3"), 443)


def test_the_dead_letter_jobs_reach_only_kafka_and_nothing_reaches_them(policies: list[Any]) -> None:
    prod = rendered("prod")
    services = list(_suara_pods(prod).values())
    jobs = [Pod(name, NAMESPACE, pod_labels(job)) for name, job in prod.job_templates().items() if "dlq" in name]
    assert jobs, "the dead-letter jobs are rendered"
    for job in jobs:
        assert connects(policies, job, DNS, 53, "UDP"), f"{job.name} cannot resolve names"
        assert connects(policies, job, KAFKA, 9093), f"{job.name} cannot reach Kafka's TLS listener"
        assert not connects(policies, job, MONGODB, 27017), f"{job.name} reaches the database"
        assert not connects(policies, job, META, 443), f"{job.name} reaches the internet"
        for service in services:
            assert not connects(policies, job, service, "http"), f"{job.name} -> {service.name}"
        for peer in (INGRESS, PROMETHEUS, STRANGER, *services):
            assert not connects(policies, peer, job, 8000), f"{peer.name} -> {job.name}"


def test_the_backup_jobs_reach_only_the_database_and_nothing_reaches_them(policies: list[Any]) -> None:
    prod = rendered("prod")
    services = list(_suara_pods(prod).values())
    jobs = [Pod(name, NAMESPACE, pod_labels(job)) for name, job in prod.job_templates().items() if "mongodb" in name]
    assert {job.name for job in jobs} == {"suara-mongodb-backup", "suara-mongodb-restore"}
    for job in jobs:
        assert connects(policies, job, DNS, 53, "UDP"), f"{job.name} cannot resolve names"
        assert connects(policies, job, MONGODB, 27017), f"{job.name} cannot reach the database"
        assert not connects(policies, job, KAFKA, 9093), f"{job.name} reaches Kafka"
        assert not connects(policies, job, META, 443), f"{job.name} reaches the internet"
        for peer in (INGRESS, PROMETHEUS, STRANGER, *services):
            assert not connects(policies, peer, job, 8000), f"{peer.name} -> {job.name}"
