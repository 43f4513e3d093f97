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


@pytest.mark.slow
def test_analysis_notebook_runs_from_its_own_folder_with_the_documented_command(tmp_path):
    """``jupyter nbconvert --execute`` in notebooks/ (where a relative ``sqlite:///mlflow.db`` would be a
    new, empty store) on a real study: the notebook finds the study and shows its table."""
    import json
    import os
    import shutil
    import subprocess
    import sys

    from tests.helpers import sweep, write_study

    study_file = write_study(tmp_path, name="nb", grid={"reward": ["correctness", "rlev"], "seed": [0, 1]})
    assert sweep(tmp_path, study_file).returncode == 0
    env = {**os.environ, "ABLATE_STUDY": "nb", "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    jupyter = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute"]
    done = subprocess.run(
        [*jupyter, "analysis.ipynb", "--output-dir", str(tmp_path / "out")],
        cwd=REPO / "notebooks", env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert not (REPO / "notebooks" / "mlflow.db").exists()
    nb = json.loads((tmp_path / "out" / "analysis.ipynb").read_text())
    text = "".join(
        "".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", ""))
        for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"]
    )  # fmt: skip
    assert "rlev" in text and "correctness" in text  # the study's variants in its table
    assert list((REPO / "reports" / "nb").glob("*.png"))  # its figures, beside the repo, not in notebooks/
    shutil.rmtree(REPO / "reports" / "nb")
