"""Hybrid placement on a local Ray cluster: update equivalence, a run with resume, killed policy workers."""

import json
import time

import pytest
import ray
import torch

from rl.actor_group import GatheredChunk
from rl.config import ConfigError
from rl.controller import chunk_requests, round_advantages, run_flow_grpo
from rl.data import InstructionDataset, load_reference_images
from rl.hybrid_group import HybridActorGroup, PolicyWorkerLostError
from rl.learner import LearnerWorker
from rl.placement import bundle_specs, reserve
from rl.sampler import PolicySampler
from tests.rl.helpers import toy_config

HYBRID = ("ray.placement=hybrid", "ray.num_samplers=2", "grpo.max_weight_lag=0")


def test_hybrid_placement_reserves_one_bundle_per_policy_worker(tmp_path):
    cfg = toy_config(tmp_path, *HYBRID, "ray.num_learner_workers=3")
    assert bundle_specs(cfg.ray) == [{"CPU": 0.5}, {"CPU": 0.5}]  # learner_* keys unused in hybrid
    with pytest.raises(ConfigError, match="placement"):
        toy_config(tmp_path, "ray.placement=fused")


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _round(cfg, actors, step=0):
    records = InstructionDataset.from_jsonl(cfg.data.train_path, seed=0).take(cfg.grpo.instructions_per_step)
    requests = chunk_requests(
        records, [load_reference_images(r) for r in records], step=step, group_size=cfg.grpo.group_size,
        samples_per_chunk=cfg.grpo.samples_per_chunk, seed=0, learner_version=step,
    )
    return requests, actors.submit(requests)


@pytest.mark.slow
def test_two_hybrid_workers_equal_one_learner_on_the_whole_batch(tmp_path, ray_cluster):
    cfg = toy_config(tmp_path, *HYBRID, "grpo.num_updates_per_step=2")
    single = LearnerWorker(cfg.policy, cfg.grpo)
    sampler = PolicySampler(cfg.policy, max_weight_lag=0)
    start = single.weight_payload()
    sampler.load_weights(start)
    plan = reserve(cfg.ray)
    actors = HybridActorGroup(cfg, plan)
    try:
        actors.wait_sync(actors.broadcast(ray.put(start), start.num_bytes))
        requests, pending = _round(cfg, actors)
        assert [c.worker for c in pending] == [0, 1]  # one chunk per worker
        gathered: list[GatheredChunk] = actors.gather(pending)
        # only keys came back: the rollouts stayed in the workers that drew them
        assert [ray.get(g.rollout_ref) for g in gathered] == [r.seed for r in requests]
        adv = round_advantages([g.request for g in gathered], [g.reward for g in gathered],
                               num_steps=cfg.policy.num_inference_steps, cfg_grpo=cfg.grpo, step=0)
        assert adv.n_kept > 0
        update = actors.wait_learn(actors.learn(gathered, adv.chunks, adv.minibatch_elements, adv.n_kept))
        assert update.payload_ref is None and update.stats.version == 1
        assert ray.get([w.get_version.remote() for w in actors.workers]) == [1, 1]
        assert ray.get([w.held_rollouts.remote() for w in actors.workers]) == [0, 0]
        assert actors.broadcast(update.payload_ref, 0) == []  # nothing travels after an update

        # the same chunks, sampled in one process (same seeds and weights) and trained by one learner
        rollouts = [sampler.sample(r)[0] for r in requests]
        expected_stats = single.learn(rollouts, adv.chunks, adv.minibatch_elements, adv.n_kept)
        assert update.stats.optimizer_steps == expected_stats.optimizer_steps == 2
        assert update.stats.loss == pytest.approx(expected_stats.loss, abs=1e-6)
        expected = single.weight_payload().tensors
        got = [ray.get(w.weight_payload.remote()).tensors for w in actors.workers]
        changed = 0
        for name, value in expected.items():
            assert torch.allclose(got[0][name], value, atol=1e-6, rtol=0), name
            assert torch.equal(got[0][name], got[1][name]), name
            changed += int(not torch.equal(value, start.tensors[name]))
        assert changed > 0
    finally:
        actors.kill_all()
        plan.remove()


@pytest.mark.slow
def test_hybrid_run_writes_rounds_and_checkpoint_and_resumes(tmp_path, ray_cluster):
    # max_weight_lag = 1: the next round is queued on each worker behind its update (no stale weights)
    lag1 = (*HYBRID, "grpo.max_weight_lag=1", "checkpoint.every_n_steps=1")
    cfg = toy_config(tmp_path, *lag1, "grpo.num_steps=2")
    result = run_flow_grpo(cfg)
    assert result.steps_completed == 2 and result.adapter_version == 2
    assert result.last_checkpoint.name == "step_00000002"
    assert all(s.learner is not None and s.sync_bytes == 0 for s in result.summaries)
    # each worker re-scores what it drew with the weights it drew them with (on-policy even with lag 1):
    # ratio 1 up to float32 rounding
    assert all(s.learner.first_update_ratio_max_dev <= 2.4e-7 for s in result.summaries)
    rounds = [json.loads(line) for line in (cfg.output_path / "rounds.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rounds] == [0, 1]

    more = toy_config(tmp_path, *lag1, "grpo.num_steps=3")
    resumed = run_flow_grpo(more)
    assert resumed.start_step == 2 and resumed.steps_completed == 3 and resumed.adapter_version == 3
    rounds = [json.loads(line) for line in (cfg.output_path / "rounds.jsonl").read_text().splitlines()]
    ids = [rid for r in rounds for rid in r["record_ids"]]
    assert ids == [r.record_id for r in InstructionDataset.from_jsonl(cfg.data.train_path, seed=0).take(6)]


@pytest.mark.slow
def test_a_policy_worker_killed_while_sampling_is_replaced_and_its_chunks_reissued(tmp_path, ray_cluster):
    cfg = toy_config(tmp_path, *HYBRID, "grpo.samples_per_chunk=2")  # 4 chunks: 2 per worker
    plan = reserve(cfg.ray)
    actors = HybridActorGroup(cfg, plan)
    try:
        payload = ray.get(actors.workers[0].weight_payload.remote())
        actors.wait_sync(actors.broadcast(ray.put(payload), payload.num_bytes))
        _, pending = _round(cfg, actors)
        assert [c.worker for c in pending] == [0, 1, 0, 1]
        ray.kill(actors.workers[1], no_restart=True)  # its chunks die queued or in flight
        gathered = actors.gather(pending)
        assert actors.replaced_workers == 1 and actors.reissued_chunks >= 2
        assert [g.index for g in gathered] == [0, 1, 2, 3]
        assert all(torch.isfinite(g.reward.reward).all() for g in gathered)
        adv = round_advantages([g.request for g in gathered], [g.reward for g in gathered],
                               num_steps=cfg.policy.num_inference_steps, cfg_grpo=cfg.grpo, step=0)
        update = actors.wait_learn(actors.learn(gathered, adv.chunks, adv.minibatch_elements, adv.n_kept))
        assert update.stats.version == 1
        # the new rank joined the rebuilt group with the survivor's weights: both stepped identically
        got = [ray.get(w.weight_payload.remote()).tensors for w in actors.workers]
        assert all(torch.equal(got[0][k], got[1][k]) for k in got[0])
        assert any(not torch.equal(got[0][k], payload.tensors[k]) for k in got[0])
    finally:
        actors.kill_all()
        plan.remove()


@pytest.mark.slow
def test_a_policy_worker_killed_before_the_update_fails_the_round_without_hanging(tmp_path, ray_cluster):
    cfg = toy_config(tmp_path, *HYBRID)
    plan = reserve(cfg.ray)
    actors = HybridActorGroup(cfg, plan)
    try:
        payload = ray.get(actors.workers[0].weight_payload.remote())
        actors.wait_sync(actors.broadcast(ray.put(payload), payload.num_bytes))
        _, pending = _round(cfg, actors)
        gathered = actors.gather(pending)
        adv = round_advantages([g.request for g in gathered], [g.reward for g in gathered],
                               num_steps=cfg.policy.num_inference_steps, cfg_grpo=cfg.grpo, step=0)
        # rank 0 would wait in the all-reduce for ever; every worker is stopped instead
        ray.kill(actors.workers[1], no_restart=True)
        started = time.monotonic()
        with pytest.raises(PolicyWorkerLostError, match="policy worker 1 died while learning.*resume=auto"):
            actors.wait_learn(actors.learn(gathered, adv.chunks, adv.minibatch_elements, adv.n_kept))
        assert time.monotonic() - started < 60
        with pytest.raises(ray.exceptions.RayActorError):  # the survivor was stopped, not left blocked
            ray.get(actors.workers[0].get_version.remote(), timeout=30)
    finally:
        actors.kill_all()
        plan.remove()
