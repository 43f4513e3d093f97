"""Where a run's training completions come from (``rollout=hf|vllm|vllm_server``): TRL's settings.

``hf`` generates with transformers in the training processes (TRL's default, any device).
``vllm`` runs a vLLM engine inside each training process, sharing its GPU (TRL's colocate mode);
``vllm_server`` sends the prompts to a ``trl vllm-serve`` process on other GPUs. The trainer, the
loss and the diagnostics are the same whichever it is; only the sampler of the completions changes.

>>> HFRollout().trl_args()
{'use_vllm': False}
>>> HFRollout(seed_per_row=True).trainer_class(object).__name__
'object'
>>> HFRollout().generator(trainer=None) is None  # evaluations by transformers' generate on the policy
True
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ablate import launch

if TYPE_CHECKING:
    from ablate.generation import Generate

# An evaluation through the rollout's engine samples with nothing but its temperature (0: greedy), as
# transformers' generate does in ablate's evaluations.
PLAIN = {"top_p": 1.0, "top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0}


class Rollout:
    """What every rollout gives: TRL's config keys, and the trainer class that uses them."""

    def trl_args(self) -> dict[str, Any]:
        """TRL's config keys for this rollout."""
        raise NotImplementedError

    def trainer_class(self, trainer_cls: type) -> type:
        """The trainer class this rollout trains with (the algorithm's, unless it adds to it)."""
        return trainer_cls

    def generator(self, trainer: Any) -> Generate | None:
        """What generates the evaluations' completions (None: transformers' ``generate`` on the policy)."""
        return None


@dataclass
class HFRollout(Rollout):
    """Completions from transformers' ``generate`` in the training processes."""

    # each completion from its own random stream (ablate/sampling.py): the same completions on any
    # number of processes; False: TRL's sampling (per-process torch generators)
    seed_per_row: bool = False

    def trl_args(self) -> dict[str, Any]:
        return {"use_vllm": False}

    def trainer_class(self, trainer_cls: type) -> type:
        from ablate.sampling import with_row_seeds

        return with_row_seeds(trainer_cls) if self.seed_per_row else trainer_cls


@dataclass
class NeedsVLLM(Rollout):
    """A rollout by vLLM: refused, in one line, where vLLM is not installed."""

    # the greedy evaluations by this engine too (the same prompts and token cap; the EOS trajectories are
    # teacher-forced on the policy either way); False: by transformers' generate on the policy
    evaluate: bool = False

    def generator(self, trainer: Any) -> Generate | None:
        return vllm_generator(trainer) if self.evaluate else None

    def __post_init__(self) -> None:
        if importlib.util.find_spec("vllm") is None:
            raise ValueError(
                "rollout: vLLM is not installed (on a CUDA machine: pip install -e '.[gpu]'); use rollout=hf"
            )


@dataclass
class VLLMRollout(NeedsVLLM):
    """Completions from vLLM colocated in each training process (TRL's ``vllm_mode="colocate"``)."""

    gpu_memory_utilization: float = 0.3  # the share of each GPU vLLM may take (the rest trains)
    tensor_parallel_size: int = 1  # GPUs one vLLM engine spans
    enable_sleep_mode: bool = False  # offload vLLM's weights and cache while the policy trains
    max_model_length: int | None = None  # vLLM's context length (None: the model's)

    def trl_args(self) -> dict[str, Any]:
        return {
            "use_vllm": True,
            "vllm_mode": "colocate",
            "vllm_gpu_memory_utilization": self.gpu_memory_utilization,
            "vllm_tensor_parallel_size": self.tensor_parallel_size,
            "vllm_enable_sleep_mode": self.enable_sleep_mode,
            "vllm_max_model_length": self.max_model_length,
        }


@dataclass
class VLLMServerRollout(NeedsVLLM):
    """Completions from a ``trl vllm-serve`` server (TRL's ``vllm_mode="server"``) on other GPUs."""

    base_url: str | None = None  # http://host:port of the server (None: host and port)
    host: str = "0.0.0.0"
    port: int = 8000
    group_port: int = 51216  # the trainer's port for pushing its weights to the server (NCCL)
    timeout_s: float = 240.0  # how long to wait for the server to come up
    # ablate sweep starts a server per worker on GPUs of its own, and stops it (ablate/sweep/serve.py);
    # the keys below are that server's
    managed: bool = False
    devices: int = 1  # GPUs of a managed server (its tensor-parallel size)
    gpu_memory_utilization: float = 0.9  # the share of its GPUs a managed server takes
    max_model_length: int | None = None  # a managed server's context length (None: the model's)
    extra_args: list[str] = field(default_factory=list)  # more `vllm serve` flags for a managed server

    def __post_init__(self) -> None:
        if self.managed:
            raise ValueError(
                "rollout.managed=true: only ablate sweep starts vLLM servers; for ablate train start one "
                "(CUDA_VISIBLE_DEVICES=7 trl vllm-serve --model M --port 8000) and set rollout.port"
            )
        super().__post_init__()

    def trl_args(self) -> dict[str, Any]:
        return {
            "use_vllm": True,
            "vllm_mode": "server",
            "vllm_server_base_url": self.base_url,
            "vllm_server_host": self.host,
            "vllm_server_port": self.port,
            "vllm_group_port": self.group_port,
            "vllm_server_timeout": self.timeout_s,
        }


def vllm_generator(trainer: Any) -> Generate:
    """Completions by the trainer's vLLM engine (TRL's ``VLLMGeneration``, colocated or a server) from
    the policy as it is now; every rank calls it once per evaluation, with its share of the prompts."""
    from ablate.generation import cut_at_stop

    def generate(prompts: list[list[int]], max_new_tokens: int, stops: list[int], pad_id: int, sample: bool):
        engine = trainer.vllm_generation
        if trainer.state.global_step != trainer._last_loaded_step:  # as TRL does before it samples
            engine.sync_weights()
            trainer._last_loaded_step = trainer.state.global_step
        # TRL's call is collective and hands each rank an equal slice back: every rank sends one size
        size = max(launch.merge(len(prompts)))
        padded = prompts + (prompts[:1] or [[pad_id]]) * (size - len(prompts))
        settings = PLAIN | {"temperature": 1.0 if sample else 0.0, "max_completion_length": max_new_tokens,
                            "generation_kwargs": {"stop_token_ids": stops}}  # fmt: skip
        saved = {key: getattr(engine, key) for key in settings}
        vars(engine).update(settings)
        try:
            _, completions, _, _ = engine.generate(padded, None, 1)
        finally:
            vars(engine).update(saved)
        return [cut_at_stop(list(ids), stops) for ids in completions[: len(prompts)]]

    return generate
