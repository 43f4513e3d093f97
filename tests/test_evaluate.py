import json
import subprocess
import sys

import pytest

from ablate.evaluate import evaluate_file, main, write_predictions
from tests.test_metrics import FIVE


def test_cli_prints_and_returns_the_metrics(tmp_path, capsys):
    path = write_predictions(FIVE, tmp_path / "predictions.jsonl")
    summary = main(["--predictions", str(path)])
    assert summary["h_acc"] == pytest.approx(82.5)
    out = capsys.readouterr().out
    assert "H-Acc 82.5" in out and "value density 2.750" in out and "length by value bucket" in out
    assert "length gap top-bottom20 +30.0" in out


def test_csv_and_json_output(tmp_path, capsys):
    FIVE.to_csv(tmp_path / "p.csv", index=False)
    assert evaluate_file(tmp_path / "p.csv")["value_density"] == pytest.approx(2.75)
    main(["--predictions", str(tmp_path / "p.csv"), "--json"])
    assert json.loads(capsys.readouterr().out)["acc"] == pytest.approx(60.0)


def test_console_script_end_to_end(tmp_path):
    path = write_predictions(FIVE, tmp_path / "predictions.jsonl")
    done = subprocess.run(
        [sys.executable, "-m", "ablate", "evaluate", "--predictions", str(path), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout)["h_acc"] == pytest.approx(82.5)


def test_bad_file_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"value": 0.1, "correct": true, "length": 3}\n{oops\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: invalid JSON"):
        evaluate_file(bad)
    with pytest.raises(FileNotFoundError, match="--predictions"):
        evaluate_file(tmp_path / "missing.jsonl")
