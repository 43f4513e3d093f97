"""Rollout generation of the warm-started tiny policy under transformers' cache options, side by side.

One batch of RL-shaped rollouts (``--batch`` prompts of the checks task, sampled at temperature
1 up to 96 new tokens, as TRL's RLOOTrainer generates them) per option, options interleaved,
``--repeats`` times; prints each option's median seconds and its ratio to transformers' default
(a ``DynamicCache``). Options: ``dynamic`` (the default), ``static`` (``cache_implementation``,
TRL's ``generation_kwargs``), ``prefilled`` (``ablate.generation.PrefilledLayer``, what a loaded
model uses), and ``paged`` (continuous batching, ``generate_batch``, TRL's
``use_transformers_paged``) where it runs. Same random stream per repeat; the sampled tokens of
``static`` and ``prefilled`` are compared with ``dynamic``'s.

    python bench/generation_options.py --repeats 7 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from hydra.utils import instantiate
from transformers import DynamicCache, GenerationConfig

from ablate.config import compose
from ablate.generation import left_pad
from ablate.models import load_model

OPTIONS = ("dynamic", "static", "prefilled", "paged")


def run(model, ids, mask, option: str, seed: int):
    """One batch of rollouts with ``option``; the sampled ids (a list of lists for ``paged``)."""
    torch.manual_seed(seed)
    kwargs = {
        "max_new_tokens": 96,
        "do_sample": True,
        "temperature": 1.0,
        "pad_token_id": 0,
        "eos_token_id": 1,
    }
    if option == "paged":
        rows = [row[m.bool()].tolist() for row, m in zip(ids, mask, strict=True)]
        return model.generate_batch(rows, generation_config=GenerationConfig(**kwargs), progress_bar=False)
    if option == "dynamic":
        kwargs["cache"] = DynamicCache(config=model.config)  # transformers' default, passed explicitly
    elif option == "static":
        kwargs["cache_implementation"] = "static"
    return model.generate(input_ids=ids, attention_mask=mask, **kwargs)  # prefilled: the loaded default


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = compose(["experiment=positive_control"])
    model, tokenizer = load_model(instantiate(cfg.model, _convert_="all"))
    model.eval()
    table = instantiate(cfg.data).load()
    texts = table[table["split"] == "train"]["prompt"].head(args.batch).tolist()
    ids, mask = left_pad(
        tokenizer(texts, add_special_tokens=False)["input_ids"], tokenizer.pad_token_id, "cpu"
    )
    options = list(OPTIONS)
    times: dict[str, list[float]] = {o: [] for o in options}
    with torch.no_grad():
        for option in OPTIONS:  # warm-up, and drop what cannot run here
            try:
                run(model, ids, mask, option, 0)
            except Exception as err:  # an option this machine cannot run is reported, not fatal
                print(f"{option}: does not run here ({type(err).__name__}: {str(err)[:160]})")
                options.remove(option)
        for repeat in range(args.repeats):
            outputs = {}
            for option in options:
                start = time.perf_counter()
                outputs[option] = run(model, ids, mask, option, repeat)
                times[option].append(time.perf_counter() - start)
            same = {
                o: torch.equal(outputs[o], outputs["dynamic"])
                for o in ("static", "prefilled")
                if o in outputs
            }
            print(f"repeat {repeat}: tokens equal to dynamic's: {same}", flush=True)
    base = statistics.median(times["dynamic"])
    for option in options:
        median = statistics.median(times[option])
        print(f"{option:10s} median {median:.3f} s, ratio to dynamic {median / base:.2f}")


if __name__ == "__main__":
    main()
