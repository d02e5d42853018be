"""What the deploy tests share: rendering the overlays, reading deploy/README.md, and reading the code."""

from __future__ import annotations

import ast
import functools
import importlib
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from suara_devstack.stack import default_services
from suara_shared import topics
from suara_shared.settings import ServiceSettings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
OVERLAYS = ("dev", "prod")
CRD_SCHEMAS = Path(__file__).resolve().parent / "crds"

Doc = dict[str, Any]


@dataclass(frozen=True)
class Service:
    """One of the four services as the code knows it: where it lives, how it starts, what it reads."""

    name: str  # ticketing, ingest-wa, ...
    module: str  # suara_ticketing, ...
    port: int  # the contract's port, as `make run` uses it

    @property
    def image(self) -> str:
        return f"suara-{self.name}"

    @property
    def source(self) -> Path:
        return REPO / "services" / self.name / self.module

    def settings_class(self) -> type[ServiceSettings]:
        settings: type[ServiceSettings] = importlib.import_module(f"{self.module}.config").Settings
        return settings

    def env_names(self) -> set[str]:
        """Every environment variable the service reads: one per field of its Settings (and ServiceSettings)."""
        return {name.upper() for name in self.settings_class().model_fields}


SERVICES: dict[str, Service] = {
    spec.name: Service(spec.name, spec.module, spec.port)
    for spec in default_services()
    if spec.module.startswith("suara_") and spec.name != "sandbox"
}


def service_of_image(image: str) -> Service:
    """The service an image runs: `registry/path/suara-ticketing:0.1.0` -> ticketing."""
    repo = image.rsplit("/", 1)[-1].split("@")[0].split(":")[0]
    matches = [s for s in SERVICES.values() if s.image == repo]
    assert matches, f"image {image} is none of the services' images ({', '.join(s.image for s in SERVICES.values())})"
    return matches[0]


def kubectl() -> str:
    path = shutil.which("kubectl")
    assert path, "kubectl is needed to render deploy/ (make tools says how)"
    return path


@functools.cache
def render_text(target: str) -> str:
    """`kubectl kustomize` of an overlay (or any kustomization under deploy/)."""
    done = subprocess.run(  # noqa: S603 - our own binary and paths, no shell
        [kubectl(), "kustomize", str(DEPLOY / target)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"kubectl kustomize deploy/{target} failed:\n{done.stderr}"
    return done.stdout


@dataclass
class Rendered:
    """The objects one overlay renders to, with the look-ups the tests need."""

    overlay: str
    docs: list[Doc]

    def of_kind(self, kind: str) -> list[Doc]:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str) -> Doc | None:
        return next((d for d in self.of_kind(kind) if d["metadata"]["name"] == name), None)

    def deployments(self) -> Iterator[tuple[Doc, Service]]:
        """Each Deployment with the service its image runs."""
        for dep in self.of_kind("Deployment"):
            yield dep, service_of_image(container(dep)["image"])

    def job_templates(self) -> dict[str, Doc]:
        """Each CronJob by name, shaped as a Deployment (its pod template under spec.template) for the helpers
        below."""
        return {
            d["metadata"]["name"]: {
                "metadata": d["metadata"],
                "spec": {"template": d["spec"]["jobTemplate"]["spec"]["template"]},
            }
            for d in self.of_kind("CronJob")
        }

    def selected_by(self, kind: str, selector: dict[str, Any]) -> list[Doc]:
        """Objects of `kind` whose pod template (or own labels) match a label selector."""
        found = []
        for doc in self.of_kind(kind):
            labels = pod_labels(doc) if kind == "Deployment" else doc["metadata"].get("labels", {})
            if selector_matches(selector, labels):
                found.append(doc)
        return found


@functools.cache
def rendered(overlay: str) -> Rendered:
    return Rendered(overlay, [d for d in yaml.safe_load_all(render_text(f"overlays/{overlay}")) if d])


def container(deployment: Doc) -> Doc:
    containers: list[Doc] = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, f"{deployment['metadata']['name']}: one container per pod expected"
    return containers[0]


def pod_labels(deployment: Doc) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"].get("labels", {})
    return labels


def selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes' label selector semantics (matchLabels and matchExpressions)."""
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        selector = {"matchLabels": selector}  # a Service's plain selector
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


@dataclass(frozen=True)
class EnvSource:
    """Where a container's variable comes from: a literal, a ConfigMap key or a Secret key."""

    kind: str  # value, configmap, secret
    name: str = ""  # ConfigMap or Secret name
    key: str = ""
    value: str | None = None
    optional: bool = False


@dataclass
class ContainerEnv:
    """The variables a container gets by name, and the Secrets it takes whole (envFrom) whose keys are not known
    from the manifests."""

    named: dict[str, EnvSource] = field(default_factory=dict)
    whole_secrets: list[str] = field(default_factory=list)


def container_env(r: Rendered, deployment: Doc) -> ContainerEnv:
    """Resolve env and envFrom: ConfigMaps from the rendered objects; Secrets by key when rendered or documented."""
    env = ContainerEnv()
    box = container(deployment)
    for source in box.get("envFrom") or []:
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            cm = r.get("ConfigMap", name)
            assert cm is not None, f"{deployment['metadata']['name']} takes ConfigMap {name}, which is not rendered"
            for key, value in (cm.get("data") or {}).items():
                env.named[key] = EnvSource("configmap", name, key, str(value))
        else:
            ref = source["secretRef"]
            env.whole_secrets.append(ref["name"])
    for var in box.get("env") or []:
        if "value" in var:
            env.named[var["name"]] = EnvSource("value", value=str(var["value"]))
        elif "secretKeyRef" in var["valueFrom"]:
            ref = var["valueFrom"]["secretKeyRef"]
            env.named[var["name"]] = EnvSource("secret", ref["name"], ref["key"], optional=ref.get("optional", False))
        elif "configMapKeyRef" in var["valueFrom"]:
            ref = var["valueFrom"]["configMapKeyRef"]
            env.named[var["name"]] = EnvSource("configmap", ref["name"], ref["key"])
        else:
            env.named[var["name"]] = EnvSource("value", value=None)
    return env


def value_of(r: Rendered, deployment: Doc, name: str) -> str | None:
    """A variable's literal or ConfigMap value in a container (None when unset or from a Secret)."""
    source = container_env(r, deployment).named.get(name)
    return source.value if source is not None else None


def allowed_acls(user: Doc) -> set[tuple[str, str, str]]:
    """(resource type, name, operation) the KafkaUser may do."""
    found = set()
    for acl in user["spec"]["authorization"]["acls"]:
        if acl.get("type", "allow") != "allow":
            continue
        for op in acl["operations"]:
            found.add((acl["resource"]["type"], acl["resource"].get("name", ""), op))
    return found


# --- deploy/README.md ------------------------------------------------------------------------------------------


def _table(heading: str) -> list[list[str]]:
    """The rows (cells, stripped) of the first Markdown table under `heading` in deploy/README.md."""
    text = (DEPLOY / "README.md").read_text()
    start = text.index(heading)
    rows = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("#"):
            break
        if line.startswith("|") and not re.match(r"^\|[-| :]+\|$", line):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows[1:]  # the header row


def _names(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


@functools.cache
def documented_unset() -> dict[str, set[str]]:
    """Variables deploy/README.md says the manifests leave at their default, and for which services."""
    found: dict[str, set[str]] = {}
    for row in _table("## Settings left at their defaults"):
        services = {s.strip() for s in row[1].split(",")}
        for name in _names(row[0]):
            found.setdefault(name, set()).update(services)
    return found


@functools.cache
def documented_secrets() -> dict[str, set[str]]:
    """Secrets deploy/README.md describes (those an operator or an operator's controller creates), with keys."""
    return {_names(row[0])[0]: set(_names(row[1])) for row in _table("## Secrets")}


# --- the code --------------------------------------------------------------------------------------------------

TOPIC_NAMES: dict[str, str] = {
    attr: value for attr, value in vars(topics).items() if attr.isupper() and isinstance(value, str)
}


@dataclass
class KafkaUse:
    """What a service's code does with Kafka, read from its source."""

    produces: set[str] = field(default_factory=set)
    consumes: set[str] = field(default_factory=set)
    groups: set[str] = field(default_factory=set)

    @property
    def dead_letters(self) -> bool:
        return bool(self.consumes)  # every ConsumerLoop sets poison messages aside in the dead-letter topic


def kafka_use(service: Service) -> KafkaUse:
    """Topics referenced as `topics.X` (consumed when they key a ConsumerLoop's routes), and group ids."""
    use = KafkaUse()
    constants: dict[str, str] = {}
    for path in service.source.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                for target in node.targets:
                    if isinstance(target, ast.Name) and isinstance(node.value.value, str):
                        constants[target.id] = node.value.value
        routed: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _called(node) == "share":
                routed.update(id(arg) for arg in node.args)  # a consumer's share of a topic's partitions
            if isinstance(node, ast.Call) and _called(node) == "ConsumerLoop":
                for kw in node.keywords:
                    if kw.arg == "routes" and isinstance(kw.value, ast.Dict):
                        for key in kw.value.keys:
                            if key is not None:
                                routed.add(id(key))
                                use.consumes.add(_topic(key))
                    if kw.arg == "group_id":
                        use.groups.add(_literal(kw.value, constants))
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                # create_app(..., group_id: str = GROUP_ID): the default is the group the service runs as
                args = node.args
                for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
                    if arg.arg == "group_id" and default is not None:
                        use.groups.add(_literal(default, constants))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "topics"
                and node.attr in TOPIC_NAMES
                and id(node) not in routed
            ):
                use.produces.add(TOPIC_NAMES[node.attr])
    if use.dead_letters:
        use.produces.add(topics.DEAD_LETTER)
    use.groups.discard("")
    return use


def _called(call: ast.Call) -> str:
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _topic(node: ast.expr) -> str:
    assert isinstance(node, ast.Attribute) and node.attr in TOPIC_NAMES, f"route keyed by {ast.unparse(node)}"
    return TOPIC_NAMES[node.attr]


def _literal(node: ast.expr, constants: dict[str, str]) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id]
    return ""


def uses_database(service: Service) -> bool:
    """True when the service's code opens a MongoDB connection (through suara_shared.db)."""
    return any("db.connect(" in path.read_text() for path in service.source.rglob("*.py"))
