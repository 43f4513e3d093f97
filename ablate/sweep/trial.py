"""One trial in its own process: ``python -m ablate.sweep.trial`` with a JSON spec on stdin.

The launcher starts one such process per trial, so each trial's memory (GPU included) is
returned when it exits. The process takes the next queued trial (or asks the sampler for
one), composes its ``ablate train`` config with Hydra, trains it as a child MLflow run of the
study's run, reports periodic eval values so the pruner can stop it, and tells Optuna the
objective(s). A trial that raises fails alone: state FAIL, error in its user attributes and
on its MLflow run.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from ablate import launch
from ablate.config import compose, compose_with_choices
from ablate.names import (
    ATTR_DUPLICATE_OF,
    ATTR_ERROR,
    ATTR_METRICS,
    ATTR_MLFLOW_URL,
    ATTR_OUTPUT_DIR,
    ATTR_RUN_ID,
    ATTR_WORKER,
    RANK_ERRORS,
    ROLE_TRIAL,
    TAG_OPTUNA_STUDY,
    TAG_PRUNED,
    TAG_ROLE,
    TAG_STUDY,
    TAG_TRIAL_NUMBER,
    TRIAL_OUTCOME,
)
from ablate.sweep.serve import SERVER_OVERRIDES
from ablate.sweep.storage import (
    DONE,
    LIVE,
    RetryAndMarkRun,
    get_storage,
    open_study,
    retry_failed,
    retrying,
    suggest,
    worker_ident,
)
from ablate.sweep.study import StudyConfig, cell_key, cell_of, short_name, trial_overrides

if TYPE_CHECKING:
    from ablate.train import RunHooks

RANK_SPEC = "ABLATE_TRIAL_SPEC"  # a multi-process trial's spec, in its ranks' environment (not in files or
# command lines: storage URLs may hold passwords)

log = logging.getLogger(__name__)


class PrunedTrial(optuna.TrialPruned):
    """Optuna's pruned signal that also ends the trial's MLflow run as KILLED, tagged ``pruned``."""

    mlflow_status = "KILLED"
    mlflow_tag = TAG_PRUNED


class RankLost(RuntimeError):
    """A rank of a multi-process trial died or was stopped: the trial fails and its cell is queued
    again, as a trial whose worker died is."""


def record_rank_error(output_dir: Path, err: BaseException) -> None:
    """Leave this rank's error for the worker, and whether a lost peer caused it."""
    path = output_dir / RANK_ERRORS / f"{launch.rank()}.json"
    path.parent.mkdir(parents=True, exist_ok=True)  # a trial can fail before its run directory exists
    error = f"{type(err).__name__}: {err}"[:2000]
    path.write_text(json.dumps({"error": error, "lost": launch.peer_lost(err)}))


def rank_errors(output_dir: Path) -> dict[int, dict[str, Any]]:
    """The errors the ranks of a trial left (``record_rank_error``), by rank in order."""
    paths = (output_dir / RANK_ERRORS).glob("*.json")
    return dict(sorted((int(path.stem), json.loads(path.read_text())) for path in paths))


def rank_failure(code: int, processes: int, errors: dict[int, dict[str, Any]]) -> RuntimeError:
    """What ended a multi-process trial that did not complete. An error a rank raised itself, not
    because its peer was gone, fails the trial as in one process (the lowest such rank's: which rank
    reaches a shared error first is a race); a rank that died or was only stopped is ``RankLost``."""
    reason = f"a rank of this {processes}-process trial failed (launcher exit code {code})"
    reason += "".join(f"; rank {r}: {e['error']}" for r, e in errors.items())
    own = [f"rank {r}: {e['error']}" for r, e in errors.items() if not e["lost"]]
    return RuntimeError(own[0]) if own else RankLost(reason)


class DuplicateCell(RuntimeError):
    """Another trial already holds this grid cell (a race between machines enqueueing or asking)."""


def run_name(number: int, params: dict[str, Any]) -> str:
    """``trial_0003_reward=rlev_seed=0``: the run directory, and the run's name in the MLflow UI."""
    label = "_".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
    return re.sub(r"[^\w.=,+-]", "-", f"trial_{number:04d}_{label}")[:200]


def duplicate_of(study: optuna.Study, trial: optuna.Trial, params: dict[str, Any]) -> int | None:
    """The trial that owns this cell if it is not this one: done, or live with a lower number."""
    key = cell_key(params)
    for other in study.get_trials(deepcopy=False):
        if other.number == trial.number:
            continue
        if cell_key(cell_of(other)) != key:
            continue
        if other.state in DONE or (other.state in LIVE and other.number < trial.number):
            return other.number
    return None


class Objective:
    """Optuna's objective for one trial of the study in ``spec``."""

    def __init__(self, spec: dict[str, Any], study_cfg: DictConfig):
        self.spec, self.cfg = spec, study_cfg
        self.lost: set[int] = set()  # trials that failed because a rank died: their cells are queued again

    def params(self, trial: optuna.Trial) -> dict[str, Any]:
        if self.cfg.grid:
            return {k: trial.suggest_categorical(k, list(v)) for k, v in self.cfg.grid.items()}
        return {
            k: suggest(trial, k, instantiate(node, _convert_="all")) for k, node in self.cfg.space.items()
        }

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        # Every storage call retries a lost connection: a database restart must not fail the trial.
        retrying(lambda: trial.set_user_attr(ATTR_WORKER, worker_ident()))
        params = retrying(lambda: self.params(trial))
        if self.cfg.grid:
            owner = retrying(lambda: duplicate_of(trial.study, trial, params))
            if owner is not None:
                retrying(lambda: trial.set_user_attr(ATTR_DUPLICATE_OF, owner))
                raise DuplicateCell(f"cell {params} is already held by trial {owner}")
        try:
            summary = self.train(trial, params)
        except optuna.TrialPruned:
            raise
        except Exception as err:
            message = f"{type(err).__name__}: {err}"[:2000]
            retrying(lambda: trial.set_user_attr(ATTR_ERROR, message))
            if isinstance(err, RankLost):
                self.lost.add(trial.number)
            raise
        finite = {k: v for k, v in summary.items() if math.isfinite(v)}
        retrying(lambda: trial.set_user_attr(ATTR_METRICS, finite))
        for key, value in finite.items():  # one attribute each, so the dashboard lists them
            retrying(lambda key=key, value=value: trial.set_user_attr(key, value))
        values = tuple(summary[o.metric] for o in self.cfg.objectives)
        return values[0] if len(values) == 1 else values

    def train(self, trial: optuna.Trial, params: dict[str, Any]) -> dict[str, float]:
        """Compose the trial's ablate train config and run it as a child of the study's MLflow run."""
        from ablate.train import run

        output_dir = f"{self.spec['dir']}/{run_name(trial.number, params)}"
        retrying(lambda: trial.set_user_attr(ATTR_OUTPUT_DIR, output_dir))
        served = self.spec.get(SERVER_OVERRIDES, [])  # this worker's vLLM server (rollout.managed=true)
        # output_dir quoted: run names hold '='
        overrides = [*trial_overrides(self.cfg, params), *served, f"output_dir='{output_dir}'"]
        if self.cfg.sweep.devices_per_trial > 1:
            return self.train_ranks(trial, params, overrides)
        cfg, choices = compose_with_choices(overrides)
        return run(cfg, self.hooks(trial, params, choices))

    def train_ranks(
        self, trial: optuna.Trial, params: dict[str, Any], overrides: list[str]
    ) -> dict[str, float]:
        """The trial as its ranks (``python -m ablate.sweep.ranks``): rank 0's final eval metrics, or
        what ended it raised here."""
        import torch

        from ablate.tracking import fail_left_running

        cfg = compose(overrides)
        cuda = torch.cuda.is_available()
        launch.build_model(cfg)
        output_dir = Path(cfg.output_dir).resolve()
        outcome_path = output_dir / TRIAL_OUTCOME
        outcome_path.unlink(missing_ok=True)
        for stale in (output_dir / RANK_ERRORS).glob("*.json"):
            stale.unlink()
        spec = {"spec": self.spec, "study": OmegaConf.to_container(self.cfg), "trial_id": trial._trial_id,
                "params": params, "overrides": overrides}  # fmt: skip
        env = launch.rank_env(cuda) | {RANK_SPEC: json.dumps(spec)}
        ranks = [*launch.launcher(cfg.launch, cuda), "-m", "ablate.sweep.ranks"]
        code = launch.run_ranks(ranks, env)
        outcome = json.loads(outcome_path.read_text()) if outcome_path.exists() else {}
        if code == 0 and "summary" in outcome:
            return outcome["summary"]
        if "pruned" in outcome:
            raise PrunedTrial(outcome["pruned"])
        failure = rank_failure(code, cfg.launch.processes, rank_errors(output_dir))
        fail_left_running(instantiate(cfg.tracking), str(output_dir), str(failure))  # rank 0 killed: its run
        raise failure

    def hooks(self, trial: optuna.Trial | None, params: dict[str, Any], choices: dict[str, str]) -> RunHooks:
        """What the trial adds to its run. ``trial`` is None on a multi-process trial's ranks but 0:
        rank 0 alone talks to Optuna."""
        from ablate.train import RunHooks

        name = self.cfg.sweep.name
        tags = {TAG_STUDY: name, TAG_OPTUNA_STUDY: name, TAG_ROLE: ROLE_TRIAL}
        if trial is not None:
            tags[TAG_TRIAL_NUMBER] = trial.number
        return RunHooks(
            choices=choices,
            run_name=short_name(params),
            parent_run_id=self.spec["parent_run_id"],
            tags=tags,
            on_start=None if trial is None else lambda run_id: self.started(trial, run_id),
            on_eval=self.reporter(trial) if len(self.cfg.objectives) == 1 else None,
        )

    def started(self, trial: optuna.Trial, run_id: str) -> None:
        """The trial's MLflow run in its user attributes and in its note on the dashboard."""
        from optuna_dashboard import save_note

        from ablate.tracking import run_url

        uri = self.spec["tracking_uri"]
        url = run_url(uri, self.spec["experiment_id"], run_id)
        retrying(lambda: trial.set_user_attr(ATTR_RUN_ID, run_id))
        retrying(lambda: trial.set_user_attr(ATTR_MLFLOW_URL, url))
        retrying(lambda: save_note(trial, f"MLflow run [{short_name(trial.params)}]({url})"))

    def reporter(self, trial: optuna.Trial | None):
        metric = self.cfg.objectives[0].metric

        def on_eval(step: int, summary: dict[str, float]) -> None:
            verdict = None
            if trial is not None and math.isfinite(summary[metric]):
                retrying(lambda: trial.report(summary[metric], step))
                if retrying(trial.should_prune):
                    verdict = f"pruned at step {step} ({metric}={summary[metric]:.3f})"
            verdict = launch.merge(verdict)[0]  # rank 0 decides for every rank of the trial
            if verdict:
                raise PrunedTrial(verdict)

        return on_eval


def work_left(study: optuna.Study, study_cfg: DictConfig) -> bool:
    """A queued grid cell, or a search trial not yet asked for."""
    trials = study.get_trials(deepcopy=False)
    if any(t.state == TrialState.WAITING for t in trials):
        return True
    return not study_cfg.grid and sum(t.state in (*DONE, *LIVE) for t in trials) < study_cfg.n_trials


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    spec = json.loads(sys.stdin.read())
    study_cfg = OmegaConf.merge(OmegaConf.structured(StudyConfig), spec["study"])
    on_stale = RetryAndMarkRun(study_cfg.sweep.max_retry, spec["tracking_uri"])
    storage = get_storage(spec["storage"], study_cfg.sweep.heartbeat_s, study_cfg.sweep.grace_s, on_stale)
    study, _ = open_study(study_cfg, storage)
    objective = Objective(spec, study_cfg)
    for _ in range(study_cfg.sweep.trials_per_worker):
        if not retrying(lambda: work_left(study, study_cfg)):
            print("no trial left to run; nothing to do")
            return
        study.optimize(objective, n_trials=1, catch=(Exception,))
        mine = worker_ident()
        last = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get(ATTR_WORKER) == mine]
        if last:
            print(f"trial {last[-1].number}: {last[-1].state.name}", flush=True)
            if last[-1].number in objective.lost:  # not read from its error: a retry inherits that
                retrying(lambda t=last[-1]: retry_failed(study, t, study_cfg.sweep.max_retry))


if __name__ == "__main__":
    main()
