"""Actor placement: one placement group, a bundle per sampler (shared with its reward actor) and per learner.

Bundle i < num_samplers holds sampler i and reward actor i: their fractional GPUs add up to at most one GPU,
so they share a device and the reward model scores chunk n while the policy samples chunk n+1. Bundles after
that hold one learner worker each (split placement only; with ``ray.placement: hybrid`` there are none: the
policy worker of bundle i is sampler and learner rank i). On CPU-only clusters the bundles hold CPU fractions
only.
"""

from __future__ import annotations

from dataclasses import dataclass

from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from rl.config import RayConfig


@dataclass
class PlacementPlan:
    """The reserved placement group and which bundle each actor goes to."""

    group: PlacementGroup
    sampler_bundles: list[int]
    learner_bundles: list[int]

    def strategy(self, bundle_index: int) -> PlacementGroupSchedulingStrategy:
        return PlacementGroupSchedulingStrategy(placement_group=self.group, placement_group_bundle_index=bundle_index)

    def remove(self) -> None:
        remove_placement_group(self.group)


def _bundle(cpus: float, gpus: float) -> dict[str, float]:
    bundle = {"CPU": cpus}
    if gpus > 0:
        bundle["GPU"] = gpus
    return bundle


def bundle_specs(cfg: RayConfig) -> list[dict[str, float]]:
    """The resource bundles: samplers / hybrid policy workers (+ co-located reward actors) first, then learner
    workers (split placement)."""
    sampler = _bundle(cfg.sampler_num_cpus + cfg.reward_num_cpus, cfg.sampler_num_gpus + cfg.reward_num_gpus)
    learner = _bundle(cfg.learner_num_cpus, cfg.learner_num_gpus)
    return [dict(sampler) for _ in range(cfg.num_samplers)] + [dict(learner) for _ in range(num_learner_bundles(cfg))]


def num_learner_bundles(cfg: RayConfig) -> int:
    """Bundles of their own for learner workers: ``num_learner_workers`` in split placement, none in hybrid."""
    return 0 if cfg.hybrid else cfg.num_learner_workers


def reserve(cfg: RayConfig, *, timeout_s: float = 600.0) -> PlacementPlan:
    """Create the placement group and wait until it is scheduled (a clear error if it never is)."""
    specs = bundle_specs(cfg)
    group = placement_group(specs, strategy=cfg.placement_strategy, name="")
    if not group.wait(timeout_seconds=timeout_s):
        remove_placement_group(group)
        raise RuntimeError(
            f"could not reserve {len(specs)} bundles {specs} with strategy {cfg.placement_strategy} within "
            f"{timeout_s:.0f}s; check ray.* resources against the cluster"
        )
    n = cfg.num_samplers
    return PlacementPlan(group, list(range(n)), list(range(n, n + num_learner_bundles(cfg))))
