"""Where each actor of a run landed (node, GPUs) and whether that is where the placement plan puts it.

Every actor class of a run (policy sampler, learner worker, hybrid policy worker, reward actor) mixes in
:class:`Locatable`, so the driver can ask each one ``location()`` once the actors start: the controller logs the
summary and returns it in :class:`rl.controller.RunResult`, and ``make bench`` checks the 32-GPU preset's shape
with it. :func:`check_colocated` is the rule of both placements: bundle ``i``'s policy actor (sampler or hybrid
worker) and reward actor share one node and the same GPUs, and no two bundles share a GPU.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class ActorLocation:
    """One actor's node, the GPU ids Ray assigned it (empty on CPU) and its process id."""

    node_id: str
    gpu_ids: tuple[str, ...]
    pid: int


def current_location() -> ActorLocation:
    """The calling Ray actor's location (outside Ray: node ``local``, no GPUs)."""
    import ray

    if not ray.is_initialized():
        return ActorLocation("local", (), os.getpid())
    return ActorLocation(ray.get_runtime_context().get_node_id(), tuple(str(g) for g in ray.get_gpu_ids()), os.getpid())


class Locatable:
    """Mixin for actor classes: ``location()`` answers where the actor runs."""

    def location(self) -> ActorLocation:
        return current_location()


@dataclass
class PlacementReport:
    """Where a run's actors are, per node, and every way that differs from the plan.

    nodes:    node id -> {"policy": n, "reward": n, "learner": n} actors there.
    gpus:     distinct (node, GPU) pairs the policy actors hold.
    problems: human-readable breaches of :func:`check_colocated`'s rule (empty when the placement is right).
    """

    nodes: dict[str, dict[str, int]]
    gpus: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}

    def summary(self) -> str:
        per_node = "; ".join(
            f"{node[:8]}: " + ", ".join(f"{n} {role}" for role, n in sorted(counts.items()) if n)
            for node, counts in sorted(self.nodes.items())
        )
        verdict = "as planned" if self.ok else f"{len(self.problems)} problem(s): {self.problems[:3]}"
        return f"{len(self.nodes)} node(s), {self.gpus} GPU(s) with policy actors [{per_node}]; {verdict}"


def check_colocated(
    policy: list[ActorLocation], reward: list[ActorLocation], learners: list[ActorLocation] = (),
    *, gpus_per_bundle: int | None = None,
) -> PlacementReport:
    """Check bundle ``i``'s policy actor ``policy[i]`` and reward actor ``reward[i]`` share a node (and, when both
    hold GPUs, the same ones), and no two bundles (nor a learner) share a GPU. ``gpus_per_bundle``: GPU ids each
    policy actor must hold (a fractional share holds one; None: any)."""
    problems: list[str] = []
    if len(policy) != len(reward):
        problems.append(f"{len(policy)} policy actors but {len(reward)} reward actors")
    for i, (p, r) in enumerate(zip(policy, reward, strict=False)):
        if p.node_id != r.node_id:
            problems.append(f"bundle {i}: policy actor on node {p.node_id[:8]}, reward actor on {r.node_id[:8]}")
        elif p.gpu_ids and r.gpu_ids and p.gpu_ids != r.gpu_ids:  # an actor without GPUs may share any node
            problems.append(f"bundle {i}: policy actor on GPUs {list(p.gpu_ids)}, reward actor on {list(r.gpu_ids)}")
        if gpus_per_bundle is not None and len(p.gpu_ids) != gpus_per_bundle:
            problems.append(f"bundle {i}: policy actor holds {len(p.gpu_ids)} GPU(s), expected {gpus_per_bundle}")
    holders = Counter((a.node_id, g) for a in [*policy, *learners] for g in a.gpu_ids)
    problems += [f"GPU {g} of node {node[:8]} is held by {n} bundles" for (node, g), n in holders.items() if n > 1]
    nodes: dict[str, dict[str, int]] = {}
    for role, actors in (("policy", policy), ("reward", reward), ("learner", learners)):
        for a in actors:
            nodes.setdefault(a.node_id, {"policy": 0, "reward": 0, "learner": 0})[role] += 1
    gpus = len({(a.node_id, g) for a in policy for g in a.gpu_ids})
    return PlacementReport(nodes, gpus, problems)
