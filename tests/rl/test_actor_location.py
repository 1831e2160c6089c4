"""The placement rule of :func:`rl.actor_location.check_colocated` on hand-made locations."""

from rl.actor_location import ActorLocation, check_colocated, current_location


def _at(node: str, *gpus: str) -> ActorLocation:
    return ActorLocation(node, tuple(gpus), 1)


def test_the_planned_hybrid_shape_passes():
    policy = [_at(f"node{n}", str(g)) for n in range(2) for g in range(4)]
    report = check_colocated(policy, list(policy), gpus_per_bundle=1)
    assert report.ok and report.gpus == 8
    assert report.nodes == {"node0": {"policy": 4, "reward": 4, "learner": 0},
                            "node1": {"policy": 4, "reward": 4, "learner": 0}}
    assert "2 node(s), 8 GPU(s)" in report.summary() and "as planned" in report.summary()


def test_each_breach_is_named():
    policy = [_at("a", "0"), _at("a", "1"), _at("b", "0")]
    reward = [_at("b", "0"), _at("a", "0"), _at("b", "0")]  # bundle 0 on another node, bundle 1 on another GPU
    report = check_colocated(policy, reward, [_at("a", "1")], gpus_per_bundle=1)
    assert not report.ok
    assert any(p.startswith("bundle 0: policy actor on node a") for p in report.problems)
    assert any(p.startswith("bundle 1: policy actor on GPUs ['1'], reward actor on ['0']") for p in report.problems)
    assert "GPU 1 of node a is held by 2 bundles" in report.problems  # a learner on a policy worker's GPU
    assert check_colocated([_at("a")], [_at("a")], gpus_per_bundle=1).problems == [
        "bundle 0: policy actor holds 0 GPU(s), expected 1"]
    assert check_colocated([_at("a", "0")], []).problems == ["1 policy actors but 0 reward actors"]


def test_a_reward_actor_without_gpus_may_share_the_node():
    assert check_colocated([_at("a", "0")], [_at("a")], gpus_per_bundle=1).ok


def test_outside_ray_the_location_is_local():
    import ray

    if ray.is_initialized():
        ray.shutdown()
    assert current_location().node_id == "local" and current_location().gpu_ids == ()
