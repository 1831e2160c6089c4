"""What a resume may change: the checkpoint's resolved config against the new one, key by key.

Keys that only steer how long or how loudly the run goes (learning rate, number of rounds, logging, eval
hooks, checkpoint cadence, Ray resources) may change and are applied. Every other key (model, LoRA shape or
alpha, reward, algorithm constants, seeds, data) changes the meaning of the run: resuming with a different
value would silently mix two experiments, so it is refused unless the user overrides deliberately.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Dotted keys (or prefixes ending in ".") that a resume may change.
MUTABLE_KEYS: tuple[str, ...] = (
    "grpo.learning_rate",
    "grpo.num_steps",
    "logging.",
    "eval_hooks",
    "policy_eval_hooks",
    "checkpoint.every_n_steps",
    "checkpoint.keep_last",
    "checkpoint.resume",
    "checkpoint.allow_config_change",
    "ray.address",
    "ray.num_cpus",
    "ray.env_vars",
    "ray.max_restarts",
    "ray.torch_threads",
    "output_dir",
    "policy.device",
    "policy.gradient_checkpointing",
    "grpo.learner_micro_batch",
    "reward.device",
    "reward.batch_size",
    # never change what is trained: tiny only permits a null checkpoint (which meant tiny before the key existed);
    # how stage 1 writes its rationales and whether its output directory is shared storage
    "policy.tiny",
    "reward.tiny",
    "jrm.annotate.",
    "jrm.shared_output_dir",
)


@dataclass(frozen=True)
class ConfigChange:
    """One key whose value differs between the checkpoint's config and the new one."""

    key: str
    old: Any
    new: Any

    def __str__(self) -> str:
        return f"{self.key}: {self.old!r} -> {self.new!r}"


@dataclass(frozen=True)
class ConfigChanges:
    """The differences, split into those a resume applies and those that change the run's meaning."""

    mutable: tuple[ConfigChange, ...]
    fixed: tuple[ConfigChange, ...]


_ABSENT = "<absent>"


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as ``{dotted.key: leaf}``; lists are leaves (an eval hook list changes as a whole)."""
    if not isinstance(tree, Mapping):
        return {prefix.rstrip("."): tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}{key}."))
    return out


def is_mutable(key: str) -> bool:
    """Whether a resume may change ``key``."""
    return any(key == m or key.startswith(m if m.endswith(".") else m + ".") for m in MUTABLE_KEYS)


def compare_configs(old: Mapping[str, Any], new: Mapping[str, Any]) -> ConfigChanges:
    """Every differing leaf of two resolved config trees (plain dicts), sorted by key and split by kind."""
    flat_old, flat_new = flatten(old), flatten(new)
    changes = [
        ConfigChange(key, flat_old.get(key, _ABSENT), flat_new.get(key, _ABSENT))
        for key in sorted(set(flat_old) | set(flat_new))
        if flat_old.get(key, _ABSENT) != flat_new.get(key, _ABSENT)
    ]
    return ConfigChanges(
        mutable=tuple(c for c in changes if is_mutable(c.key)),
        fixed=tuple(c for c in changes if not is_mutable(c.key)),
    )
