"""The alerts and the dashboard ask Prometheus only for metrics the services export, in queries that parse, and
cover what the operators must see: lag, dead letters, webhook errors, refused tokens, missed deadlines, backups."""

from __future__ import annotations

import functools
import importlib
import json
import pkgutil
import re
from typing import Any

import promql_parser
import pytest
from deploykit import DEPLOY, SERVICES, Rendered
from prometheus_client import REGISTRY

#: Labels Prometheus adds to every scraped series (ServiceMonitor targets, targetLabels).
TARGET_LABELS = {"namespace", "pod", "job", "instance", "service", "container", "endpoint"}
TARGET_LABELS |= {"app_kubernetes_io_component"}
#: Metrics that come from elsewhere than Suara's services: Strimzi's Kafka exporter, Prometheus itself.
EXTERNAL = {"kafka_consumergroup_lag": {"consumergroup", "topic", "partition"}, "up": set()}
#: ... and kube-state-metrics (kube-prometheus-stack), for the backup CronJob's last success.
EXTERNAL |= {"kube_cronjob_status_last_successful_time": {"cronjob", "namespace"}}
EXTERNAL |= {"kube_cronjob_created": {"cronjob", "namespace"}}


@functools.cache
def exported() -> dict[str, set[str]]:
    """Every series name the services can export, with its labels: all their modules imported, as in the pods."""
    for package in ("suara_shared", *(s.module for s in SERVICES.values())):
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, prefix=f"{package}."):
            if not info.name.endswith("__main__"):  # running it would start the service
                importlib.import_module(info.name)
    names: dict[str, set[str]] = {}
    for name, collector in REGISTRY._names_to_collectors.items():
        labels = set(getattr(collector, "_labelnames", ()))
        names[name] = labels | ({"le"} if name.endswith("_bucket") else set())
    return names


def _queries(r: Rendered) -> list[tuple[str, str]]:
    """(where, PromQL) of every alert rule and every dashboard panel."""
    found = []
    for rule_set in r.of_kind("PrometheusRule"):
        for group in rule_set["spec"]["groups"]:
            for rule in group["rules"]:
                found.append((f"alert {rule.get('alert', rule.get('record'))}", str(rule["expr"])))
    for panel in _dashboard()["panels"]:
        for target in panel.get("targets", []):
            found.append((f"panel {panel['title']!r}", target["expr"]))
    return found


@functools.cache
def _dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads((DEPLOY / "base/monitoring/suara-dashboard.json").read_text())
    return dashboard


def _selectors(expr: str) -> list[Any]:
    found: list[Any] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def _grouping_labels(expr: str) -> set[str]:
    return {label.strip() for group in re.findall(r"\bby \(([^)]*)\)", expr) for label in group.split(",")}


def test_every_query_parses_and_names_only_exported_metrics_and_labels(prod: Rendered) -> None:
    metrics = {**exported(), **EXTERNAL}
    problems = []
    for where, expr in _queries(prod):
        try:
            selectors = _selectors(expr)
        except ValueError as exc:
            problems.append(f"{where}: does not parse: {exc}")
            continue
        for selector in selectors:
            if selector.name not in metrics:
                problems.append(f"{where}: no service exports {selector.name}")
                continue
            labels = metrics[selector.name] | TARGET_LABELS
            used = {m.name for m in selector.matchers.matchers if m.name != "__name__"}
            problems += [f"{where}: {selector.name} has no label {label}" for label in used - labels]
        allowed = set().union(*(metrics[s.name] for s in selectors if s.name in metrics)) | TARGET_LABELS
        problems += [f"{where}: grouped by unknown label {label}" for label in _grouping_labels(expr) - allowed]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("concern", "metric"),
    [
        ("consumer lag", "suara_kafka_consumer_lag_messages"),
        ("lag seen by the brokers", "kafka_consumergroup_lag"),
        ("dead-letter growth", "suara_dlq_messages_total"),
        ("webhook 5xx", "suara_http_requests_total"),
        ("refused channel token", "suara_channel_token_valid"),
        ("deadline breaches", "suara_ticket_deadline_breaches_total"),
        ("citizens' files not kept before WhatsApp deletes them", "suara_media_pending_oldest_seconds"),
        ("the database's backups", "kube_cronjob_status_last_successful_time"),
    ],
)
def test_an_alert_watches(prod: Rendered, concern: str, metric: str) -> None:
    alerts = [expr for where, expr in _queries(prod) if where.startswith("alert")]
    assert any(metric in {s.name for s in _selectors(expr)} for expr in alerts), f"no alert on {concern}"


@pytest.mark.parametrize(
    "metric",
    [
        "suara_webhook_requests_total",
        "suara_inbound_to_ticket_seconds_bucket",
        "suara_reply_to_platform_seconds_bucket",
        "suara_kafka_consumer_lag_messages",
        "suara_dlq_messages_total",
        "suara_notifier_delivery_failures_total",
        "suara_tickets_by_status",
        "suara_ticket_deadline_breaches_total",
        "suara_channel_token_valid",
        "suara_kafka_publish_seconds_bucket",
    ],
)
def test_the_dashboard_shows(prod: Rendered, metric: str) -> None:
    panels = [expr for where, expr in _queries(prod) if where.startswith("panel")]
    assert any(metric in {s.name for s in _selectors(expr)} for expr in panels), f"no panel shows {metric}"


def test_every_alert_tells_the_one_it_wakes_what_happened_and_what_to_do(prod: Rendered) -> None:
    for rule_set in prod.of_kind("PrometheusRule"):
        for group in rule_set["spec"]["groups"]:
            for rule in group["rules"]:
                annotations = rule.get("annotations") or {}
                assert annotations.get("summary") and len(annotations.get("description") or "") > 80, rule["alert"]
                assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]


def test_suara_metrics_follow_prometheus_naming() -> None:
    for name, collector in REGISTRY._names_to_collectors.items():
        if not name.startswith("suara_") or name != getattr(collector, "_name", name):
            continue
        kind = getattr(collector, "_type", "")
        assert re.fullmatch(r"suara_[a-z0-9_]+", name), name
        if kind == "counter":
            assert f"{name}_total" in exported(), f"{name}: a counter is exported as *_total"
        if kind == "histogram":
            assert name.endswith(("_seconds", "_bytes")), f"{name}: a histogram names its unit"
        if kind == "gauge":
            assert not name.endswith("_total"), f"{name}: _total belongs to counters"


def test_the_dashboard_is_provisioned_from_the_same_json(prod: Rendered) -> None:
    configmap = prod.get("ConfigMap", "suara-grafana-dashboard")
    assert configmap is not None and configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["suara-dashboard.json"]) == _dashboard()
    assert _dashboard()["uid"] == "suara-overview"
