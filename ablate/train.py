"""``ablate train``: one RL run of a reward variant on TRL, then a greedy evaluation.

Everything comes from the composed Hydra config (``conf/config.yaml``): the data loader,
the reward variant, the policy and the algorithm are each instantiated from their group's
``_target_``, so a new variant is one .py and one .yaml.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import datasets
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ablate import metrics
from ablate.evaluate import format_metrics, predict, write_predictions
from ablate.models import load_model

log = logging.getLogger(__name__)

# Dataset columns that reward variants may read; the rest of the table stays out of the batches.
REWARD_COLUMNS = ("prompt", "answer", "value", "id", "total", "difficulty", "predicted_score", "answer_type")


def to_dataset(df: pd.DataFrame) -> datasets.Dataset:
    cols = [c for c in REWARD_COLUMNS if c in df.columns and df[c].notna().any()]
    frame = df[cols].reset_index(drop=True)
    frame.attrs = {}  # the loader's skip report is not a dataset column
    return datasets.Dataset.from_pandas(frame, preserve_index=False)


def training_args(cfg: DictConfig, output_dir: Path) -> Any:
    """TRL's config for the algorithm: its defaults from ``algo.args``, the run's keys from the top level."""
    if cfg.batch_size % cfg.num_generations:
        raise ValueError(
            f"batch_size={cfg.batch_size} must be a multiple of num_generations={cfg.num_generations}"
        )
    make_args = instantiate(cfg.algo.args)
    return make_args(
        output_dir=str(output_dir / "trainer"),
        max_steps=cfg.steps,
        learning_rate=cfg.lr,
        per_device_train_batch_size=cfg.batch_size,
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
    )


def run(cfg: DictConfig) -> dict[str, float]:
    """Train, evaluate, write ``predictions.jsonl`` and ``metrics.json``; return the metrics."""
    output_dir = Path(cfg.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))

    table = instantiate(cfg.data).load()
    train, test = table[table["split"] == "train"], table[table["split"] == "test"]
    if train.empty or test.empty:
        raise ValueError(f"data: need questions in both splits, got {len(train)} train / {len(test)} test")
    log.info(
        "data: %d train / %d test questions, mean value %.4f", len(train), len(test), train["value"].mean()
    )

    reward = instantiate(cfg.reward).fit(train)
    verifier = instantiate(cfg.verifier)
    model, tokenizer = load_model(instantiate(cfg.model))
    make_trainer = instantiate(cfg.algo.trainer)
    trainer = make_trainer(
        model=model,
        reward_funcs=[reward],
        args=training_args(cfg, output_dir),
        train_dataset=to_dataset(train),
        processing_class=tokenizer,
    )
    trainer.train()
    history = pd.DataFrame([h for h in trainer.state.log_history if "loss" in h])
    history.to_csv(output_dir / "train_log.csv", index=False)

    questions = test if cfg.eval_limit is None else test.iloc[: cfg.eval_limit]
    predictions = predict(
        trainer.model, tokenizer, questions, verifier, cfg.max_completion_length, cfg.eval_batch_size
    )
    write_predictions(predictions, output_dir / "predictions.jsonl")
    summary = metrics.summary(predictions)
    (output_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
    print(format_metrics(summary, metrics.length_by_value_bucket(predictions)))
    print(f"run directory: {output_dir}")
    return summary
