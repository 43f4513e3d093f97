"""Greedy evaluation on the test split, and re-scoring of saved predictions tables.

``ablate evaluate --predictions FILE.jsonl`` recomputes the paper's metrics from a table with
``value, correct, length`` columns, e.g. after re-judging completions with another judge.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from ablate import metrics

if TYPE_CHECKING:
    from ablate.verify import Verifier

PREDICTION_COLUMNS = ("id", "exam_id", "value", "answer", "completion", "correct", "length")


class EOSProbability(LogitsProcessor):
    """Records pi(eos) at every generation step, leaving the scores untouched (no logits are kept)."""

    def __init__(self, eos_token_id: int):
        self.eos_token_id, self.steps = eos_token_id, []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.steps.append(scores.float().softmax(-1)[:, self.eos_token_id].cpu())
        return scores


@torch.no_grad()
def predict(
    model: Any,
    tokenizer: Any,
    questions: pd.DataFrame,
    verifier: Verifier,
    max_new_tokens: int,
    batch_size: int = 32,
    sample: bool = False,
) -> pd.DataFrame:
    """Greedy completions for ``questions`` (``sample``: sampled at temperature 1, as RL samples),
    checked by ``verifier``; one row per question.

    ``length`` counts generated tokens up to, not including, the first EOS. ``eos_probs`` holds
    pi(eos) at each generated position, through the EOS itself (not written to predictions.jsonl).
    """
    model.eval()
    device = next(model.parameters()).device
    stops = stop_token_ids(model, tokenizer)
    rows = []
    for start in range(0, len(questions), batch_size):
        batch = questions.iloc[start : start + batch_size]
        prompts = [_prompt_text(p, tokenizer) for p in batch["prompt"]]
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        recorder = EOSProbability(tokenizer.eos_token_id)
        out = model.generate(
            **enc,
            max_new_tokens=max_new_tokens,
            **({"do_sample": True, "temperature": 1.0} if sample else {"do_sample": False}),
            eos_token_id=stops,
            pad_token_id=tokenizer.pad_token_id,
            logits_processor=LogitsProcessorList([recorder]),
        )
        generated = out[:, enc["input_ids"].shape[1] :]
        eos_probs = torch.stack(recorder.steps, dim=1).tolist()
        for (_, q), ids, probs in zip(batch.iterrows(), generated.tolist(), eos_probs, strict=True):
            length = next((i for i, t in enumerate(ids) if t in stops), len(ids))
            completion = tokenizer.decode(ids[:length], skip_special_tokens=True)
            correct = verifier(completion, q["answer"], prompt=q["prompt"], answer_type=q.get("answer_type"))
            rows.append(
                {
                    "id": q["id"],
                    "exam_id": q["exam_id"],
                    "value": float(q["value"]),
                    "answer": q["answer"],
                    "completion": completion,
                    "correct": bool(correct),
                    "length": length,
                    "eos_probs": probs[: length + 1],
                }
            )
    return pd.DataFrame(rows, columns=[*PREDICTION_COLUMNS, "eos_probs"])


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """The tokens that end a completion: the tokenizer's EOS and the model's generation EOS ids (as TRL)."""
    stops = [tokenizer.eos_token_id]
    extra = getattr(model.generation_config, "eos_token_id", None)
    stops += extra if isinstance(extra, list) else [extra]
    return list(dict.fromkeys(t for t in stops if t is not None))


def _prompt_text(prompt: Any, tokenizer: Any) -> str:
    # Conversational prompts (lists of messages) go through the model's chat template.
    if isinstance(prompt, str):
        return prompt
    return tokenizer.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True)


def read_predictions(path: str | Path) -> pd.DataFrame:
    """A predictions table from JSONL (one object per line), CSV or Parquet."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"--predictions {path}: no such file")
    if path.suffix == ".csv":
        return pd.read_csv(path)
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{lineno}: invalid JSON: {err.msg}") from None
    return pd.DataFrame(rows)


def write_predictions(df: pd.DataFrame, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    df.drop(columns=["eos_probs"], errors="ignore").to_json(
        path, orient="records", lines=True, force_ascii=False
    )
    return path


def format_metrics(summary: dict[str, float], buckets: pd.DataFrame | None = None) -> str:
    lines = [
        f"n={int(summary['n'])}  Acc {summary['acc']:.1f}  H-Acc {summary['h_acc']:.1f}  "
        f"length {summary['length']:.1f}  value density {summary['value_density']:.3f}  "
        f"Acc top20 {summary['acc_top20']:.1f}  Acc bottom20 {summary['acc_bottom20']:.1f}  "
        f"length gap top-bottom20 {summary['length_gap']:+.1f}"
    ]
    if buckets is not None:
        lines += ["length by value bucket (low to high value):", buckets.round(4).to_string(index=False)]
    return "\n".join(lines)


def evaluate_file(path: str | Path) -> dict[str, float]:
    """The paper's metrics of a saved predictions table."""
    return metrics.summary(metrics.check_predictions(read_predictions(path), str(path)))


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(prog="ablate evaluate", description=__doc__)
    parser.add_argument("--predictions", required=True, help="JSONL/CSV/Parquet with value, correct, length")
    parser.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    args = parser.parse_args(argv)
    table = metrics.check_predictions(read_predictions(args.predictions), args.predictions)
    summary = metrics.summary(table)
    if args.json:
        print(json.dumps(summary))
    else:
        print(format_metrics(summary, metrics.length_by_value_bucket(table)))
    return summary
