from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
GAOKAO = REPO.parent / "shared" / "data" / "gaokao_bench"


def pytest_collection_modifyitems(config, items):
    # gpu-marked tests need CUDA: skipped, and said so, on machines without it (this one, CI).
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (gpu marker)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # Built models go to a per-session cache, never the user's.
    monkeypatch.setenv("ABLATE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def postgres():
    """A throwaway PostgreSQL server on 127.0.0.1. CI must have one (.ci/run installs it)."""
    import os

    from tests.helpers import PostgresServer, postgres_bindir

    if postgres_bindir() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must test PostgreSQL: .ci/run installs it (apt-get install postgresql)")
        pytest.skip("PostgreSQL server programs not installed (apt-get install postgresql)")
    server = PostgresServer().start()
    yield server
    server.stop()
