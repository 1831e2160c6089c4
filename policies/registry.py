"""Build an RL policy from its config; other packages register more policy families on an explicit registry.

Built-in kinds: ``omnigen2`` (:func:`policies.omnigen2.config.build_pipeline`), ``flux_kontext``
(:func:`policies.flux_kontext.build_flux_kontext`) and ``qwen_image_edit``
(:func:`policies.qwen_image_edit.build_qwen_image_edit`); config :class:`policies.policy_config.PolicyConfig`.
A builder takes the policy config and returns an :class:`policies.base.RLPolicy` whose ``sampling`` defaults
come from the config. There is no global registry: :func:`default_policy_registry` returns a fresh one; extend a
copy to add a family (``default_policy_registry().extended(mine=build_mine)``) and hand it to ``run_flow_grpo``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from editrl.registry import Registry
from policies.base import RLPolicy
from policies.flux_kontext import build_flux_kontext
from policies.omnigen2.config import build_pipeline
from policies.qwen_image_edit import build_qwen_image_edit

#: policy config -> policy. The config is the experiment's ``policy`` section (it has a ``kind``).
PolicyBuilder = Callable[[Any], RLPolicy]


class PolicyRegistry(Registry[PolicyBuilder]):
    """Policy kinds -> builders; :meth:`build` makes the policy a config names (``cfg.kind``)."""

    def __init__(self, builders: dict[str, PolicyBuilder] | None = None) -> None:
        super().__init__("policy", builders)

    def require(self, name: str, key: str = "policy.kind") -> None:
        super().require(name, key)

    def get(self, name: str, key: str = "policy.kind") -> PolicyBuilder:
        return super().get(name, key)

    def build(self, cfg: Any) -> RLPolicy:
        """The policy ``cfg`` describes, built by the builder registered under ``cfg.kind``."""
        return self.get(cfg.kind)(cfg)


def default_policy_registry() -> PolicyRegistry:
    """A fresh registry with the built-in kinds (each call returns a new, independent object)."""
    return PolicyRegistry(
        {"omnigen2": build_pipeline, "flux_kontext": build_flux_kontext, "qwen_image_edit": build_qwen_image_edit}
    )


def build_policy(cfg: Any, registry: PolicyRegistry | None = None) -> RLPolicy:
    """The policy ``cfg`` names, from ``registry`` (default: the built-in kinds)."""
    return (registry or default_policy_registry()).build(cfg)
