"""Greedy evaluation on the test split, and re-scoring of saved predictions tables.

``ablate evaluate --predictions FILE.jsonl`` recomputes the paper's metrics from a table with
``value, correct, length`` columns. ``--rejudge OVERRIDE ...`` re-scores its completions with another
checker (``verifier=llm_judge verifier.judge.base_url=URL verifier.judge.model=M``, ``data=gaokao`` for
the questions) and prints the agreement table and the metrics under each (see docs/verify.md).
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ablate import launch, metrics
from ablate.names import COUNT, METRICS, eval_key, label

if TYPE_CHECKING:
    from ablate.generation import Generate
    from ablate.verify import Verifier

PREDICTION_COLUMNS = ("id", "exam_id", "value", "answer", "completion", "correct", "credit", "length")


# Kept in memory for diagnostics (the EOS trajectories), never written to predictions.jsonl.
IN_MEMORY_COLUMNS = ("prompt_ids", "completion_ids", "eos_probs")


def predict(
    model: Any,
    tokenizer: Any,
    questions: pd.DataFrame,
    verifier: Verifier,
    max_new_tokens: int,
    batch_size: int = 32,
    sample: bool = False,
    generate: Generate | None = None,
) -> pd.DataFrame:
    """Greedy completions for ``questions`` (``sample``: sampled at temperature 1, as RL samples),
    checked by ``verifier``; one row per question, in the table's order.

    ``generate``: another generator of the completions (the rollout's vLLM engine), called once with
    every prompt; None: transformers' ``generate`` on ``model``, ``batch_size`` prompts at a time.

    ``length`` counts generated tokens up to, not including, the first EOS. ``prompt_ids`` and
    ``completion_ids`` (through the EOS) are kept for diagnostics and not written to predictions.jsonl.
    """
    from ablate.generation import generate_ids, stop_token_ids  # torch only where a model runs

    model.eval()
    stops = stop_token_ids(model, tokenizer)
    texts = [prompt_text(p, tokenizer) for p in questions["prompt"]]
    prompt_ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    # Greedy batches of prompts of one length waste no padding and tend to stop together. Sampling
    # keeps the table's order, so each question draws the same random numbers as before.
    order = list(range(len(texts)))
    if not sample:
        order.sort(key=lambda i: len(prompt_ids[i]))
    if generate is None:
        generate = functools.partial(generate_ids, model)
    else:
        batch_size = max(1, len(order))  # one call: the engine batches, and every rank calls it once
    generated: list[list[int]] = [[] for _ in order]
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        batch = generate(
            [prompt_ids[i] for i in chunk], max_new_tokens, stops, tokenizer.pad_token_id, sample
        )
        for i, ids in zip(chunk, batch, strict=True):
            generated[i] = ids
    lengths = [len(ids) - 1 if ids and ids[-1] in stops else len(ids) for ids in generated]
    completions = [
        tokenizer.decode(ids[:n], skip_special_tokens=True) for ids, n in zip(generated, lengths, strict=True)
    ]
    types = questions["answer_type"].tolist() if "answer_type" in questions else None
    # One batch for the verifier: an LLM judge sends it as concurrent requests.
    credits = verifier.score_many(
        completions, questions["answer"].tolist(), questions["prompt"].tolist(), types
    )
    table = questions[["id", "exam_id", "value", "answer"]].reset_index(drop=True)
    rows = table.assign(
        value=table["value"].astype(float),
        completion=completions,
        correct=[c == 1.0 for c in credits],
        credit=credits,
        length=lengths,
        prompt_ids=prompt_ids,
        completion_ids=generated,
    )
    return rows[[*PREDICTION_COLUMNS, "prompt_ids", "completion_ids"]]


def evaluate_policy(
    model: Any,
    tokenizer: Any,
    questions: pd.DataFrame,
    verifier: Verifier,
    max_new_tokens: int,
    batch_size: int,
    generate: Generate | None = None,
) -> tuple[pd.DataFrame, dict[str, float], pd.DataFrame]:
    """Greedy predictions, their summary metrics and length by value bucket; the model is left in
    the mode (training or not) it was in. Split across the ranks of a multi-process run."""
    was_training = model.training
    # In a multi-process run each rank answers its share of the questions and all get the whole table.
    mine = launch.shard(questions)
    part = predict(model, tokenizer, mine, verifier, max_new_tokens, batch_size, generate=generate)
    predictions = launch.gathered(part, questions["id"])
    model.train(was_training)
    return predictions, metrics.summary(predictions), metrics.length_by_value_bucket(predictions)


def eval_metrics(summary: dict[str, float], buckets: pd.DataFrame) -> dict[str, float]:
    """One evaluation as MLflow metrics: ``eval/<metric>`` and ``eval/length_bucket<i>``."""
    logged = {eval_key(k): v for k, v in summary.items() if k != COUNT}
    for row in buckets.itertuples():
        logged[eval_key(f"length_bucket{row.bucket}")] = row.length
    return logged


def prompt_text(prompt: Any, tokenizer: Any) -> str:
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
    df.drop(columns=list(IN_MEMORY_COLUMNS), errors="ignore").to_json(
        path, orient="records", lines=True, force_ascii=False
    )
    return path


def format_metrics(summary: dict[str, float], buckets: pd.DataFrame | None = None) -> str:
    formats = {"value_density": ".3f", "length_gap": "+.1f"}
    shown = [f"{label(k)} {summary[k]:{formats.get(k, '.1f')}}" for k in METRICS]
    lines = [f"n={int(summary[COUNT])}  " + "  ".join(shown)]
    if buckets is not None:
        lines += ["length by value bucket (low to high value):", buckets.round(4).to_string(index=False)]
    return "\n".join(lines)


def evaluate_file(path: str | Path) -> dict[str, float]:
    """The paper's metrics of a saved predictions table."""
    return metrics.summary(metrics.check_predictions(read_predictions(path), str(path)))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="ablate evaluate", description=__doc__)
    parser.add_argument("--predictions", required=True, help="JSONL/CSV/Parquet with value, correct, length")
    parser.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    parser.add_argument(
        "--rejudge",
        nargs="+",
        metavar="OVERRIDE",
        help="re-score the completions with the verifier of these config overrides, e.g. verifier=llm_judge "
        "verifier.judge.base_url=URL verifier.judge.model=NAME [data=gaokao for the questions]",
    )
    parser.add_argument("--output", help="with --rejudge: write the table, correct as rejudged, here")
    args = parser.parse_args(argv)
    table = metrics.check_predictions(read_predictions(args.predictions), args.predictions)
    if args.rejudge:
        return rejudge_file(table, args.predictions, args.rejudge, args.output, args.json)
    summary = metrics.summary(table)
    if args.json:
        print(json.dumps(summary))
    else:
        print(format_metrics(summary, metrics.length_by_value_bucket(table)))
    return summary


def rejudge_file(
    table: pd.DataFrame, source: str, overrides: list[str], output: str | None = None, as_json: bool = False
) -> dict[str, Any]:
    """Re-score ``table`` with the verifier of ``overrides``; print the agreement and both sets of metrics."""
    from ablate.verify import rejudge as rj

    verifier, data_cfg = rj.verifier_and_data(overrides)
    if data_cfg is not None:
        table = rj.with_questions(table, data_cfg, source)
    judged = rj.rejudge(table, verifier, source)
    counts = rj.agreement(judged["correct"], judged["rejudged"])
    after = judged.assign(correct=judged["rejudged"])
    # B's metrics take its credit: with verifier.partial=true, H-Acc is points earned / points available.
    result: dict[str, Any] = {"agreement": counts, "a": metrics.summary(table), "b": metrics.summary(after)}
    if output:
        write_predictions(after.drop(columns=["rejudged"]), output)
    if as_json:
        print(json.dumps(result))
        return result
    print(f"B = {' '.join(overrides)}")
    print(rj.format_agreement(counts))
    print(f"A (as saved):  {format_metrics(result['a'])}")
    partial = " (partial credit: Acc is the mean credit, H-Acc points earned / available)"
    print(f"B (rejudged):  {format_metrics(result['b'])}{partial if verifier.partial else ''}")
    return result
