"""Shared pieces of the tests: composing a config, a real MLflow server on loopback."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

from ablate.config import compose

# A tiny, fast run on an easy task (answers 2..4), so a random policy already earns some reward.
FAST = [
    "steps=2",
    "batch_size=8",
    "num_generations=4",
    "max_completion_length=12",
    "eval_limit=16",
    "model.hidden_size=32",
    "model.layers=1",
    "model.heads=2",
    "model.intermediate_size=64",
    "data.num_exams=8",
    "data.test_fraction=0.25",
    "data.terms=[2,2]",
    "data.max_operand=2",
]


def compose_train(*overrides: str):
    return compose(overrides)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """``mlflow server`` on 127.0.0.1 (a SQLite store in ``root`` unless ``backend`` is given).

    ``start()`` again after ``stop()`` (or a kill) restarts it on the same port and stores.
    ``auth_password`` runs MLflow's basic-auth app with that admin password.
    """

    def __init__(self, root: Path, port: int | None = None, backend: str | None = None,
                 auth_password: str | None = None):  # fmt: skip
        self.root, self.port = root, port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.backend = backend or f"sqlite:///{root}/mlflow.db"
        self.auth_password = auth_password
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 90) -> MlflowServer:
        import os

        self.root.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
            "--backend-store-uri", self.backend,
            "--artifacts-destination", str(self.root / "artifacts"), "--workers", "1",
        ]  # fmt: skip
        env = dict(os.environ)
        if self.auth_password:
            config = self.root / "basic_auth.ini"
            config.write_text(
                f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{self.root}/auth.db\n"
                f"admin_username = admin\nadmin_password = {self.auth_password}\n"
                "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            )
            cmd += ["--app-name", "basic-auth"]
            env["MLFLOW_AUTH_CONFIG_PATH"] = str(config)
            env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = "test-only-csrf-key"  # basic-auth's CSRF protection
        self.log = open(self.root / "server.log", "a")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(self.root / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.uri + "/health", timeout=2):
                    return self
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"mlflow server on {self.uri} did not start in {timeout_s} s")

    def kill(self) -> None:
        """SIGKILL the server and every worker it started (a crash, not a shutdown)."""
        import signal

        for pid in _children(self.proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.kill()
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if getattr(self, "log", None):
            self.log.close()


class HashJudge:
    """A deterministic stand-in judge: right for about half the questions, by a hash of the prompt.

    Gives evaluation tests non-trivial Acc / H-Acc on an untrained model.
    """

    def __call__(self, prompt, completion, reference) -> bool:
        import hashlib

        return hashlib.sha256(str(prompt).encode()).digest()[0] % 2 == 0


def _children(pid: int) -> list[int]:
    """Every descendant process of ``pid`` (from /proc)."""
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        for task in Path(f"/proc/{parent}/task").glob("*/children"):
            kids = [int(k) for k in task.read_text().split()]
            found += kids
            frontier += kids
    return found


def postgres_bindir() -> Path | None:
    """Where PostgreSQL's server programs are (Debian keeps them off PATH), or None."""
    import glob
    import shutil

    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(candidates[-1]).parent if candidates else None


class PostgresServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (run as the ``postgres`` user when we are root)."""

    def __init__(self, port: int | None = None):
        import os
        import tempfile

        self.bindir = postgres_bindir()
        if self.bindir is None:
            raise FileNotFoundError("PostgreSQL server programs not found (apt-get install postgresql)")
        self.port = port or free_port()
        # Not under pytest's tmp dir: the postgres user must be able to enter it.
        self.root = Path(tempfile.mkdtemp(prefix="ablate-pg-"))
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.url = f"postgresql+psycopg://ablate:ablate@127.0.0.1:{self.port}/ablate"

    def _run(self, *cmd: str) -> None:
        import os

        env = {**os.environ, "PGPASSWORD": "ablate"}
        done = subprocess.run([*self.as_user, *cmd], capture_output=True, text=True, timeout=120, env=env)
        if done.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")

    def start(self) -> PostgresServer:
        import shutil

        if self.as_user:
            shutil.chown(self.root, "postgres", "postgres")
        data = self.root / "data"
        if not data.exists():
            pw = self.root / "pw"
            pw.write_text("ablate\n")
            if self.as_user:
                shutil.chown(pw, "postgres", "postgres")
            self._run(str(self.bindir / "initdb"), "-D", str(data), "-U", "ablate", "--auth=scram-sha-256",
                      f"--pwfile={pw}", "-E", "UTF8")  # fmt: skip
            self.pg_ctl("start")
            self._run(str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "ablate",
                      "ablate")  # fmt: skip
        else:
            self.pg_ctl("start")
        return self

    def create_database(self, name: str) -> str:
        """A second database on this server (MLflow and Optuna each keep an alembic_version table)."""
        self._run(
            str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "ablate", name
        )
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def pg_ctl(self, action: str) -> None:
        options = f"-h 127.0.0.1 -p {self.port} -k {self.root}"
        args = ["-D", str(self.root / "data"), "-l", str(self.root / "server.log"), "-w", "-t", "60"]
        if action == "start":
            args += ["-o", options]
        if action == "stop":
            args += ["-m", "fast"]
        self._run(str(self.bindir / "pg_ctl"), *args, action)

    def stop(self) -> None:
        import shutil

        if (self.root / "data" / "postmaster.pid").exists():
            self.pg_ctl("stop")
        shutil.rmtree(self.root, ignore_errors=True)


class CompletionHashJudge:
    """Right for about half the completions, by a hash of prompt and completion: runs differ."""

    def __call__(self, prompt, completion, reference) -> bool:
        import hashlib

        return hashlib.sha256(f"{prompt}|{completion}".encode()).digest()[0] % 2 == 0


def write_study(tmp_path: Path, name: str = "tiny", **fields) -> Path:
    """A study file of tiny trials (2 steps each) over rewards x seeds unless ``fields`` say otherwise."""
    grid = {"reward": ["correctness", "rlev"], "seed": [0, 1]}
    study = {"description": "a test study", "overrides": [*FAST, "steps=2"], "grid": grid} | fields
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def sweep(cwd: Path, study: Path, *args: str, wait: bool = True, **popen) -> subprocess.Popen:
    """``ablate sweep`` in ``cwd`` (its stores land there), output in a log file (``output(proc)``)."""
    quiet = ["sweep.progress=false", "sweep.poll_s=0.3"]
    cmd = [sys.executable, "-m", "ablate", "sweep", f"study={study}", *quiet, *args]
    out = open(cwd / f"sweep_{time.monotonic_ns()}.log", "w")  # noqa: SIM115 (the process keeps it)
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, text=True, **popen)
    proc.log_path = Path(out.name)
    if wait:
        proc.wait(timeout=900)
    return proc


def output(proc: subprocess.Popen) -> str:
    return proc.log_path.read_text()
