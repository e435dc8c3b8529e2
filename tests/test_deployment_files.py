"""Deployment files (Dockerfile, docker-compose.yml, .env.example) agree with the code.

Cheap static checks: a renamed setting or CLI subcommand fails here, not in a deploy.
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from server.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"

SOMO_NAME = re.compile(r"(?<![A-Za-z0-9_])SOMO_[A-Z0-9_]*[A-Z0-9]")


def load_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "docker-compose.yml is not a mapping"
    return data


def services() -> dict[str, dict[str, Any]]:
    found = load_compose().get("services")
    assert isinstance(found, dict) and found, "docker-compose.yml has no services"
    return found


def service_environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a dict, whether written as a mapping or a KEY=VALUE list."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def command_args(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def leaf_setting_names() -> set[str]:
    """One environment variable per individual setting: SOMO_<FIELD> or SOMO_<SECTION>__<FIELD>."""
    names: set[str] = set()
    for field_name, field in Settings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names.update(f"SOMO_{field_name}__{sub_name}".upper() for sub_name in annotation.model_fields)
        else:
            names.add(f"SOMO_{field_name}".upper())
    return names


def valid_setting_names() -> set[str]:
    """Every name pydantic-settings reads; a whole section (SOMO_DATABASE) may also be set as JSON."""
    return leaf_setting_names() | {f"SOMO_{field_name}".upper() for field_name in Settings.model_fields}


def secret_names() -> list[str]:
    # model_construct: defaults only, so neither the environment nor a local .env can interfere.
    return [name for name, _ in Settings.model_construct().secrets()]


def cli_parser_and_subcommands() -> tuple[argparse.ArgumentParser, set[str]]:
    from server.cli import build_parser

    parser = build_parser()
    subparsers = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    assert subparsers, "server.cli.build_parser() has no subcommands"
    return parser, {name for action in subparsers for name in action.choices}


def test_compose_services_exist_with_healthchecks() -> None:
    found = services()
    for name in ("postgres", "redis", "server", "migrate"):
        assert name in found, f"docker-compose.yml lacks service {name!r}"
    for name, service in found.items():
        if name == "migrate":
            continue  # a one-shot job: it exits, so there is nothing to health-check
        assert service.get("healthcheck"), f"service {name!r} has no healthcheck"


def test_compose_build_service_commands_are_valid_cli() -> None:
    parser, subcommands = cli_parser_and_subcommands()
    built = {name: service for name, service in services().items() if "build" in service}
    assert built, "no service in docker-compose.yml builds the Somo image"
    for name, service in built.items():
        assert "command" in service, f"service {name!r} has no command"
        cmd = command_args(service["command"])
        assert cmd and cmd[0] == "somo", f"service {name!r} command must start with 'somo': {cmd}"
        assert len(cmd) > 1 and cmd[1] in subcommands, (
            f"service {name!r} runs unknown subcommand {cmd[1:2]}; the CLI knows {sorted(subcommands)}"
        )
        try:
            parser.parse_args(cmd[1:])
        except SystemExit as exc:
            raise AssertionError(f"service {name!r}: the CLI rejects {cmd[1:]}") from exc


def test_dockerfile_is_multi_stage_and_not_root() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    from_lines = [line for line in instructions if line.upper().startswith("FROM ")]
    assert len(from_lines) >= 2, "the Dockerfile should be multi-stage"
    users = [line.split(None, 1)[1].strip() for line in instructions if line.upper().startswith("USER ")]
    assert users, "the Dockerfile has no USER line"
    final_user = users[-1].split(":", 1)[0]
    assert final_user not in {"root", "0"}, f"the image runs as {final_user!r}"


def test_somo_variables_are_real_settings() -> None:
    valid = valid_setting_names()
    for path in (COMPOSE_FILE, ENV_EXAMPLE):
        mentioned = set(SOMO_NAME.findall(path.read_text(encoding="utf-8")))
        assert mentioned, f"{path.name} mentions no SOMO_ variables"
        unknown = sorted(mentioned - valid)
        assert not unknown, f"{path.name} mentions unknown settings: {unknown}"


def test_env_example_documents_every_setting_and_hides_secrets() -> None:
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    missing = sorted(leaf_setting_names() - set(SOMO_NAME.findall(text)))
    assert not missing, f".env.example does not document {missing}"
    for name in secret_names():
        active = re.search(rf"^\s*{name}\s*=", text, flags=re.MULTILINE)
        assert active is None, f".env.example must leave secret {name} commented out"


def test_compose_secrets_come_from_the_environment() -> None:
    secrets = secret_names()
    assert secrets, "Settings.secrets() lists no secrets"
    for name, service in services().items():
        env = service_environment(service)
        for secret in secrets:
            if secret not in env:
                continue
            value = env[secret].strip()
            # ${VAR} or ${VAR:?message}; not ${VAR:-default}, whose default would be a literal secret.
            assert re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?\?[^}]*)?\}", value), (
                f"service {name!r} sets {secret} to a literal; use ${{{secret}:?set {secret}}}"
            )
        if env.get("SOMO_ENVIRONMENT", "development") != "development":
            absent = [secret for secret in secrets if secret not in env]
            assert not absent, f"service {name!r} runs as {env['SOMO_ENVIRONMENT']} but does not pass {absent}"
