"""The notebooks run top to bottom on a real run directory."""

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import REPO
from tests.test_metrics import FIVE

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    assert all(
        not c.get("outputs") and not c.get("execution_count") for c in nb.cells if c.cell_type == "code"
    )


def test_run_metrics_notebook_executes(tmp_path):
    from ablate.evaluate import write_predictions

    write_predictions(FIVE, tmp_path / "predictions.jsonl")
    nb = nbformat.read(REPO / "notebooks/run_metrics.ipynb", as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    params.source = f"run_dir = {str(tmp_path)!r}"
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}
    ).execute()
    shown = [o for o in nb.cells[2].outputs if "data" in o]  # import-time warnings may come first
    summary_out = shown[0]["data"]["text/plain"]
    assert "h_acc" in summary_out and "82.5" in summary_out
    assert any("image/png" in o.get("data", {}) for o in nb.cells[3].outputs)
