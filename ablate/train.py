"""``ablate train``: one RL run of a reward variant on TRL, evaluated and tracked in MLflow.

Everything comes from the composed Hydra config (``conf/config.yaml``): the data loader, the
reward variant, the policy and the algorithm are each instantiated from their group's
``_target_``, so a new variant is one .py and one .yaml.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import pandas as pd
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig
from transformers import TrainerCallback

from ablate import launch
from ablate.algos import removes_question_scale
from ablate.config import TRAIN_GROUPS, check_targets
from ablate.console import Console, quiet_library_warnings
from ablate.diagnostics.stopping import stop_probabilities, stops_table
from ablate.diagnostics.trainer import value_buckets, with_eos_diagnostics
from ablate.diagnostics.trajectories import eos_figure
from ablate.evaluate import (
    IN_MEMORY_COLUMNS,
    eval_metrics,
    evaluate_policy,
    format_metrics,
    write_predictions,
)
from ablate.generation import Generate
from ablate.models import load_model, peft_config
from ablate.names import (
    BUCKETS,
    CONFIG_FILE,
    GROUPS,
    LENGTH_BY_VALUE,
    METRICS_FILE,
    PREDICTIONS,
    PREDICTIONS_START,
    SAMPLES,
    STOPS_FILE,
    TAG_COMMIT,
    TAG_DEVICE,
    TAG_EOS_BUCKETS,
    TAG_OUTPUT_DIR,
    TAG_SEED,
    TAG_VALUE_SCALE,
    TRAIN_LOG,
)
from ablate.tracking import (
    StepMetrics,
    TrackedRun,
    config_yaml,
    ensure_experiment,
    git_commit,
    samples_jsonl,
    serve_hint,
)

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent


def to_dataset(df: pd.DataFrame) -> datasets.Dataset:
    # Every column the loader kept reaches the reward functions (reward.column may name any of them).
    frame = df[[c for c in df.columns if df[c].notna().any()]].reset_index(drop=True)
    frame.attrs = {}  # the loader's skip report is not a dataset column
    return datasets.Dataset.from_pandas(frame, preserve_index=False)


def check_settings(cfg: DictConfig) -> None:
    """The run's own settings that no schema type can check, before anything loads."""
    if cfg.batch_size % cfg.num_generations:
        raise ValueError(
            f"batch_size={cfg.batch_size} must be a multiple of num_generations={cfg.num_generations}"
        )
    if cfg.batch_size % cfg.launch.processes:
        raise ValueError(
            f"batch_size={cfg.batch_size} (the global batch) must be a multiple of "
            f"launch.processes={cfg.launch.processes}"
        )
    share = cfg.batch_size // cfg.launch.processes
    if cfg.micro_batch_size is not None and (cfg.micro_batch_size < 1 or share % cfg.micro_batch_size):
        raise ValueError(
            f"micro_batch_size={cfg.micro_batch_size} must divide each process's share of the batch, "
            f"batch_size / launch.processes = {share}"
        )
    if cfg.epochs is not None and cfg.epochs <= 0:
        raise ValueError(f"epochs={cfg.epochs}: must be positive (or null to train for `steps`)")
    for key in ("steps", "batch_size", "num_generations", "max_completion_length", "eval_batch_size"):
        if cfg[key] < 1:
            raise ValueError(f"{key}={cfg[key]}: must be at least 1")


def planned_steps(cfg: DictConfig, train_questions: int | None) -> int:
    """``steps``, or with ``epochs`` set the steps that pass over the training questions that many times."""
    if cfg.epochs is None or train_questions is None:
        return cfg.steps
    prompts_per_step = cfg.batch_size // cfg.num_generations
    return max(1, math.ceil(cfg.epochs * train_questions / prompts_per_step))


def training_args(cfg: DictConfig, output_dir: Path, train_questions: int | None = None) -> Any:
    """TRL's config for the algorithm: its defaults from ``algo.args``, the run's keys from the top level.

    ``batch_size`` is the completions of one optimisation step over all processes; each process runs
    ``micro_batch_size`` of them at a time (default: its whole share) and accumulates the gradients.
    """
    check_settings(cfg)
    make_args = instantiate(cfg.algo.args)
    share = cfg.batch_size // cfg.launch.processes  # run() checks the ranks are that many
    micro = cfg.micro_batch_size or share
    return make_args(
        output_dir=str(output_dir / "trainer"),
        max_steps=planned_steps(cfg, train_questions),
        learning_rate=cfg.lr,
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=share // micro,
        num_generations=cfg.num_generations,
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
        seed=cfg.seed,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
        **instantiate(cfg.rollout).trl_args(),
    )


def choices(cfg: DictConfig, given: dict[str, str] | None = None) -> dict[str, str]:
    """Which option of each config group this run uses (``given``, Hydra's record, else the ``_target_``)."""
    picked = given or (dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else {})
    out = {}
    for group in GROUPS:
        node = cfg[group]
        target = node.get("_target_") or node.get("trainer", {}).get("_target_", "")
        out[group] = picked.get(group) or target.rsplit(".", 1)[-1]
    return out


@dataclass
class RunHooks:
    """What a caller such as ``ablate sweep`` adds to a run; every field is optional."""

    choices: dict[str, str] = field(default_factory=dict)  # Hydra group choices of a config composed by code
    run_name: str | None = None  # the MLflow run's name (default: the run directory's name)
    parent_run_id: str | None = None  # nest the MLflow run under this one (the study's run)
    tags: dict[str, Any] = field(default_factory=dict)  # extra MLflow tags (study name, trial number)
    on_start: Callable[[str], None] | None = None  # called with the MLflow run id once the run exists
    # called after each periodic evaluation (not the final one) with the step and eval metrics;
    # it may raise (a pruned trial) to stop training, and the run ends as the exception says
    on_eval: Callable[[int, dict[str, float]], None] | None = None


class Evaluator(TrainerCallback):
    """Greedy evaluation on the test questions: every ``eval_every`` steps and at the end."""

    def __init__(
        self,
        cfg: DictConfig,
        tokenizer: Any,
        questions: pd.DataFrame,
        verifier: Any,
        run: TrackedRun,
        on_eval: Callable[[int, dict[str, float]], None] | None = None,
        generate: Generate | None = None,
    ):
        """``generate``: what answers the questions (a rollout's engine; None: the policy's ``generate``)."""
        self.cfg, self.tokenizer, self.verifier, self.run = cfg, tokenizer, verifier, run
        self.questions, self.on_eval, self.generate = questions, on_eval, generate
        self.stopped: Exception | None = None  # what on_eval raised, re-raised once training has stopped
        self.start_stops: pd.DataFrame | None = None  # pi(stop) per answer line before training

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        """The starting policy, measured as the trained one will be (``diagnostics.start``, ``stops``)."""
        if self.cfg.diagnostics.start and state.global_step == 0:
            predictions, _, _ = self.evaluate(model, 0)
            if launch.is_main():
                write_predictions(predictions, Path(self.cfg.output_dir) / PREDICTIONS_START)
                self.run.log_artifact(Path(self.cfg.output_dir) / PREDICTIONS_START)
        if self.cfg.diagnostics.stops:
            self.start_stops = self.stops(model)

    def stops(self, model: Any) -> pd.DataFrame:
        was_training = model.training
        model.eval()
        mine = launch.shard(self.questions)
        part = stop_probabilities(model, self.tokenizer, mine, self.cfg.eval_batch_size)
        table = launch.gathered(part, self.questions["id"])
        model.train(was_training)
        return table

    def write_stops(self, model: Any) -> Path:
        """``stops.csv``: each test question's pi(stop) per answer line before and after training
        (every rank measures its share; rank 0 writes)."""
        path = Path(self.cfg.output_dir) / STOPS_FILE
        end = self.stops(model)
        if launch.is_main():
            stops_table(self.questions, self.start_stops, end).to_csv(path, index=False)
        return path

    def evaluate(self, model: Any, step: int) -> tuple[pd.DataFrame, dict[str, float], pd.DataFrame]:
        """Predictions, their summary metrics and length by value bucket, logged at ``step``."""
        predictions, summary, buckets = evaluate_policy(
            model, self.tokenizer, self.questions, self.verifier, self.cfg.max_completion_length,
            self.cfg.eval_batch_size, self.generate,
        )  # fmt: skip
        self.run.log_metrics(eval_metrics(summary, buckets), step=step)
        return predictions, summary, buckets

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        every = self.cfg.eval_every
        if every and state.global_step % every == 0 and state.global_step < state.max_steps:
            _, summary, _ = self.evaluate(model, state.global_step)
            if self.on_eval is None:
                return
            try:
                self.on_eval(state.global_step, summary)
            except Exception as err:  # a pruned trial: let the trainer log this step and stop, then raise
                self.stopped = err
                control.should_training_stop = True


def warn_if_scale_removed(reward: Any, trainer: Any) -> dict[str, str]:
    """A per-question reward scale under a per-group std normalisation compares correctness with itself:
    warn now, and return the run's tag that says so."""
    if not (reward.per_question and removes_question_scale(trainer)):
        return {}
    message = (
        f"reward={reward.__name__} under {type(trainer).__name__} with scale_rewards=group: each group's "
        "rewards are divided by their own std, which removes the per-question scale exactly, so this run "
        "trains as correctness does (use algo=rloo or reinforce_pp, or algo.args.scale_rewards=batch)"
    )
    log.warning(message)
    return {TAG_VALUE_SCALE: "removed by scale_rewards=group"}


def run_tags(cfg: DictConfig, picked: dict[str, str], hooks: RunHooks, output_dir: Path) -> dict[str, Any]:
    """The group choices (data, reward, model, algo), seed, commit and run directory, and the caller's."""
    tags: dict[str, Any] = dict(picked)
    tags |= {TAG_SEED: cfg.seed, TAG_COMMIT: git_commit(REPO), TAG_OUTPUT_DIR: str(output_dir.resolve())}
    return tags | hooks.tags


def load_splits(cfg: DictConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The data's train and test questions; both must be non-empty."""
    table = instantiate(cfg.data).load()
    train, test = table[table["split"] == "train"], table[table["split"] == "test"]
    if train.empty or test.empty:
        raise ValueError(f"data: need questions in both splits, got {len(train)} train / {len(test)} test")
    log.info(
        "data: %d train / %d test questions, mean value %.4f", len(train), len(test), train["value"].mean()
    )
    return train, test


def build_trainer(
    cfg: DictConfig, reward: Any, model: Any, tokenizer: Any, model_cfg: Any, train: pd.DataFrame
) -> tuple[Any, dict[str, str]]:
    """The algorithm's TRL trainer on the train questions, with the EOS diagnostics when enabled, and the
    run tags it calls for (the EOS buckets' sizes, a removed value scale)."""
    make_trainer = instantiate(cfg.algo.trainer)
    trainer_cls, options = make_trainer.func, dict(make_trainer.keywords)
    trainer_cls = instantiate(cfg.rollout).trainer_class(trainer_cls)
    tags = {}
    if cfg.diagnostics.eos:
        trainer_cls = with_eos_diagnostics(trainer_cls)
        options["value_buckets"] = value_buckets(train)
        sizes = pd.Series(options["value_buckets"]).value_counts()
        tags[TAG_EOS_BUCKETS] = " / ".join(str(sizes.get(b, 0)) for b in range(len(BUCKETS)))
    trainer = trainer_cls(
        model=model,
        reward_funcs=[reward],
        args=training_args(cfg, Path(cfg.output_dir), len(train)),
        train_dataset=to_dataset(train),
        processing_class=tokenizer,
        peft_config=peft_config(model_cfg),
        **options,
    )
    return trainer, tags | {TAG_DEVICE: device_of(trainer)} | warn_if_scale_removed(reward, trainer)


def device_of(trainer: Any) -> str:
    """Where the trainer runs, in the words of the ``ablate.device`` tag."""
    text = str(trainer.accelerator.device)
    if "CUDA_VISIBLE_DEVICES" in os.environ and text.startswith("cuda"):
        text += f" (CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']})"
    processes = trainer.accelerator.num_processes
    return text + (f", {processes} processes" if processes > 1 else "")


def fit(trainer: Any, evaluator: Evaluator, tracked: TrackedRun, console_every: int) -> None:
    """Train, sending TRL's per-step metrics to MLflow; a run that raises keeps every step it logged."""
    step_metrics = StepMetrics(tracked, tracked.cfg.flush_every_s)
    main = launch.is_main()  # rank 0 of a multi-process run; TRL's logged metrics are gathered over ranks
    if main:
        trainer.add_callback(step_metrics)
    Console.replace_printer(trainer, Console(console_every) if main else None)
    trainer.add_callback(evaluator)
    try:
        trainer.train()
    finally:
        step_metrics.flush()
    if evaluator.stopped is not None:  # the caller stopped training (a pruned trial)
        raise evaluator.stopped


def write_outputs(
    cfg: DictConfig, trainer: Any, tokenizer: Any, evaluator: Evaluator, tracked: TrackedRun
) -> tuple[dict[str, float], pd.DataFrame]:
    """The final evaluation and every file of the run, each also logged to MLflow (by rank 0 only: the
    other ranks of a multi-process run take their share of the evaluations and stop there)."""
    output_dir = Path(cfg.output_dir)
    predictions, summary, buckets = evaluator.evaluate(trainer.model, trainer.state.global_step)
    stops = evaluator.write_stops(trainer.model) if cfg.diagnostics.stops else None
    if not launch.is_main():
        return summary, buckets
    history = pd.DataFrame([h for h in trainer.state.log_history if "loss" in h])
    history.to_csv(output_dir / TRAIN_LOG, index=False)
    write_predictions(predictions, output_dir / PREDICTIONS)
    (output_dir / METRICS_FILE).write_text(json.dumps(summary, indent=2))
    if cfg.save_model:
        trainer.save_model(str(output_dir / "model"))
    for name in (PREDICTIONS, METRICS_FILE, TRAIN_LOG):
        tracked.log_artifact(output_dir / name)
    if cfg.diagnostics.eos:
        baseline = cfg.diagnostics.baseline_run_id
        for path in eos_figure(
            trainer.model, tokenizer, predictions, output_dir, cfg.diagnostics.eos_top_k, cfg.eval_batch_size,
            (baseline, cfg.tracking.uri) if baseline else None,
        ):  # fmt: skip
            tracked.log_artifact(path)
    if stops is not None:
        tracked.log_artifact(stops)
    sample = predictions.drop(columns=list(IN_MEMORY_COLUMNS), errors="ignore").head(
        tracked.cfg.sample_completions
    )
    tracked.log_text(samples_jsonl(sample.to_dict("records")), SAMPLES)
    tracked.log_text(buckets.to_csv(index=False), LENGTH_BY_VALUE)
    return summary, buckets


def run(cfg: DictConfig, hooks: RunHooks | None = None) -> dict[str, float]:
    """Train, evaluate, write and log everything; return the final eval metrics.

    Everything that can be wrong with the config, the data or the model fails before the run
    directory is written or the MLflow run exists, so a run that never trained leaves nothing behind.
    """
    hooks = hooks or RunHooks()
    quiet_library_warnings()
    if cfg.launch.processes != launch.world_size():
        raise ValueError(
            f"launch.processes={cfg.launch.processes}, but this run has {launch.world_size()} process(es): "
            "start it with `ablate train`, which launches the ranks (an `ablate sweep` trial is one process)"
        )
    if launch.world_size() > 1:
        launch.fail_on_sigterm()
    for group in TRAIN_GROUPS:
        check_targets(cfg[group], group)
    check_settings(cfg)
    rollout = instantiate(cfg.rollout)  # rollout=vllm without vLLM installed: said now, before anything loads
    reward = instantiate(cfg.reward)  # its settings (reward.alpha), before anything is opened or loaded
    tracking = instantiate(cfg.tracking)
    main = launch.is_main()  # rank 0 of a multi-process run writes the run directory and talks to MLflow
    if main:
        ensure_experiment(tracking)  # an unreachable or refusing server, before the data and model load
    train, test = load_splits(cfg)
    reward = reward.fit(train)
    verifier = instantiate(cfg.verifier)  # a judge's server is checked here, before the model loads
    model_cfg = instantiate(cfg.model, _convert_="all")  # plain lists and dicts for peft
    model, tokenizer = load_model(model_cfg)
    trainer, trainer_tags = build_trainer(cfg, reward, model, tokenizer, model_cfg, train)
    output_dir = Path(cfg.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    text = config_yaml(cfg)
    if main:
        (output_dir / CONFIG_FILE).write_text(text)  # on disk even if the tracking store is down
    picked = choices(cfg, hooks.choices)
    tags = run_tags(cfg, picked, hooks, output_dir) | {"reward": reward.__name__} | trainer_tags
    name = hooks.run_name or output_dir.name
    with TrackedRun(tracking, name, tags, hooks.parent_run_id, active=main) as tracked:
        if hooks.on_start is not None:
            hooks.on_start(tracked.run_id)
        tracked.log_config(cfg, text)
        tracked.log_params(picked)  # the group choices as params too: the compare view groups by them
        questions = test if cfg.eval_limit is None else test.iloc[: cfg.eval_limit]
        generate = rollout.generator(trainer)
        evaluator = Evaluator(cfg, tokenizer, questions, verifier, tracked, hooks.on_eval, generate)
        fit(trainer, evaluator, tracked, cfg.console_every)
        summary, buckets = write_outputs(cfg, trainer, tokenizer, evaluator, tracked)
    if not main:
        return summary
    print(format_metrics(summary, buckets))
    print(f"run directory: {output_dir}   MLflow run: {tracked.run_id} ({tracked.cfg.uri})")
    print(f"MLflow UI: {tracked.url}{serve_hint(tracking.uri)}")
    return summary
