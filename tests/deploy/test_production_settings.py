"""Production settings: with the base's placeholder secrets, a service in production refuses to start and says
which variable to set; every secret a service holds is a SecretStr, so that refusal covers it."""

from __future__ import annotations

import os
import subprocess
import sys
import typing

import pytest
from deploykit import SERVICES, container_env, rendered, service_of_image
from pydantic import SecretStr

#: Setting names that hold credentials (paths to key files excepted).
SECRET_WORDS = ("token", "secret", "password", "api_key")


def _placeholder_cases() -> list[tuple[str, str, dict[str, str], set[str]]]:
    """(deployment, module, environment, variables holding placeholders) for each prod Deployment that would get
    a placeholder if someone applied the base's Secret templates in production."""
    prod, dev = rendered("prod"), rendered("dev")
    cases = []
    for deployment, service in prod.deployments():
        env: dict[str, str] = {}
        placeholders = set()
        for name, source in container_env(prod, deployment).named.items():
            if source.value is not None:
                env[name] = source.value
            elif source.kind == "secret":
                template = dev.get("Secret", source.name)
                value = (template or {}).get("stringData", {}).get(source.key)
                if value is not None:
                    env[name] = str(value)
                    placeholders.add(name)
                elif not source.optional:
                    env[name] = "a-real-value-from-an-operator"  # e.g. Strimzi's generated Kafka password
        if placeholders:
            cases.append((deployment["metadata"]["name"], service.module, env, placeholders))
    return cases


CASES = _placeholder_cases()


def test_the_templates_hold_placeholders_for_the_services_that_need_secrets() -> None:
    names = {c[0] for c in CASES}
    assert {"suara-ticketing-api", "suara-ticketing-consumer", "suara-ingest-wa"} <= names


@pytest.mark.parametrize(("deployment", "module", "env", "placeholders"), CASES, ids=[c[0] for c in CASES])
def test_a_service_in_production_refuses_the_placeholder_secrets(
    deployment: str, module: str, env: dict[str, str], placeholders: set[str]
) -> None:
    done = subprocess.run(  # noqa: S603 - this interpreter, the service's own entry point
        [sys.executable, "-m", module],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0, f"{deployment} started in production with placeholder secrets"
    assert "placeholder" in done.stderr
    assert any(name in done.stderr for name in placeholders), f"the refusal names none of {sorted(placeholders)}"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_secret_setting_is_a_secret_str(name: str) -> None:
    settings = SERVICES[name].settings_class()
    hints = typing.get_type_hints(settings)
    for field in settings.model_fields:
        if any(word in field for word in SECRET_WORDS) or field.endswith("_keys"):
            annotation = hints[field]
            assert annotation is SecretStr or SecretStr in typing.get_args(annotation), (
                f"{name}: {field.upper()} holds a credential but is not a SecretStr, so production would accept a "
                "placeholder for it and logs could print it"
            )


def test_the_image_of_every_prod_deployment_is_a_service() -> None:
    for deployment, service in rendered("prod").deployments():
        image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        assert service_of_image(image) == service and image.endswith(":0.1.0")
