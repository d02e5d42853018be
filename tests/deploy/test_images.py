"""The images: each Dockerfile installs only its service and the shared package, runs as non-root with the entry
point of `make run`; `make images` refuses plainly where no Docker engine runs."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from deploykit import REPO, SERVICES, Service

UV = REPO / ".venv" / "bin" / "uv"


@dataclass(frozen=True)
class Instruction:
    stage: int
    op: str
    args: str


def _instructions(dockerfile: Path) -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped, numbered by stage."""
    joined: list[str] = []
    pending = ""
    for line in dockerfile.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    found, stage = [], -1
    for line in joined:
        op, _, args = line.strip().partition(" ")
        if op.upper() == "FROM":
            stage += 1
        found.append(Instruction(stage, op.upper(), args.strip()))
    return found


def _dockerfile(service: Service) -> Path:
    return REPO / "services" / service.name / "Dockerfile"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_the_runtime_stage_is_small_non_root_and_starts_like_make_run(name: str) -> None:
    service = SERVICES[name]
    steps = _instructions(_dockerfile(service))
    froms = [s.args for s in steps if s.op == "FROM"]
    assert len(froms) == 2 and froms[0].endswith(" AS build") and froms[1].endswith(" AS runtime"), froms
    assert froms[1].startswith("python:3.11-slim"), "a slim base, the workspace's Python"
    final = [s for s in steps if s.stage == 1]
    copies = [s.args for s in final if s.op == "COPY"]
    assert copies == ["--from=build /app/.venv /app/.venv"], "only the built environment reaches the image"
    (user,) = [s.args for s in final if s.op == "USER"]
    uid = int(user.split(":")[0])
    assert uid >= 10000, "a numeric non-root user, as the Deployments' runAsUser expects"
    (entry,) = [s.args for s in final if s.op == "ENTRYPOINT"]
    assert json.loads(entry) == ["python", "-m", service.module], "the entry point of make run (devstack)"
    (expose,) = [s.args for s in final if s.op == "EXPOSE"]
    assert int(expose) == service.port
    env = " ".join(s.args for s in final if s.op == "ENV")
    assert "SERVICE_HOST=0.0.0.0" in env and f"PORT={service.port}" in env
    assert any(s.op == "HEALTHCHECK" and "/healthz" in s.args for s in final)


def _rehearse(service: Service, root: Path) -> Path:
    """Run the build stage's COPY and `uv sync` steps in `root` (absolute paths of the image mapped under it) with
    the workspace's uv, and return the virtual environment they built."""
    env = {**os.environ}
    for key in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT"):
        env.pop(key, None)
    workdir = root
    for step in _instructions(_dockerfile(service)):
        if step.stage != 0 or step.op == "FROM":
            continue
        if step.op == "ENV":
            for pair in shlex.split(step.args):
                key, _, value = pair.partition("=")
                env[key] = str(root / value.lstrip("/")) if value.startswith("/") else value
        elif step.op == "WORKDIR":
            workdir = root / step.args.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif step.op == "COPY":
            *sources, dest = shlex.split(step.args)
            for source in sources:
                src, target = REPO / source, workdir / dest
                assert src.exists(), f"{service.name}'s Dockerfile copies {source}, which does not exist"
                if src.is_dir():
                    shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                else:
                    if dest.endswith("/"):
                        target.mkdir(parents=True, exist_ok=True)
                        target = target / src.name
                    shutil.copy2(src, target)
        elif step.op == "RUN":
            words = shlex.split(step.args)
            if words[:2] == ["pip", "install"]:
                assert [w for w in words[2:] if not w.startswith("-")] == ["uv>=0.9,<1"], "pip installs only uv"
                continue
            assert words[:2] == ["uv", "sync"], f"unexpected build step: RUN {step.args}"
            done = subprocess.run(  # noqa: S603 - the workspace's uv with the Dockerfile's own arguments
                [str(UV), *words[1:]],
                cwd=workdir,
                env={**env, "UV_PYTHON": sys.executable, "UV_COMPILE_BYTECODE": "0"},
                capture_output=True,
                text=True,
                timeout=240,
                check=False,
            )
            assert done.returncode == 0, f"{service.name}: RUN {step.args} failed:\n{done.stderr[-3000:]}"
    return Path(env["UV_PROJECT_ENVIRONMENT"])


def _devstack_only() -> set[str]:
    """Packages the devstack needs and no service does: the embedded broker and database (httpx and aiohttp,
    which drive the bench and the sandbox, are the services' own too: the ticket API's client, tweepy's)."""
    deps = tomllib.loads((REPO / "devstack" / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {d.split(">")[0].split("=")[0].split("<")[0].strip().lower() for d in deps}
    return names - {"suara-shared", "httpx", "aiohttp"}


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_the_build_installs_only_the_service_and_the_shared_package(name: str, tmp_path: Path) -> None:
    service = SERVICES[name]
    venv = _rehearse(service, tmp_path)
    probe = (
        "import importlib, importlib.metadata as md, importlib.util, json\n"
        f"main = importlib.import_module('{service.module}.main')\n"
        f"assert importlib.util.find_spec('{service.module}.__main__')\n"
        "dists = sorted(d.metadata['Name'].lower() for d in md.distributions())\n"
        "print(json.dumps({'file': main.__file__, 'dists': dists}))"
    )
    done = subprocess.run(  # noqa: S603 - the interpreter the rehearsal just built
        [str(venv / "bin" / "python"), "-c", probe],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"], "SUARA_ENV": "development"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{service.module} does not import from its image's environment:\n{done.stderr}"
    found = json.loads(done.stdout.strip().splitlines()[-1])
    suara = {d for d in found["dists"] if d.startswith("suara")}
    assert suara == {"suara-shared", f"suara-{service.name}"}, f"the image holds {sorted(suara)}"
    assert not (_devstack_only() & set(found["dists"])), "nothing of the devstack belongs in an image"
    assert found["file"].startswith(str(venv)), "installed into the environment, not linked to the source tree"


def test_the_build_context_leaves_out_what_no_image_needs() -> None:
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", ".venv-tools", "var", "test-artifacts", "**/tests"} <= ignored


def test_make_images_says_plainly_that_no_engine_runs_and_builds_nothing(tmp_path: Path) -> None:
    """This machine has the Docker client only; `make images` must say so and fail, never pretend."""
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    done = subprocess.run(
        ["make", "--no-print-directory", "images"],  # noqa: S607 - make from PATH, as a person types it
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    said = done.stdout + done.stderr
    assert "nothing was built" in said
    assert "no Docker engine" in said or "docker is not installed" in said
    assert "make images: suara-" not in said, "no build may start"
