"""Every overlay renders, and every Kubernetes object in it is valid, strictly, against Kubernetes' own schemas."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest
import yaml
from deploykit import CRD_SCHEMAS, OVERLAYS, Rendered, render_text
from kubernetes_validate.utils import SchemaNotFoundError, latest_version

#: The oldest Kubernetes deploy/README.md supports, and the newest the validator knows.
KUBERNETES_VERSIONS = ("1.30", latest_version())


def _custom_kinds() -> set[str]:
    """The kinds tests/deploy/crds/ describes: the only ones allowed to lack a Kubernetes schema."""
    return {yaml.safe_load(path.read_text())["properties"]["kind"]["const"] for path in CRD_SCHEMAS.glob("*.yaml")}


@pytest.mark.parametrize("name", OVERLAYS)
def test_every_overlay_renders_with_kubectl_kustomize(name: str) -> None:
    docs = [d for d in yaml.safe_load_all(render_text(f"overlays/{name}")) if d]
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "Kafka", "KafkaTopic", "MongoDBCommunity", "PrometheusRule"} <= kinds
    assert all(d["metadata"].get("namespace") == "suara" for d in docs if d["kind"] != "Namespace"), (
        "every namespaced object goes to namespace suara"
    )


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_core_object_is_valid_against_the_kubernetes_schema(overlay: Rendered, version: str) -> None:
    custom = _custom_kinds()
    problems = []
    for doc in overlay.docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except SchemaNotFoundError:
            assert doc["kind"] in custom, f"{doc['kind']} has neither a Kubernetes schema nor one in tests/deploy/crds"
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            problems.append(f"{doc['kind']}/{doc['metadata']['name']} at {where}: {exc.message}")
    assert not problems, f"{overlay.overlay} is invalid for Kubernetes {version}:\n" + "\n".join(problems)


def test_the_validation_is_strict_a_misspelled_field_is_refused(prod: Rendered) -> None:
    """What the strict check buys: `kubectl apply` would reject (or silently drop) a misspelled field."""
    deployment = copy.deepcopy(prod.of_kind("Deployment")[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {"httpGet": {"path": "/readyz"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)
