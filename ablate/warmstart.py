"""``ablate warmstart``: supervised fine-tuning (TRL's SFTTrainer) of a from-scratch policy on solutions.

RL from a randomly initialised model has almost no reward signal. The warm start teaches the
tiny model the synthetic exams' format and arithmetic with solutions written in one of three
styles, drawn per question and independent of its value:

- ``full``: one partial sum per line (``12+7=19``), the longest and easiest to get right;
- ``pairs``: two numbers added per line (``12+7+30=49``), half the steps and harder;
- ``direct``: only ``Answer: N``, the shortest and hardest.

So the RL starting policy samples answers of varying length, and longer working raises its
chance of a correct answer: the trade-off RLEV's value scale acts on. The checkpoint is cached
under ``cache_dir`` keyed by the whole config; ``model=tiny_warm`` trains it on first use.

>>> solution([12, 7, 30], "pairs")
'12+7+30=49\\nAnswer: 49'
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ablate.data.synthetic import STYLES as PER_LINE
from ablate.data.synthetic import SyntheticExams, worked_solution
from ablate.models import TinyModelConfig

log = logging.getLogger(__name__)

STYLES = tuple(PER_LINE)  # the synthetic exams' styles; a loader's own are ``data.styles``
# Warm starts shipped with the repository (tests/test_warmstart.py retrains them to the same weights).
SHIPPED = Path(__file__).resolve().parent.parent / "checkpoints"
# The shipped checks warm starts were trained with torch's AVX2 kernels: with this environment an x86 CPU
# of AVX2 or more trains them again bit for bit where its ``numerics`` fingerprint matches theirs.
SHIPPED_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2"}
written_style = SyntheticExams.written_style
NUMERICS = "numerics"  # the report's key for the trainer's ``ablate.numerics.fingerprint()``


def solution(terms: list[int], style: str) -> str:
    """The worked solution of ``sum(terms)`` in ``style`` (see the module docstring)."""
    if style not in PER_LINE:
        raise ValueError(f"solution style {style!r}: valid choices are {', '.join(STYLES)}")
    return worked_solution(terms, PER_LINE[style])


@dataclass
class WarmStartConfig:
    """A from-scratch policy after supervised fine-tuning on worked solutions (conf/model/tiny_warm.yaml)."""

    base: TinyModelConfig = field(default_factory=TinyModelConfig)  # the from-scratch architecture
    # SFT exams (own seed): a loader with warm-start solution styles (synthetic, checks)
    data: Any = field(default_factory=lambda: SyntheticExams(seed=1000))
    styles: dict[str, float] = field(
        default_factory=lambda: {"full": 0.4, "pairs": 0.3, "direct": 0.3}
    )  # share of each solution style in the SFT data
    max_steps: int = 1000  # optimiser steps of supervised fine-tuning
    batch_size: int = 64  # sequences per step
    lr: float = 2e-3  # peak learning rate (cosine decay, 3% warm-up)
    seed: int = 0  # SFT data order, style draws and dropout
    eval_questions: int = 256  # held-out SFT questions scored greedily after training
    max_new_tokens: int = 96  # generation cap of that evaluation
    cache_dir: str = ".cache/ablate/models"  # where checkpoints are kept
    lora: dict[str, Any] | None = None  # peft LoraConfig keys for the RL run on top; None: full

    def key(self) -> str:
        fields = asdict(self)
        for name in ("cache_dir", "lora", "eval_questions", "max_new_tokens"):
            fields.pop(name)
        fields["base"] = self.base.key()  # the architecture, as the tiny model's own cache keys it
        text = json.dumps(fields, sort_keys=True, default=plain)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def checkpoint(self) -> Path:
        """The cached checkpoint's directory, trained first if it is not there."""
        return warm_path(self)


def plain(value: Any) -> Any:
    """A value JSON cannot write, as it can: OmegaConf lists and dicts (a config instantiated without
    ``_convert_``) as the plain ones they hold, so the key is the same either way; others by ``str``."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    return OmegaConf.to_container(value) if isinstance(value, DictConfig | ListConfig) else str(value)


def sft_dataset(cfg: WarmStartConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Prompt/completion rows for SFT (the train split) and the held-out test split, styles drawn per row."""
    names, valid = list(cfg.styles), getattr(cfg.data, "styles", ())
    unknown = sorted(set(names) - set(valid))
    if unknown or not names:
        raise ValueError(f"model.styles: unknown style(s) {unknown}; valid choices are {', '.join(valid)}")
    weights = np.array([cfg.styles[n] for n in names], dtype=float)
    if (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"model.styles={cfg.styles}: shares must be >= 0 and not all 0")
    table = cfg.data.load()
    rng = np.random.default_rng(cfg.seed)
    styles = rng.choice(names, size=len(table), p=weights / weights.sum())
    table = table.assign(
        style=styles,
        completion=[cfg.data.styled_solution(p, s) for p, s in zip(table["prompt"], styles, strict=True)],
    )
    return table[table["split"] == "train"], table[table["split"] == "test"]


def warm_start(cfg: WarmStartConfig, out: Path) -> dict[str, float]:
    """Train the checkpoint into ``out`` and return its held-out metrics (also in ``warmstart.json``)."""
    import datasets
    import torch
    from trl import SFTConfig, SFTTrainer

    from ablate import metrics, numerics
    from ablate.evaluate import predict
    from ablate.models import load_model
    from ablate.verify import Verifier

    train, test = sft_dataset(cfg)
    model, tokenizer = load_model(cfg.base)
    args = SFTConfig(
        output_dir=str(out / "trainer"),
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.lr,
        lr_scheduler_type="cosine",
        warmup_steps=0.03,
        weight_decay=0.0,
        seed=cfg.seed,
        max_length=cfg.base.max_position_embeddings,
        logging_steps=50,
        save_strategy="no",
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        disable_tqdm=True,
    )
    pairs = train[["prompt", "completion"]].reset_index(drop=True)
    pairs.attrs = {}  # the loader's skip report is not a dataset column
    rows = datasets.Dataset.from_pandas(pairs, preserve_index=False)
    trainer = SFTTrainer(model=model, args=args, train_dataset=rows, processing_class=tokenizer)
    started = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - started
    trainer.model.generation_config.eos_token_id = tokenizer.eos_token_id
    trainer.save_model(str(out))
    tokenizer.save_pretrained(str(out))
    shutil.rmtree(out / "trainer", ignore_errors=True)
    (out / "training_args.bin").unlink(missing_ok=True)  # the SFT arguments pickled: not part of a model

    held_out = test.sample(min(cfg.eval_questions, len(test)), random_state=cfg.seed)
    predictions = predict(trainer.model, tokenizer, held_out, Verifier(), cfg.max_new_tokens, 64)
    summary = metrics.summary(predictions)
    torch.manual_seed(cfg.seed)  # the sampled table is reproducible
    sampled = sample_styles(
        trainer.model, tokenizer, held_out, Verifier(), cfg.max_new_tokens, cfg.data.written_style
    )
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    report = {
        **{k: float(v) for k, v in summary.items()},
        "length_std": float(predictions["length"].std()),
        "sft_seconds": round(seconds, 1),
        "sft_final_loss": float(losses[-1]) if losses else float(result.training_loss),
        "sft_rows": len(train),
        "sampled_by_style": sampled,
        "config": asdict(cfg),
        NUMERICS: numerics.fingerprint(),  # where the same seeds train these weights bit for bit
    }
    if "stop_text" in held_out:  # a task with a stopping decision: pi(stop) after each answer line
        from ablate.diagnostics.stopping import stop_probabilities

        stops = stop_probabilities(trainer.model, tokenizer, held_out).merge(held_out[["id", "difficulty"]])
        by = stops.groupby(["difficulty", "line"])["p_stop"].mean().round(4)
        report["stop_probability"] = {str(d): {str(k): v for k, v in part.droplevel(0).items()}
                                      for d, part in by.groupby(level=0)}  # fmt: skip
    (out / "warmstart.json").write_text(json.dumps(report, indent=2, default=str))
    return report


def style_table(frame: pd.DataFrame) -> dict:
    """Share of samples (percent), Acc (percent) and length of each written style."""
    by = frame.groupby("style").agg(
        share=("correct", "size"), acc=("correct", "mean"), length=("length", "mean")
    )
    by["share"] = 100.0 * by["share"] / len(frame)
    return by.round(2).to_dict("index")


def sample_styles(
    model: Any,
    tokenizer: Any,
    questions: pd.DataFrame,
    verifier: Any,
    max_new_tokens: int,
    written: Any = written_style,
) -> dict:
    """Share and accuracy (percent) and length of each written style among completions sampled at
    temperature 1, overall and by difficulty (where the questions have several).

    This is the RL starting policy as RL sees it: whether longer working is more often right.
    """
    from ablate.evaluate import predict

    frame = predict(model, tokenizer, questions, verifier, max_new_tokens, len(questions), sample=True)
    frame = frame.assign(
        style=frame["completion"].map(written),
        correct=100.0 * frame["correct"],  # percent, as the paper's Acc
        difficulty=questions["difficulty"].to_numpy(),
    )
    table = {"acc": float(frame["correct"].mean()), **style_table(frame)}
    if frame["difficulty"].nunique() > 1:
        table["by_difficulty"] = {str(d): style_table(part) for d, part in frame.groupby("difficulty")}
    return table


def warm_path(cfg: WarmStartConfig) -> Path:
    """The warm start's checkpoint: cached, shipped in ``checkpoints/`` (same key), or trained once per
    config (one process at a time, under a file lock)."""
    path = Path(cfg.cache_dir) / f"warm-{cfg.key()}"
    if (path / "warmstart.json").exists():
        return path
    if (SHIPPED / path.name / "warmstart.json").exists():
        return SHIPPED / path.name
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f"{path.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # sweep workers wait for the first one's checkpoint
        if not (path / "warmstart.json").exists():
            log.info("warm start %s not cached: training it (ablate warmstart)", path)
            tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
            try:
                warm_start(cfg, tmp)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)  # no half-written checkpoint is left behind
                raise
            tmp.rename(path)
    return path


def summary_line(path: Path) -> str:
    report = json.loads((path / "warmstart.json").read_text())
    return (
        f"warm start {path}: held-out Acc {report['acc']:.1f}, H-Acc {report['h_acc']:.1f}, "
        f"length {report['length']:.1f} (sd {report['length_std']:.1f}); "
        f"SFT {report['sft_rows']} rows, final loss {report['sft_final_loss']:.3f}, "
        f"{report['sft_seconds']:.0f} s"
    )
