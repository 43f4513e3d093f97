"""docker-compose.yml: the stack a team shares, checked as committed (no Docker engine runs here)."""

import re
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import REPO

COMPOSE = REPO / "docker-compose.yml"
SERVICES = yaml.safe_load(COMPOSE.read_text())["services"]


def test_the_stack_has_its_services():
    assert set(SERVICES) == {"postgres", "mlflow", "dashboard", "trainer"}
    postgres = SERVICES["postgres"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert any(v.startswith("pgdata:") for v in postgres["volumes"])  # a named volume
    mlflow = " ".join(SERVICES["mlflow"]["command"])
    assert "--serve-artifacts" in mlflow and "--artifacts-destination=/mlartifacts" in mlflow
    assert "--backend-store-uri=postgresql+psycopg://" in mlflow and "--app-name=basic-auth" in mlflow
    assert SERVICES["dashboard"]["command"][0].startswith("postgresql+psycopg://")
    trainer = SERVICES["trainer"]
    assert trainer["command"][0] == "sweep" and trainer["build"] == "."
    (gpu,) = trainer["deploy"]["resources"]["reservations"]["devices"]
    assert gpu["capabilities"] == ["gpu"]


def test_every_port_is_published_on_loopback_only():
    ports = [p for s in SERVICES.values() for p in s.get("ports", [])]
    assert len(ports) == 3 and all(p.startswith("127.0.0.1:") for p in ports)


def test_credentials_come_from_the_env_file():
    text = COMPOSE.read_text()
    literal = re.search(r"^\s*\w*(PASSWORD|SECRET)\w*:\s+(?!\$\{)\S", text, re.MULTILINE)
    assert literal is None  # every password or secret is a ${VARIABLE} from .env
    required = set(re.findall(r"\$\{(\w+):\?", text))
    example = dict(line.split("=", 1) for line in (REPO / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))  # fmt: skip
    assert required and required <= set(example)
    assert ".env" in (REPO / ".gitignore").read_text().split()


def test_docker_compose_accepts_the_file():
    if shutil.which("docker") is None:
        pytest.skip("no docker client here")
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("the docker client here has no compose plugin")
    done = subprocess.run(["docker", "compose", "--env-file", ".env.example", "config", "--quiet"], cwd=REPO,
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
