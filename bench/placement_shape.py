"""Benchmark: the 32-GPU preset's actor placement at its real shape, on a simulated 4-node Ray cluster.

``ray.cluster_utils.Cluster`` starts 4 nodes of 8 logical GPUs and 48 logical CPUs (what each node of the
preset's cluster offers its bundles) on this machine. The preset ``configs/omnigen2_jrm_32gpu.yaml`` is loaded
as a user runs it; its placement group is reserved with :func:`rl.placement.reserve` and, for each of its 32
bundles, a policy worker and a reward actor are started with exactly the Ray options the run gives them
(:func:`rl.hybrid_group.policy_worker_options`, :func:`rl.actor_group.reward_actor_options`). The actors are
placement probes (:mod:`bench.placement_probe`) rather than models: 64 processes with torch and the models
imported need about 64 x 320 MiB of private memory (measured: one actor process after its imports), more than
this 24 GiB machine has; the real actors' placement on several nodes is checked at a smaller shape by
``tests/rl/test_multinode.py`` (2 nodes, a policy worker and its reward actor per GPU, two rounds with tiny
models). Each probe reports its node and GPU ids; :func:`rl.actor_location.check_colocated` checks the preset's
rule (a worker and its reward actor on one GPU, 8 bundles per node, no GPU shared by two bundles), and the
report (per node counts, problems, start-up seconds) goes to ``runs/bench/placement_shape.json``. Then the real
actors run 2 rounds of the toy preset in the same placement on 4 simulated nodes of one GPU each (tiny models
on CPU), and the run's own placement report (:class:`rl.controller.RunResult` ``placement``) is checked too.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ray

from bench.placement_probe import PlacementProbe
from editrl.io import atomic_write_json
from launch.flow_grpo_jrm import load_job_config
from rl.actor_group import reward_actor_options
from rl.actor_location import check_colocated
from rl.config import load_experiment_config
from rl.hybrid_group import policy_worker_options
from rl.placement import reserve

REPO = Path(__file__).resolve().parent.parent
PRESET = REPO / "configs" / "omnigen2_jrm_32gpu.yaml"
OUT = REPO / "runs" / "bench" / "placement_shape.json"


def node_resources(cfg_ray, nodes: int) -> dict[str, float]:
    """Logical CPUs and GPUs of one node, so ``nodes`` nodes hold the preset's bundles exactly."""
    gpus = cfg_ray.num_samplers * (cfg_ray.sampler_num_gpus + cfg_ray.reward_num_gpus) / nodes
    cpus = cfg_ray.num_samplers * (cfg_ray.sampler_num_cpus + cfg_ray.reward_num_cpus) / nodes
    return {"num_cpus": int(cpus), "num_gpus": int(gpus)}


@contextlib.contextmanager
def simulated_cluster(nodes: int, node: dict, **init: Any) -> Iterator[Any]:
    """``nodes`` Ray nodes of resources ``node`` on this machine, the driver connected (``init``: more
    ``ray.init`` arguments); everything is shut down on exit."""
    from ray.cluster_utils import Cluster

    # no idle workers started ahead of time (Ray would start one per logical CPU: 192 processes at 4 x 48)
    os.environ.update(RAY_enable_worker_prestart="0", RAY_prestart_worker_first_driver="0", RAY_USAGE_STATS_ENABLED="0")
    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    try:
        for _ in range(nodes - 1):
            cluster.add_node(**node)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False, **init)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


#: The preset names cluster paths (checkpoints, data) that do not exist here; the probes need none of them.
LOCAL_OVERRIDES = ("policy.checkpoint=null", "policy.tiny=true", "jrm.model.backbone=null", "jrm.model.tiny=true")


def measure_placement(preset: Path = PRESET, nodes: int = 4, overrides: tuple[str, ...] = ()) -> dict:
    """Start the preset's actors (as probes) on ``nodes`` simulated nodes; return the placement report."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "instructions.jsonl"
        data.write_text("")
        cfg = load_experiment_config(preset, [*LOCAL_OVERRIDES, f"data.train_path={data}", *overrides])
    node = {**node_resources(cfg.ray, nodes), "object_store_memory": 80 * 1024**2}
    start = time.perf_counter()
    with simulated_cluster(nodes, node, runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}}):
        cluster_seconds = time.perf_counter() - start
        plan = reserve(cfg.ray, timeout_s=120)
        probe = ray.remote(PlacementProbe)
        workers = [probe.options(**policy_worker_options(cfg, plan, rank)).remote()
                   for rank in range(len(plan.sampler_bundles))]
        rewards = [probe.options(**reward_actor_options(cfg, plan, b)).remote() for b in plan.sampler_bundles]
        policy_locations = ray.get([w.location.remote() for w in workers], timeout=600)
        reward_locations = ray.get([r.location.remote() for r in rewards], timeout=600)
        actors_seconds = time.perf_counter() - start - cluster_seconds
        plan.remove()
    report = check_colocated(policy_locations, reward_locations, gpus_per_bundle=1)
    per_node_gpus = Counter(loc.node_id for loc in policy_locations)
    return {
        "preset": str(preset.relative_to(REPO)) if preset.is_relative_to(REPO) else str(preset),
        "placement": cfg.ray.placement, "strategy": cfg.ray.placement_strategy, "nodes": nodes,
        "node_resources": node, "policy_workers": len(policy_locations), "reward_actors": len(reward_locations),
        "bundles_per_node": sorted(per_node_gpus.values()),
        "worker_options": {"num_gpus": cfg.ray.sampler_num_gpus, "num_cpus": cfg.ray.sampler_num_cpus},
        "reward_options": {"num_gpus": cfg.ray.reward_num_gpus, "num_cpus": cfg.ray.reward_num_cpus},
        "cluster_start_seconds": cluster_seconds, "actors_start_seconds": actors_seconds,
        "report": report.as_dict(), "summary": report.summary(),
    }


def measure_rounds(nodes: int = 4, steps: int = 2) -> dict:
    """Two rounds of the toy preset in the preset's placement (hybrid, a policy worker and its reward actor per
    GPU, gloo) on ``nodes`` simulated nodes of one logical GPU each, real actors with tiny models on CPU; the
    run's own placement report and its rounds."""
    import tempfile

    import torch

    from rl.controller import run_flow_grpo
    from world.tasks import make_tasks, write_instruction_jsonl

    torch.set_num_threads(1)
    node = {"num_cpus": 2, "num_gpus": 1, "object_store_memory": 150 * 1024**2}
    with simulated_cluster(nodes, node) as cluster, tempfile.TemporaryDirectory(prefix="bench_placement_") as tmp:
        data = write_instruction_jsonl(make_tasks("rl", 8, size=32), Path(tmp) / "world")
        overrides = [
            f"data.train_path={data}", f"output_dir={tmp}/run", f"grpo.num_steps={steps}", "grpo.samples_per_chunk=2",
            "ray.placement=hybrid", f"ray.num_samplers={nodes}", "ray.sampler_num_gpus=0.5", "ray.reward_num_gpus=0.5",
            "ray.sampler_num_cpus=1", "ray.reward_num_cpus=1", "ray.learner_backend=gloo", f"ray.address={cluster.address}",
            "policy.device=cpu", "reward.device=cpu", "logging.wandb=false", "logging.progress_bar=false",
            "checkpoint.every_n_steps=1000", "checkpoint.resume=never",
        ]
        start = time.perf_counter()
        result = run_flow_grpo(load_job_config(REPO / "configs" / "toy.yaml", overrides).experiment())
        seconds = time.perf_counter() - start
    return {
        "nodes": nodes, "policy_workers": nodes, "steps_completed": result.steps_completed,
        "adapter_version": result.adapter_version, "seconds": seconds,
        "round_seconds": [s.timing.total for s in result.summaries], "placement": result.placement,
    }


def main() -> dict:
    result = measure_placement()
    result["rounds"] = measure_rounds()
    atomic_write_json(OUT, result)
    rounds = result["rounds"]
    print(f"2 rounds, {rounds['policy_workers']} policy workers on {rounds['nodes']} nodes (tiny models): "
          f"{rounds['steps_completed']} rounds, adapter v{rounds['adapter_version']}, placement "
          f"{'as planned' if rounds['placement'].get('ok') else rounds['placement']}")
    print(f"{result['preset']}: {result['policy_workers']} policy workers + {result['reward_actors']} reward actors "
          f"on {result['nodes']} nodes, bundles per node {result['bundles_per_node']}")
    print(f"placement {'as the preset says' if result['report']['ok'] else 'WRONG'}: {result['summary']}")
    print(f"cluster up in {result['cluster_start_seconds']:.1f} s, actors placed in {result['actors_start_seconds']:.1f} s")
    if not result["report"]["ok"] or not rounds["placement"].get("ok"):
        raise RuntimeError(f"placement differs from the plan: {result['report']['problems'][:5]} "
                           f"{rounds['placement'].get('problems', [])[:5]}")
    return result


if __name__ == "__main__":
    main()
