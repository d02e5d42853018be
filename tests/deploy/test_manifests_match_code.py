"""The manifests agree with the code: variables, ports, probes, routes, topics, ACLs and scaling bounds."""

from __future__ import annotations

import functools
import importlib
from typing import Any

from deploykit import (
    DEPLOY,
    SERVICES,
    Doc,
    Rendered,
    Service,
    allowed_acls,
    container,
    container_env,
    documented_secrets,
    documented_unset,
    kafka_use,
    pod_labels,
    selector_matches,
    service_of_image,
    value_of,
)
from fastapi import FastAPI
from starlette.routing import Match

from suara_shared import topics

#: Public paths of the contract (CONTRACT.md): whichever service serves one must be reachable from outside.
CONTRACT_PUBLIC = (
    "/webhooks/whatsapp",
    "/webhooks/facebook",
    "/webhooks/instagram",
    "/webhooks/x",
    "/console/",
    "/open311/v2/services.json",
    "/api/v1/tickets",
)


def _app(r: Rendered, deployment: Doc) -> FastAPI:
    """The service's app, built with the Deployment's plain settings (never started: nothing connects)."""
    service = service_of_image(container(deployment)["image"])
    env = container_env(r, deployment).named
    plain = {k.lower(): s.value for k, s in env.items() if s.value is not None}
    # What Secrets hold the test cannot know: a stand-in, in development mode so that it is not refused.
    held = {k.lower(): "a-value-from-a-secret" for k, s in env.items() if s.kind == "secret" and not s.optional}
    return _build(service.module, tuple(sorted({**held, **plain, "suara_env": "development"}.items())))


@functools.cache
def _build(module: str, settings: tuple[tuple[str, str], ...]) -> FastAPI:
    config = importlib.import_module(f"{module}.config")
    main = importlib.import_module(f"{module}.main")
    app: FastAPI = main.create_app(config.Settings.model_validate(dict(settings)))
    return app


def _serves(app: FastAPI, path: str) -> bool:
    """True when some route of the app takes `path` (whatever the method)."""
    scope: dict[str, Any] = {"type": "http", "path": path, "method": "GET", "root_path": "", "headers": []}
    scope["query_string"] = b""
    return any(route.matches(scope)[0] is not Match.NONE for route in app.router.routes)


def _covers(ingress_path: str, path: str) -> bool:
    """Whether an Ingress path (Exact, or Prefix by whole segments) takes `path`."""
    return path == ingress_path or path.startswith(ingress_path.rstrip("/") + "/")


def _serves_under(app: FastAPI, prefix: str) -> bool:
    """Whether the app serves the prefix itself or any route below it."""
    documented = app.openapi()["paths"]
    return (
        _serves(app, prefix) or _serves(app, prefix.rstrip("/") + "/x") or any(_covers(prefix, p) for p in documented)
    )


def _documented_unset_for(service: Service) -> set[str]:
    return {var for var, where in documented_unset().items() if "all" in where or service.name in where}


def test_every_variable_a_service_reads_is_set_or_documented(overlay: Rendered) -> None:
    secrets = documented_secrets()
    missing = {}
    for deployment, service in overlay.deployments():
        env = container_env(overlay, deployment)
        given = set(env.named)
        for name in env.whole_secrets:
            rendered = overlay.get("Secret", name)
            given |= set((rendered or {}).get("stringData", {})) | secrets.get(name, set())
        gap = service.env_names() - given - _documented_unset_for(service)
        if gap:
            missing[deployment["metadata"]["name"]] = sorted(gap)
    assert not missing, (
        f"{overlay.overlay}: set these in the manifests, or list them in deploy/README.md under "
        f"'Settings left at their defaults' with the service's name: {missing}"
    )


def test_every_variable_set_is_one_the_service_reads(overlay: Rendered) -> None:
    """A misspelt name (KAFKA_BOOTSTRAP_SERVER) would be ignored by the service and leave a default in place."""
    unknown = {}
    for deployment, service in overlay.deployments():
        extra = set(container_env(overlay, deployment).named) - service.env_names()
        if extra:
            unknown[deployment["metadata"]["name"]] = sorted(extra)
    assert not unknown, f"{overlay.overlay}: variables no service reads: {unknown}"
    documented = {var for var, where in documented_unset().items()}
    every = set().union(*(s.env_names() for s in SERVICES.values()))
    assert documented <= every, f"deploy/README.md documents variables nothing reads: {sorted(documented - every)}"


def test_every_secret_a_pod_needs_exists_or_is_documented(overlay: Rendered) -> None:
    documented = documented_secrets()
    for deployment, _ in overlay.deployments():
        refs: list[tuple[str, str | None]] = []
        for source in container_env(overlay, deployment).named.values():
            if source.kind == "secret":
                refs.append((source.name, source.key))
        refs += [(name, None) for name in container_env(overlay, deployment).whole_secrets]
        for volume in deployment["spec"]["template"]["spec"].get("volumes", []):
            if "secret" in volume:
                refs += [(volume["secret"]["secretName"], item["key"]) for item in volume["secret"].get("items", [])]
        for name, key in refs:
            rendered = overlay.get("Secret", name)
            keys = set((rendered or {}).get("stringData", {})) | set((rendered or {}).get("data", {}))
            assert name in documented or rendered is not None, f"{name} is neither rendered nor in deploy/README.md"
            if key is not None:
                assert key in keys | documented.get(name, set()), f"{deployment['metadata']['name']}: {name}/{key}"
    for secret in overlay.of_kind("Secret"):
        name = secret["metadata"]["name"]
        assert set(secret.get("stringData", {})) <= documented.get(name, set()), f"{name}: keys not documented"


def test_the_rotation_runbook_restarts_every_deployment_that_reads_the_secret(prod: Rendered) -> None:
    """Environment variables are read at start: a Deployment the runbook forgets keeps the old secret (401s on the
    webhooks, a refused token) until something else restarts it."""
    readme = (DEPLOY / "README.md").read_text()
    runbook = readme[readme.index("### Rotating secrets") : readme.index("## Settings left at their defaults")]
    bullets = {b.split("**")[1]: b for b in runbook.split("\n- ")[1:]}
    for secret in ("suara-meta-secrets", "suara-channel-credentials", "suara-mongodb-connection"):
        readers = set()
        for deployment, _ in prod.deployments():
            env = container_env(prod, deployment)
            if secret in env.whole_secrets or any(v.kind == "secret" and v.name == secret for v in env.named.values()):
                readers.add(deployment["metadata"]["name"])
        (bullet,) = [
            b for b in bullets.values() if f"`{secret.replace('-connection', '-password')}`" in b or f"`{secret}`" in b
        ]
        restarted = {name for name in readers if f"deploy/{name}" in bullet}
        assert restarted == readers, f"rotating {secret}: the runbook does not restart {sorted(readers - restarted)}"


def test_prod_ships_no_secret_and_runs_in_production_mode(prod: Rendered) -> None:
    assert prod.of_kind("Secret") == [], "applying prod must never overwrite the operator's secrets"
    for deployment, _ in prod.deployments():
        assert value_of(prod, deployment, "SUARA_ENV") == "production"
        assert value_of(prod, deployment, "KAFKA_ENABLE_IDEMPOTENCE") == "true"
        assert value_of(prod, deployment, "KAFKA_SECURITY_PROTOCOL") == "SASL_SSL"


def test_base_secrets_are_templates_without_a_real_value(dev: Rendered) -> None:
    for secret in dev.of_kind("Secret"):
        for key, value in secret.get("stringData", {}).items():
            assert str(value).startswith("dev-only-"), f"{secret['metadata']['name']}/{key} looks like a real secret"


def test_ports_and_probes_are_the_services_own(overlay: Rendered) -> None:
    for deployment, service in overlay.deployments():
        box = container(deployment)
        ports = {p["name"]: p["containerPort"] for p in box["ports"]}
        assert ports == {"http": service.port}, f"{service.name} listens on {service.port} (make run, CONTRACT.md)"
        assert value_of(overlay, deployment, "PORT") == str(service.port)
        listen = value_of(overlay, deployment, "SERVICE_HOST")
        assert listen == "0.0.0.0", "listen on the pod's address, not on loopback as under make run"  # noqa: S104
        app = _app(overlay, deployment)
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
            get = box[probe]["httpGet"]
            assert get["path"] == path and get["port"] in ports, f"{deployment['metadata']['name']} {probe}"
            assert _serves(app, path), f"{service.name} serves no {path}"


def test_services_select_pods_and_target_their_ports(overlay: Rendered) -> None:
    for svc in overlay.of_kind("Service"):
        pods = overlay.selected_by("Deployment", svc["spec"]["selector"])
        assert len(pods) == 1, f"Service/{svc['metadata']['name']} selects {len(pods)} Deployments"
        names = {p["name"] for p in container(pods[0])["ports"]}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= names


def test_ingress_paths_are_routes_of_the_apps_behind_them(overlay: Rendered) -> None:
    exposed: dict[str, set[str]] = {}
    rules = [
        (rule, {h for tls in ingress["spec"]["tls"] for h in tls["hosts"]})
        for ingress in overlay.of_kind("Ingress")
        for rule in ingress["spec"]["rules"]
    ]
    for rule, hosts in rules:
        assert rule["host"] in hosts, f"{rule['host']} is served without TLS"
        for item in rule["http"]["paths"]:
            backend = item["backend"]["service"]
            svc = overlay.get("Service", backend["name"])
            assert svc is not None, f"Ingress path {item['path']} goes to a missing Service {backend['name']}"
            assert backend["port"]["name"] in {p["name"] for p in svc["spec"]["ports"]}
            (deployment,) = overlay.selected_by("Deployment", svc["spec"]["selector"])
            app = _app(overlay, deployment)
            path = item["path"]
            served = _serves_under(app, path) if item["pathType"] == "Prefix" else _serves(app, path)
            assert served, f"{rule['host']}{path} goes to {backend['name']}, which serves no such route"
            exposed.setdefault(deployment["metadata"]["name"], set()).add(path)
            if item["pathType"] == "Prefix":
                inside = ("/metrics", "/readyz", "/healthz")
                assert not any(_covers(path, p) for p in inside), f"{path} would expose the operations endpoints"
    for deployment, _ in overlay.deployments():
        app = _app(overlay, deployment)
        reachable = exposed.get(deployment["metadata"]["name"], set())
        for public in CONTRACT_PUBLIC:
            if _serves(app, public):
                assert any(_covers(path, public) for path in reachable), (
                    f"{public} is served by {deployment['metadata']['name']} but no Ingress path reaches it"
                )


#: nginx's sizes: k, m, g in powers of 1024 (ingress-nginx's proxy-body-size).
_NGINX_UNITS = {"k": 1024, "m": 1024**2, "g": 1024**3}


def _nginx_bytes(size: str) -> int:
    return int(size[:-1]) * _NGINX_UNITS[size[-1].lower()] if size[-1].isalpha() else int(size)


def test_the_forms_with_photos_pass_the_ingress_and_every_other_body_stays_small(overlay: Rendered) -> None:
    """A citizen's form with three phone photos must reach ingest-social (which answers 413 itself past its own
    limit), not be cut off by nginx's own error page with everything typed lost."""
    from suara_ingest_social.config import Settings
    from suara_ingest_social.limits import MAX_BODY_BYTES
    from suara_ingest_social.web.photos import form_bytes

    (deployment,) = [d for d, _ in overlay.deployments() if d["metadata"]["name"] == "suara-ingest-social"]
    photo = value_of(overlay, deployment, "WEB_PHOTO_MAX_BYTES") or Settings.model_fields["web_photo_max_bytes"].default
    for ingress in overlay.of_kind("Ingress"):
        limit = _nginx_bytes(ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"])
        paths = {item["path"] for rule in ingress["spec"]["rules"] for item in rule["http"]["paths"]}
        if paths & {"/lapor", "/kiosk"}:
            assert paths == {"/lapor", "/kiosk"}, "only the forms may take bodies larger than 1 MiB"
            assert limit >= form_bytes(int(photo)), "nginx refuses a form with three photos"
        else:
            assert MAX_BODY_BYTES < limit <= 2 * MAX_BODY_BYTES, ingress["metadata"]["name"]


def _topic_resources(r: Rendered) -> dict[str, Doc]:
    return {t["spec"].get("topicName", t["metadata"]["name"]): t for t in r.of_kind("KafkaTopic")}


def test_every_topic_the_code_uses_has_its_kafka_topic(overlay: Rendered) -> None:
    declared = _topic_resources(overlay)
    specs = {spec.name: spec for spec in topics.ALL_TOPICS}
    used = set().union(*(kafka_use(s).produces | kafka_use(s).consumes for s in SERVICES.values()))
    assert used <= set(specs), f"topics used but missing from topics.ALL_TOPICS: {sorted(used - set(specs))}"
    assert set(declared) == set(specs), f"KafkaTopics {sorted(declared)} != topics.py {sorted(specs)}"
    for name, spec in specs.items():
        resource = declared[name]["spec"]
        assert resource["partitions"] == spec.partitions, f"{name}: partitions differ from topics.py"
        assert int(resource["config"]["retention.ms"]) == spec.retention_ms, f"{name}: retention differs"


def test_topics_survive_a_broker_loss_in_prod_and_fit_the_brokers_everywhere(overlay: Rendered) -> None:
    brokers = sum(p["spec"]["replicas"] for p in overlay.of_kind("KafkaNodePool") if "broker" in p["spec"]["roles"])
    for name, topic in _topic_resources(overlay).items():
        replicas, isr = topic["spec"]["replicas"], int(topic["spec"]["config"]["min.insync.replicas"])
        assert replicas <= brokers, f"{name}: {replicas} replicas on {brokers} brokers"
        assert isr <= replicas
        if overlay.overlay == "prod":
            assert (replicas, isr) == (3, 2), f"{name}: replication 3, min.insync.replicas 2 in production"


def test_the_replay_jobs_progress_outlives_every_dead_letter(overlay: Rendered) -> None:
    """The replay group has no member between runs: if the broker forgot its offsets before the dead letters
    expired, the next replay would send every letter again."""
    (kafka,) = overlay.of_kind("Kafka")
    minutes = int(kafka["spec"]["kafka"]["config"].get("offsets.retention.minutes", 7 * 24 * 60))
    (dlq,) = [t for t in topics.ALL_TOPICS if t.name == topics.DEAD_LETTER]
    assert minutes * 60_000 > dlq.retention_ms, "the replay group's offsets expire before its letters"


def test_each_kafka_user_allows_what_its_service_does(overlay: Rendered) -> None:
    for deployment, service in overlay.deployments():
        username = value_of(overlay, deployment, "KAFKA_SASL_USERNAME")
        user = overlay.get("KafkaUser", username or "")
        assert user is not None, f"{deployment['metadata']['name']} logs in as {username}, which no KafkaUser is"
        secret = container_env(overlay, deployment).named["KAFKA_SASL_PASSWORD"]
        assert (secret.name, secret.key) == (username, "password"), "the User Operator's secret holds the password"
        use = kafka_use(service)
        roles = value_of(overlay, deployment, "TICKETING_ROLES")
        consumer = roles is None or "consumer" in roles.split(",")
        needs = {("topic", t, op) for t in use.produces - {topics.DEAD_LETTER} for op in ("Write", "Describe")}
        if consumer:
            needs |= {("topic", t, op) for t in use.consumes for op in ("Read", "Describe")}
            needs |= {("group", g, "Read") for g in use.groups}
            if use.dead_letters:
                needs |= {("topic", topics.DEAD_LETTER, op) for op in ("Write", "Describe")}
        missing = needs - allowed_acls(user)
        assert not missing, f"KafkaUser {username} lacks {sorted(missing)} ({deployment['metadata']['name']})"
        excess = {a for a in allowed_acls(user) if a[0] in ("topic", "group")} - needs
        if not consumer:
            assert not excess, f"KafkaUser {username} may do more than its code: {sorted(excess)}"


def test_ticketing_runs_its_api_and_its_consumer_as_separate_deployments(overlay: Rendered) -> None:
    roles = {
        deployment["metadata"]["name"]: value_of(overlay, deployment, "TICKETING_ROLES")
        for deployment, service in overlay.deployments()
        if service.name == "ticketing"
    }
    assert sorted(str(r) for r in roles.values()) == ["api", "consumer"], roles


def _hpa(r: Rendered, name: str) -> Doc | None:
    return next((h for h in r.of_kind("HorizontalPodAutoscaler") if h["spec"]["scaleTargetRef"]["name"] == name), None)


def test_consumers_scale_only_as_far_as_their_partitions(overlay: Rendered) -> None:
    partitions = {spec.name: spec.partitions for spec in topics.ALL_TOPICS}
    for deployment, service in overlay.deployments():
        roles = value_of(overlay, deployment, "TICKETING_ROLES")
        consumed = kafka_use(service).consumes if roles is None or "consumer" in roles else set()
        hpa = _hpa(overlay, deployment["metadata"]["name"])
        if consumed and hpa is not None:
            bound = min(partitions[t] for t in consumed)
            assert hpa["spec"]["maxReplicas"] <= bound, f"{deployment['metadata']['name']}: idle consumers past {bound}"


def test_the_photo_budget_holds_for_the_whole_service_at_its_largest_scale(overlay: Rendered) -> None:
    """Each pod counts its own photo bytes: at the HPA's largest scale they must still fit the 2 GiB an hour the
    README promises the database's disk."""
    from suara_ingest_social.config import Settings

    (deployment,) = [d for d, _ in overlay.deployments() if d["metadata"]["name"] == "suara-ingest-social"]
    hpa = _hpa(overlay, "suara-ingest-social")
    pods = hpa["spec"]["maxReplicas"] if hpa is not None else deployment["spec"].get("replicas", 1)
    per_pod = value_of(overlay, deployment, "WEB_PHOTO_BYTES_PER_HOUR")
    per_pod = int(per_pod or Settings.model_fields["web_photo_bytes_per_hour"].default)
    assert per_pod * pods <= 2 * 1024**3, f"{pods} pods may keep {per_pod * pods / 1024**3:.1f} GiB of photos an hour"


def test_disruption_budgets_exist_exactly_where_replicas_exceed_one(overlay: Rendered) -> None:
    for deployment, _ in overlay.deployments():
        name = deployment["metadata"]["name"]
        hpa = _hpa(overlay, name)
        replicas = hpa["spec"]["minReplicas"] if hpa else deployment["spec"]["replicas"]
        if hpa:
            assert hpa["spec"]["minReplicas"] == deployment["spec"]["replicas"]
        budgets = [
            p
            for p in overlay.of_kind("PodDisruptionBudget")
            if selector_matches(p["spec"]["selector"], pod_labels(deployment))
        ]
        assert len(budgets) == (1 if replicas > 1 else 0), f"{overlay.overlay} {name}: {replicas} replicas"
        for budget in budgets:  # an unready pod (a shared dependency down) must not block a node's drain
            assert budget["spec"].get("unhealthyPodEvictionPolicy") == "AlwaysAllow", name
        strategy = deployment["spec"]["strategy"]
        assert strategy["type"] == "RollingUpdate" and strategy["rollingUpdate"]["maxUnavailable"] == 0


def test_pods_run_unprivileged_on_a_read_only_root(overlay: Rendered) -> None:
    for deployment, _ in overlay.deployments():
        pod = deployment["spec"]["template"]["spec"]
        box = container(deployment)
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] >= 10000
        assert box["securityContext"]["readOnlyRootFilesystem"] is True
        assert box["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert {"requests", "limits"} <= set(box["resources"])
        mounts = {m["mountPath"] for m in box["volumeMounts"]}
        assert "/tmp" in mounts, "Python and its libraries may write temporary files"
        data_dir = value_of(overlay, deployment, "DATA_DIR")
        assert data_dir is None or data_dir in mounts, f"DATA_DIR {data_dir} must be a writable volume"


def test_the_readme_names_every_overlay_and_component() -> None:
    text = (DEPLOY / "README.md").read_text()
    for path in ("overlays/dev", "overlays/prod", "components/network-policies"):
        assert path in text
