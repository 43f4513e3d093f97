"""A rank of a sweep trial of ``sweep.devices_per_trial`` processes (``python -m ablate.sweep.ranks``).

The worker process keeps the Optuna trial (its heartbeat and final state) and starts the ranks
under ``accelerate launch`` (``Objective.train_ranks``). Rank 0 alone talks to Optuna, through the
storage: it records the trial's MLflow run, reports the periodic values and decides pruning for
every rank. It leaves the outcome in the run directory (``TRIAL_OUTCOME``) for the worker to
tell Optuna; a rank that raises leaves its error there too (``RANK_ERRORS``). A rank's own error
fails the trial, as in one process. A rank that dies takes the others with it (the launcher stops
them): the trial fails, its MLflow run ends FAILED, and its cell is queued again, as a trial whose
worker died is.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import optuna
from omegaconf import OmegaConf

from ablate import launch
from ablate.config import compose_with_choices
from ablate.names import TRIAL_OUTCOME
from ablate.sweep.trial import RANK_SPEC, Objective, record_rank_error


def main() -> None:
    """One rank of a trial: ``train.run`` with the trial's hooks (rank 0 with the Optuna trial)."""
    from ablate.sweep.storage import get_storage, open_study
    from ablate.sweep.study import StudyConfig
    from ablate.train import run

    payload = json.loads(os.environ[RANK_SPEC])
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
        record_rank_error(Path(cfg.output_dir), err)  # every rank: the first to fail may not be rank 0
        raise
    if launch.is_main():
        path.write_text(json.dumps(outcome))


if __name__ == "__main__":
    main()
