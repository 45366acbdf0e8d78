"""The deployment files validate: docker-compose.yml with `docker-compose config`, the Dockerfile
with hadolint (both installed from PyPI by the dev extras)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from app.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: pip install -e '.[dev]' installs it")
    return path


def test_compose_file_validates_and_is_production_shaped() -> None:
    result = subprocess.run(
        [
            _tool("docker-compose"),
            "--env-file",
            str(ROOT / ".env.example"),
            "-f",
            str(ROOT / "docker-compose.yml"),
            "config",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    assert {"postgres", "redis", "migrate", "api", "worker-training", "worker-light"} <= set(services)
    redis_command = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_command and "--maxmemory-policy noeviction" in redis_command
    assert services["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "healthcheck" in services["api"]
    # The API runs as processes with a socket each; the command must be one the CLI accepts.
    api = services["api"]["command"]
    assert api[0] == "suggestlab"
    parsed = build_parser().parse_args(api[1:])
    assert parsed.command == "serve" and parsed.processes > 1 and parsed.no_worker
    training = services["worker-training"]
    assert "--concurrency 1" in " ".join(training["command"]) and "training" in training["command"]
    devices = training["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert "light" in services["worker-light"]["command"]
    # Containers share CPU by weight, not niceness: every worker weighs less than the API (1024),
    # the representation worker least, so a round goes before it.
    shares = {name: services[name].get("cpu_shares", 1024) for name in ("api", "worker-training", "worker-background")}
    assert shares["worker-background"] < shares["worker-training"] < shares["api"]
    assert services["worker-light"]["cpu_shares"] < shares["api"]
    assert {"postgres-data", "redis-data", "suggestlab-data"} <= set(config["volumes"])


def test_compose_refuses_to_start_without_secrets() -> None:
    result = subprocess.run(
        [_tool("docker-compose"), "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin:" + str(Path(_tool("docker-compose")).parent)},
    )
    assert result.returncode != 0 or "required variable POSTGRES_PASSWORD" in result.stderr


def test_dockerfile_lints_clean() -> None:
    result = subprocess.run([_tool("hadolint"), str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
