"""An RL run's policy, for evaluation: find a checkpoint of a run and rebuild the policy it holds.

What may name an RL checkpoint (``<output_dir>`` is the run's ``output_dir``):

- ``<output_dir>``                         the run directory: its newest complete checkpoint;
- ``<output_dir>/checkpoints``             the same;
- ``<output_dir>/checkpoints/latest``      the same (an alias: no such directory is written);
- ``<output_dir>/checkpoints/step_<N>``    that checkpoint.

A checkpoint holds the adapter (``adapter.safetensors``, keyed as in the model) and the run's resolved config
(``config.yaml``); the policy is rebuilt from that config's ``policy`` section (base model, LoRA rank / alpha /
targets, sampling defaults), optionally on another base directory, and the adapter is loaded into it strictly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from editrl.config import ConfigError, validate_tree
from policies.base import AdapterState
from policies.policy_config import PolicyConfig
from policies.registry import PolicyRegistry, default_policy_registry
from rl.checkpoint import STATE_FILE, checkpoint_root, load_checkpoint, run_checkpoints

LATEST = "latest"
ADAPTER_FILE = "adapter.safetensors"
CONFIG_FILE = "config.yaml"


def _newest(output_dir: Path, named: Path) -> Path:
    newest = run_checkpoints(output_dir).latest()
    if newest is None:
        raise FileNotFoundError(f"{named}: the RL run {output_dir} has no complete checkpoint under {checkpoint_root(output_dir)}")
    return newest


def find_rl_checkpoint(path: str | Path) -> Path | None:
    """The RL checkpoint directory ``path`` names (see the module docstring), or None if it names none.

    A path that looks like an RL run (a ``checkpoints`` directory, or ``.../checkpoints/latest``) without a
    complete checkpoint is an error (FileNotFoundError naming it), not None.
    """
    path = Path(path)
    if (path / STATE_FILE).is_file():
        return path
    if path.name == LATEST and not path.exists():
        parent = path.parent
        output_dir = parent.parent if parent.name == checkpoint_root(".").name else parent
        return _newest(output_dir, path)
    if (path / checkpoint_root(".").name).is_dir():
        return _newest(path, path)
    if path.name == checkpoint_root(".").name and path.is_dir() and any(p.name.startswith("step_") for p in path.iterdir()):
        return _newest(path.parent, path)
    return None


@dataclass(frozen=True)
class RLCheckpointPolicy:
    """What :func:`load_rl_policy` built: the policy, the checkpoint it came from and the run's step there."""

    policy: Any
    checkpoint: Path
    step: int
    policy_config: PolicyConfig


def policy_config_of(checkpoint: str | Path) -> PolicyConfig:
    """The ``policy`` section of a checkpoint's ``config.yaml`` as the policy schema (unknown keys: an error)."""
    path = Path(checkpoint) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: an RL checkpoint holds the run's resolved config; it is missing")
    try:
        raw = OmegaConf.load(path)
        if "policy" not in raw:
            raise ConfigError(f"{path}: no 'policy' section")
        cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(PolicyConfig), raw.policy))
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{path}: policy.{getattr(exc, 'key', '')}: {str(exc).splitlines()[0]}") from None
    return cfg  # type: ignore[return-value]


def load_rl_policy(
    path: str | Path,
    *,
    base: str | None = None,
    tiny_base: bool = False,
    device: str = "cpu",
    dtype: str = "float32",
    registry: PolicyRegistry | None = None,
) -> RLCheckpointPolicy:
    """Rebuild the policy of the RL checkpoint ``path`` names (:func:`find_rl_checkpoint`) with its adapter.

    base:      an OmniGen2 directory to use instead of the run's ``policy.checkpoint`` (another mount, say);
    tiny_base: use the tiny random-config base instead (``policy.checkpoint = null``, ``policy.tiny = true``, the run's ``tiny_seed``).
    The adapter is loaded strictly (keys and shapes must match the run's LoRA); the policy's
    ``adapter_version`` is the one the run had at that step.
    """
    checkpoint = find_rl_checkpoint(path)
    if checkpoint is None:
        raise FileNotFoundError(f"{path}: not an RL run directory or checkpoint (no {STATE_FILE}, no checkpoints/)")
    cfg = policy_config_of(checkpoint)
    if tiny_base:
        cfg = replace(cfg, checkpoint=None, tiny=True)
    elif base is not None:
        cfg = replace(cfg, checkpoint=base)
    cfg = replace(cfg, lora_checkpoint=None, device=device, dtype=dtype, gradient_checkpointing=False)
    if not cfg.use_lora:
        raise ConfigError(f"{checkpoint / CONFIG_FILE}: policy.use_lora is false, so there is no adapter to load")
    try:
        validate_tree(cfg)
    except ConfigError as exc:
        raise ConfigError(f"policy of {checkpoint}: {exc} (pass another base directory to evaluate it)") from None
    loaded = load_checkpoint(checkpoint)  # verified against its manifest
    policy = (registry or default_policy_registry()).build(cfg)
    policy.load_adapter_state(AdapterState(tensors=loaded.adapter, version=loaded.state.adapter_version))
    return RLCheckpointPolicy(policy=policy, checkpoint=checkpoint, step=loaded.state.step, policy_config=cfg)
