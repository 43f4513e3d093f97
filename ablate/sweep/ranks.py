"""One sweep trial as ``sweep.devices_per_trial`` ranks under ``accelerate launch``.

The worker process keeps the Optuna trial (its heartbeat and final state) and starts the ranks
(``python -m ablate.sweep.ranks``). Rank 0 alone talks to Optuna, through the storage: it records
the trial's MLflow run, reports the periodic values and decides pruning for every rank. It leaves
the outcome in the run directory (``TRIAL_OUTCOME``) for the worker to tell Optuna. A rank that
dies takes the others with it (the launcher stops them): the trial fails, its MLflow run ends
FAILED, and its cell is queued again, as a trial whose worker died is.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import optuna
from omegaconf import OmegaConf

from ablate import launch
from ablate.config import compose, compose_with_choices
from ablate.names import TRIAL_OUTCOME
from ablate.sweep.trial import Objective, PrunedTrial, RankLost

SPEC = "ABLATE_TRIAL_SPEC"  # the ranks' spec, in their environment: storage URLs may hold passwords


def train_ranks(
    objective: Objective, trial: optuna.Trial, params: dict[str, Any], overrides: list[str]
) -> dict[str, float]:
    """Run the trial as its ranks and return rank 0's final eval metrics (or raise what ended it)."""
    import torch
    from hydra.utils import instantiate

    from ablate.tracking import fail_left_running

    cfg = compose(overrides)
    cuda = torch.cuda.is_available()
    launch.build_model(cfg)
    output_dir = Path(cfg.output_dir).resolve()
    outcome_path = output_dir / TRIAL_OUTCOME
    outcome_path.unlink(missing_ok=True)
    study = OmegaConf.to_container(objective.cfg)
    spec = {"spec": objective.spec, "study": study, "trial_id": trial._trial_id, "params": params,
            "overrides": overrides}  # fmt: skip
    env = launch.rank_env(cuda) | {SPEC: json.dumps(spec)}
    ranks = [*launch.launcher(cfg.launch, cuda), "-m", "ablate.sweep.ranks"]
    code = subprocess.run(ranks, env=env).returncode
    outcome = json.loads(outcome_path.read_text()) if outcome_path.exists() else {}
    if code == 0 and "summary" in outcome:
        return outcome["summary"]
    if "pruned" in outcome:
        raise PrunedTrial(outcome["pruned"])
    reason = f"a rank of this {cfg.launch.processes}-process trial failed (launcher exit code {code})"
    if "error" in outcome:
        reason += f"; rank 0: {outcome['error']}"
    fail_left_running(instantiate(cfg.tracking), str(output_dir), reason)  # rank 0 killed: its run
    if "error" in outcome and not outcome["lost"]:
        raise RuntimeError(outcome["error"])  # an error of the trial itself fails it, as in one process
    raise RankLost(reason)


def main() -> None:
    """One rank of a trial: ``train.run`` with the trial's hooks (rank 0 with the Optuna trial)."""
    from ablate.sweep.storage import get_storage, open_study
    from ablate.sweep.study import StudyConfig
    from ablate.train import run

    payload = json.loads(os.environ[SPEC])
    study_cfg = OmegaConf.merge(OmegaConf.structured(StudyConfig), payload["study"])
    objective = Objective(payload["spec"], study_cfg)
    trial = None
    if launch.is_main():
        study, _ = open_study(study_cfg, get_storage(payload["spec"]["storage"]))  # with its pruner
        trial = optuna.trial.Trial(study, payload["trial_id"])
    cfg, choices = compose_with_choices(payload["overrides"])
    path = Path(cfg.output_dir) / TRIAL_OUTCOME
    try:
        outcome = {"summary": run(cfg, objective.hooks(trial, payload["params"], choices))}
    except optuna.TrialPruned as err:
        outcome = {"pruned": str(err)}
    except BaseException as err:
        if launch.is_main():
            lost = isinstance(err, launch.RankStopped)  # another rank died: the launcher stopped this one
            path.write_text(json.dumps({"error": f"{type(err).__name__}: {err}"[:2000], "lost": lost}))
        raise
    if launch.is_main():
        path.write_text(json.dumps(outcome))


if __name__ == "__main__":
    main()
