"""The JRM a training run starts from (:class:`JRMModelInit`): a checkpoint, a local backbone or a tiny model."""

from __future__ import annotations

from typing import Any

from reward.jrm.train_config import JRMModelInit


def build_model(init: JRMModelInit, prompt: str | None = None) -> Any:
    """The JRM to start from (see :class:`JRMModelInit`), with the evaluation prompt ``prompt`` (``jrm.prompt``).

    prompt None: a backbone gets ``paper``, a tiny model ``init.tiny_prompt``, a checkpoint its own; a
    checkpoint trained with another prompt than a given one refuses (ConfigError).
    """
    from reward.jrm.model import JRM, JRMConfig
    from reward.jrm.prompts import PAPER

    init.require_choice()
    if init.checkpoint:
        return JRM.from_pretrained(init.checkpoint, prompt=prompt)
    if init.backbone:
        init.validate()
        sizes: dict[str, int] = {}
        if init.backbone_image_side is not None:
            sizes.update(min_pixels=init.backbone_image_side**2, max_pixels=init.backbone_image_side**2)
        if init.backbone_head_mlp_size is not None:
            sizes["head_mlp_size"] = init.backbone_head_mlp_size
        token_init = init.backbone_reward_token_init or "mean"
        return JRM.from_backbone(init.backbone, JRMConfig(prompt=prompt or PAPER, reward_token_init=token_init, **sizes))
    return JRM.build_tiny(
        seed=init.tiny_seed,
        config=tiny_jrm_config(init, prompt),
        hidden_size=init.tiny_hidden_size,
        num_layers=init.tiny_num_layers,
        vision_hidden_size=init.tiny_vision_hidden_size,
        vision_depth=init.tiny_vision_depth,
    )


def tiny_jrm_config(init: JRMModelInit, prompt: str | None = None) -> Any:
    """The :class:`JRMConfig` of a tiny JRM: head width from ``init``; image budget ``tiny_image_side``^2 if set;
    ``prompt`` (None: ``init.tiny_prompt``)."""
    from reward.jrm.model import JRMConfig
    from reward.jrm.tiny import TINY_JRM_MAX_PIXELS, TINY_JRM_MIN_PIXELS

    init.validate()
    side = init.tiny_image_side
    min_pixels, max_pixels = (TINY_JRM_MIN_PIXELS, TINY_JRM_MAX_PIXELS) if side is None else (side * side, side * side)
    return JRMConfig(
        head_mlp_size=init.tiny_head_mlp_size, min_pixels=min_pixels, max_pixels=max_pixels, max_region_index=7,
        prompt=prompt or init.tiny_prompt,
    )
