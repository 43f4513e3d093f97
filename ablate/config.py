"""The config of ``ablate train``: where it lives, its schema, one ``compose``, and a check of every
``_target_`` node before training.

``compose(overrides)`` gives the config ``ablate train`` would run with those overrides, from a
notebook, a test or a script alike: importing this module registers the schema Hydra needs.

The top level is a dataclass in Hydra's ConfigStore (``train_schema``, first in the defaults
list), so a misspelt or mistyped top-level key fails at composition. Group nodes are checked
against the signature of their ``_target_``: a dataclass target (data loaders, model and
tracking configs, TRL's ``GRPOConfig``) checks key names and types, any other callable its
argument names. Either way the error names the config key, before any model is loaded.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.utils import get_object
from omegaconf import MISSING, DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from ablate.launch import LaunchConfig

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
# the groups of a run, every _target_ in them checked before anything loads (ablate.train.run)
TRAIN_GROUPS = ("data", "verifier", "reward", "model", "algo", "rollout", "tracking")
HYDRA_KEYS = ("_target_", "_partial_", "_recursive_", "_convert_", "_args_")


@dataclass
class DiagnosticsConfig:
    """What ``ablate train`` measures beyond TRL's metrics."""

    eos: bool = True  # EOS-logit gradient and EOS probability by value bucket, every step (eos/*)
    eos_top_k: int = 200  # prompts per group in the EOS-probability trajectories at evaluation
    baseline_run_id: str | None = None  # an earlier run (same tracking store) drawn beside this one
    start: bool = (
        False  # also evaluate the policy before training (eval/* at step 0, predictions_start.jsonl)
    )
    stops: bool = (
        False  # pi(stop) after each answer line of the data's stop_text, at start and end (stops.csv)
    )


@dataclass
class TrainConfig:
    """``ablate train``: one RL run. Groups are checked by ``check_targets``."""

    data: Any = MISSING  # exam loader (conf/data/)
    verifier: Any = MISSING  # answer checker (conf/verifier/)
    reward: Any = MISSING  # reward variant (conf/reward/)
    model: Any = MISSING  # policy (conf/model/)
    algo: Any = MISSING  # TRL trainer and its config defaults (conf/algo/)
    rollout: Any = MISSING  # who samples the training completions (conf/rollout/)
    tracking: Any = MISSING  # MLflow store or server (conf/tracking/)
    alpha: Any = 10  # slope of the value scale s = 1 + min(alpha v, 1) of every reward with one (a number)
    seed: int = 0  # seeds TRL and the seeded reward variants (the data split has data.split_seed)
    steps: int = 20  # optimisation steps
    epochs: float | None = None  # set: train this many passes over the training questions instead of `steps`
    lr: float = 5e-4  # learning rate
    batch_size: int = 16  # completions per optimisation step (prompts x generations), over all processes
    micro_batch_size: int | None = None  # completions per forward on one process (None: its whole share)
    num_generations: int = 4  # completions sampled per prompt (the group)
    max_completion_length: int = 48  # generated tokens per completion
    temperature: float = 1.0  # sampling temperature during training
    eval_every: int = 0  # also evaluate every N steps (0: only after training)
    eval_limit: int | None = 128  # test questions evaluated greedily (None: all)
    eval_batch_size: int = 64  # prompts per generate() call at evaluation
    save_model: bool = False  # keep the trained policy in <output_dir>/model
    console_every: int = 10  # off a terminal, print one line of live numbers every N steps (on one: a bar)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)  # live mechanism diagnostics
    launch: LaunchConfig = field(default_factory=LaunchConfig)  # processes per run (ablate.launch)
    output_dir: str = MISSING  # run directory (also the MLflow run name)
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes, logged as params


ConfigStore.instance().store(name="train_schema", node=TrainConfig)


def compose_with_choices(overrides: Sequence[str] = ()) -> tuple[DictConfig, dict[str, str]]:
    """The ``ablate train`` config and Hydra's record of its group choices (``algo: rloo``, for tags).

    >>> cfg, choices = compose_with_choices(["reward=rlev", "reward.alpha=5"])
    >>> cfg.reward.alpha, choices["reward"], choices["algo"]
    (5, 'rlev', 'rloo')
    """
    if isinstance(overrides, str):
        raise TypeError(f"compose takes a list of overrides, got the string {overrides!r}")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
    choices = {k: str(v) for k, v in cfg.hydra.runtime.choices.items() if v is not None}
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, choices


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """The ``ablate train`` config for these Hydra overrides (``conf/config.yaml``).

    >>> compose(["algo=grpo", "seed=3"]).seed
    3
    """
    return compose_with_choices(overrides)[0]


def check_targets(node: Any, key: str) -> None:
    """Raise ``ValueError`` naming ``key`` if a ``_target_`` node does not fit its target."""
    if not isinstance(node, DictConfig):
        return
    for child_key in node:
        if child_key not in HYDRA_KEYS:
            check_targets(node[child_key], f"{key}.{child_key}")
    if "_target_" not in node:
        return
    try:
        target = get_object(node._target_)
    except Exception as err:
        raise ValueError(f"{key}._target_={node._target_!r} cannot be imported: {err}") from None
    kwargs = {k: node[k] for k in node if k not in HYDRA_KEYS}
    if dataclasses.is_dataclass(target):
        fields = {f.name for f in dataclasses.fields(target) if f.init}
        unknown = sorted(set(kwargs) - fields)
        if unknown:
            raise ValueError(f"{key}: unknown key(s) {unknown}; valid keys are {', '.join(sorted(fields))}")
        plain = {k: v for k, v in kwargs.items() if not _is_target_node(v)}
        try:
            schema = _schema(target, plain)
            OmegaConf.merge(schema, OmegaConf.create({k: v for k, v in plain.items() if k in schema}))
        except OmegaConfBaseException as err:
            raise ValueError(f"{key}.{err.full_key}: {err.msg} (see {node._target_})") from None
        return
    try:
        inspect.signature(target).bind_partial(**kwargs)
    except TypeError as err:
        params = [p for p in inspect.signature(target).parameters if p not in ("self", "args", "kwargs")]
        raise ValueError(f"{key}: {err}; valid keys are {', '.join(params)}") from None
    except ValueError:
        return  # a builtin without an inspectable signature


def _schema(target: type, given: dict[str, Any]) -> Any:
    """A structured config for the given keys of ``target``, typed where OmegaConf can type them."""
    try:
        return OmegaConf.structured(target)
    except OmegaConfBaseException:
        pass  # some annotation OmegaConf cannot express (Literal, unions of classes): check what it can
    simple = []
    for name, hint in typing.get_type_hints(target).items():
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        base = (
            args[0] if len(args) == 1 and typing.get_origin(hint) in (typing.Union, types.UnionType) else hint
        )
        if name in given and base in (int, float, bool, str):
            simple.append((name, base | None, None))
    return OmegaConf.structured(dataclasses.make_dataclass(f"{target.__name__}Check", simple))


def _is_target_node(value: Any) -> bool:
    return isinstance(value, DictConfig) and "_target_" in value
