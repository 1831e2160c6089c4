"""`make bench`'s placement check of the 32-GPU preset, at a smaller shape: the preset's Ray options on a
simulated 2-node cluster, 4 bundles (probes, no models)."""

import pytest

from bench.placement_shape import measure_placement, node_resources
from rl.config import RayConfig


def test_node_resources_hold_the_presets_bundles_exactly():
    ray_cfg = RayConfig(placement="hybrid", num_samplers=32, sampler_num_gpus=0.5, reward_num_gpus=0.5,
                        sampler_num_cpus=4, reward_num_cpus=2)
    assert node_resources(ray_cfg, 4) == {"num_cpus": 48, "num_gpus": 8}


@pytest.mark.slow
def test_the_presets_options_place_a_worker_and_its_reward_actor_on_one_gpu():
    result = measure_placement(nodes=2, overrides=("ray.num_samplers=4",))
    assert result["policy_workers"] == result["reward_actors"] == 4
    assert result["bundles_per_node"] == [2, 2] and result["node_resources"]["num_gpus"] == 2
    report = result["report"]
    assert report["ok"] and report["gpus"] == 4 and len(report["nodes"]) == 2
    assert all(counts == {"policy": 2, "reward": 2, "learner": 0} for counts in report["nodes"].values())
    assert result["worker_options"] == {"num_gpus": 0.5, "num_cpus": 4} and result["strategy"] == "PACK"
