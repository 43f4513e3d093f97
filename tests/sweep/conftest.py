import pytest


@pytest.fixture(params=["sqlite", "journal", "postgresql"])
def storage_url(request, tmp_path):
    """Every Optuna storage ablate supports: one test suite runs over all of them."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/sub/optuna.db"
    if request.param == "journal":
        return f"journal:{tmp_path}/sub/optuna.journal"
    return request.getfixturevalue("postgres").url
