"""Dead letters can be listed and replayed in the cluster, as on one machine (`python -m suara_shared.dlq`): two
suspended CronJobs, the templates of `kubectl create job --from=cronjob/...`, logging in as a KafkaUser that may
do exactly what a replay does."""

from __future__ import annotations

import re

from deploykit import (
    SERVICES,
    Doc,
    Rendered,
    allowed_acls,
    container,
    container_env,
    documented_secrets,
    kafka_use,
    service_of_image,
)

from suara_shared import dlq, topics
from suara_shared.settings import ServiceSettings

JOBS = {"suara-dlq-list": "list", "suara-dlq-replay": "replay"}


def _jobs(overlay: Rendered) -> dict[str, Doc]:
    jobs = {name: job for name, job in overlay.job_templates().items() if name.startswith("suara-dlq-")}
    assert set(jobs) == set(JOBS), "a job to list the dead letters and one to replay them"
    return jobs


def test_each_job_runs_on_demand_only_the_command_its_name_says(overlay: Rendered) -> None:
    for cronjob in overlay.of_kind("CronJob"):
        if cronjob["metadata"]["name"] in JOBS:
            assert cronjob["spec"]["suspend"] is True, f"{cronjob['metadata']['name']} must never run on a schedule"
        assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    for name, job in _jobs(overlay).items():
        box = container(job)
        assert box["command"] == ["python", "-m", dlq.__name__]
        assert dlq.arguments(box["args"]).command == JOBS[name], name
        service_of_image(box["image"])  # one of the services' images: each holds the shared package
        assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_each_job_reaches_kafka_as_the_services_do_with_its_own_documented_credentials(overlay: Rendered) -> None:
    documented = documented_secrets()
    (notifier,) = [d for d, service in overlay.deployments() if service.name == "notifier"]
    own = {"KAFKA_CLIENT_ID", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"}
    services = {k: s for k, s in container_env(overlay, notifier).named.items() if k.startswith("KAFKA_")}
    for name, job in _jobs(overlay).items():
        env = container_env(overlay, job)
        kafka = {k: s for k, s in env.named.items() if k.startswith("KAFKA_")}
        assert {k: s for k, s in kafka.items() if k not in own} == {k: s for k, s in services.items() if k not in own}
        plain = {key.lower(): source.value for key, source in env.named.items() if source.value is not None}
        secrets = {key: source for key, source in env.named.items() if source.kind == "secret"}
        held = {key.lower(): "a-value-from-a-secret" for key in secrets}
        settings = ServiceSettings.model_validate({**plain, **held})  # refuses SASL without its credentials
        for source in secrets.values():
            assert source.key in documented.get(source.name, set()), f"{name}: {source.name} not in deploy/README.md"
        assert secrets["KAFKA_SASL_PASSWORD"].name == settings.kafka_sasl_username, "the User Operator's secret"
        mounted = {m["mountPath"] for m in container(job).get("volumeMounts", [])}
        assert settings.kafka_ssl_cafile is None or settings.kafka_ssl_cafile.rsplit("/", 1)[0] in mounted, name
        volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
        assert (
            volumes["kafka-ca"] == {v["name"]: v for v in notifier["spec"]["template"]["spec"]["volumes"]}["kafka-ca"]
        ), "the cluster CA the services trust"


def test_the_jobs_user_may_read_the_letters_and_write_only_where_they_came_from(overlay: Rendered) -> None:
    origins = {t for s in SERVICES.values() for t in kafka_use(s).consumes if kafka_use(s).dead_letters}
    assert origins == {topics.INBOUND, topics.DELIVERY, topics.OUTBOUND}
    # Write too: a filtered replay puts the letters it passes over back at the end of the topic.
    needs = {("topic", topics.DEAD_LETTER, op) for op in ("Read", "Describe", "Write")}
    needs |= {("group", dlq.REPLAY_GROUP, "Read")}
    needs |= {("topic", t, op) for t in origins for op in ("Write", "Describe")}
    for name, job in _jobs(overlay).items():
        username = container_env(overlay, job).named["KAFKA_SASL_USERNAME"].value
        user = overlay.get("KafkaUser", username or "")
        assert user is not None, f"{name} logs in as {username}, which no KafkaUser is"
        allowed = allowed_acls(user)
        assert needs <= allowed, f"{username} lacks {sorted(needs - allowed)}"
        excess = {a for a in allowed if a[0] in ("topic", "group")} - needs
        assert not excess, f"{username} may do more than a replay: {sorted(excess)}"


def test_the_dead_letter_alert_names_the_jobs_that_exist(overlay: Rendered) -> None:
    (rules,) = overlay.of_kind("PrometheusRule")
    (alert,) = [r for g in rules["spec"]["groups"] for r in g["rules"] if r.get("alert") == "SuaraDeadLetters"]
    named = set(re.findall(r"cronjob/([a-z0-9-]+)", alert["annotations"]["description"]))
    assert named == set(JOBS), "the alert tells the operator which jobs list and replay the letters"
