import os

import pytest

from tests.helpers import PostgresServer, postgres_bindir


@pytest.fixture(params=["sqlite", "journal", "postgresql"])
def storage_url(request, tmp_path):
    """Every Optuna storage ablate supports: one test suite runs over all of them."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/sub/optuna.db"
    elif request.param == "journal":
        yield f"journal:{tmp_path}/sub/optuna.journal"
    else:
        if postgres_bindir() is None:
            if os.environ.get("CI") == "true":
                pytest.fail("CI must test PostgreSQL: .ci/run installs it (apt-get install postgresql)")
            pytest.skip("PostgreSQL server programs not installed (apt-get install postgresql)")
        server = PostgresServer().start()
        yield server.url
        server.stop()
