"""Load built bases through the real loaders, after checking their metadata against the build config.

The policy base goes through the policy registry (kind ``omnigen2``, ``policy.checkpoint: <DIR>/policy``,
``tiny: false``), the backbone base through the JRM's local-backbone path (``jrm.model.backbone:
<DIR>/backbone``, :func:`reward.jrm.model_init.build_model`). Before either loads, ``<DIR>/build_info.json``
must hold the expected build config and each base folder must pass :func:`world.bases.metadata.check_base`
(manifest, config, revision, safetensors headers); a mismatch is an error naming the file and the key.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from policies.base import RLPolicy
from policies.policy_config import PolicyConfig
from policies.registry import PolicyRegistry, build_policy
from reward.jrm.model import JRM
from reward.jrm.model_init import build_model
from reward.jrm.train_config import JRMModelInit
from world.bases.config import BasesConfig
from world.bases.metadata import BUILD_INFO_NAME, check_base, config_sha256, read_json, require_config


def check_bases(bases_dir: str | Path, cfg: BasesConfig, kind: str | None = None) -> dict[str, Any]:
    """Check ``build_info.json`` against the whole of ``cfg`` and base ``kind`` (None: both); return the build info."""
    root = Path(bases_dir)
    path = root / BUILD_INFO_NAME
    info = read_json(path)
    whole = dataclasses.asdict(cfg)
    require_config(path, info.get("config", "<missing>"), whole)
    if info.get("config_sha256") != config_sha256(whole):
        raise ValueError(f"{path}: key 'config_sha256' does not match its 'config'")
    for name in [kind] if kind else ["policy", "backbone"]:
        meta = check_base(root / name, name, cfg)
        if (meta["git_rev"], meta["git_dirty"]) != (info.get("git_rev"), info.get("git_dirty")):
            raise ValueError(f"{root / name}: git_rev {meta['git_rev']!r} differs from {path}'s {info.get('git_rev')!r}")
    return info


def policy_base_config(bases_dir: str | Path, cfg: BasesConfig, **changes: Any) -> PolicyConfig:
    """The ``policy`` section that loads the base: kind omnigen2, its folder as ``checkpoint``, ``tiny`` false,
    output and reference sizes of ``cfg.image_size``; ``changes`` set further keys (e.g. ``use_lora=False``)."""
    side = cfg.image_size
    base = PolicyConfig(
        kind="omnigen2", checkpoint=str(Path(bases_dir) / "policy"), tiny=False, height=side, width=side,
        max_input_pixels=side * side, max_input_side_length=side,
    )
    return dataclasses.replace(base, **changes)


def load_policy_base(
    bases_dir: str | Path, cfg: BasesConfig, *, registry: PolicyRegistry | None = None, **changes: Any
) -> RLPolicy:
    """Check the metadata, then build the policy from :func:`policy_base_config` through the policy registry."""
    check_bases(bases_dir, cfg, "policy")
    return build_policy(policy_base_config(bases_dir, cfg, **changes), registry)


def backbone_model_init(bases_dir: str | Path, cfg: BasesConfig | None = None, head_mlp_size: int | None = None) -> JRMModelInit:
    """The JRM's ``model`` section that starts from the backbone base (``model.backbone``); with ``cfg``, images
    are resized to the side the backbone was pretrained at (``backbone.image_side``). The reward token starts
    as a copy of the answer-opening token (``answer_start``), where the base compares its two images."""
    return JRMModelInit(backbone=str(Path(bases_dir) / "backbone"),
                        backbone_image_side=cfg.backbone.image_side if cfg else None, backbone_head_mlp_size=head_mlp_size,
                        backbone_reward_token_init="answer_start")


def load_backbone_base(bases_dir: str | Path, cfg: BasesConfig, *, prompt: str | None = None) -> JRM:
    """Check the metadata, then start a JRM from the backbone base (fresh reward token and head), its images at
    the side the backbone saw."""
    check_bases(bases_dir, cfg, "backbone")
    return build_model(backbone_model_init(bases_dir, cfg), prompt)
