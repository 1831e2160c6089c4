"""The Ray pipeline on a local cluster: distributed learner equivalence, end-to-end run, a killed sampler."""

import dataclasses
import json

import pytest
import ray
import torch

from reward.registry import default_registry
from rl.actor_group import ActorGroup
from rl.config import EvalHookConfig
from rl.controller import chunk_requests, round_advantages, run_flow_grpo
from rl.data import InstructionDataset, load_reference_images
from rl.failure_budget import RewardFailureBudgetError
from rl.learner import LearnerWorker
from rl.placement import reserve
from rl.sampler import PolicySampler
from rl.types import LearnChunk
from tests.rl.helpers import toy_config
from world.pairs import write_preference_pairs
from world.registries import world_hook_registry
from world.tasks import make_tasks, write_instruction_jsonl

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _rounds(cfg):
    return [json.loads(line) for line in (cfg.output_path / "rounds.jsonl").read_text().splitlines()]


def test_two_gloo_learners_on_halves_equal_one_learner_on_the_whole(tmp_path):
    cfg = toy_config(tmp_path, "grpo.num_updates_per_step=2")
    sampler = PolicySampler(cfg.policy, max_weight_lag=0)
    single = LearnerWorker(cfg.policy, cfg.grpo)
    start = single.weight_payload()
    sampler.load_weights(start)
    dataset = InstructionDataset.from_jsonl(cfg.data.train_path, seed=0)
    records = dataset.take(2)
    requests = chunk_requests(records, [load_reference_images(r) for r in records], step=0, group_size=4,
                              samples_per_chunk=4, seed=0, learner_version=0)
    rollouts = [sampler.sample(r)[0] for r in requests]
    chunks = []
    for i in range(len(rollouts)):
        rewards = torch.tensor([0.0, 1.0, 3.0, 0.5]) * (i + 1)
        valid = torch.ones(4, dtype=torch.bool)
        adv = (rewards - rewards.mean()) / (rewards.std(unbiased=False) + 1e-4)
        idx = torch.stack([torch.randperm(4, generator=torch.Generator().manual_seed(10 * i + j))[:2].sort().values for j in range(4)])
        # two minibatches over the round; worker 1's chunk lies wholly in the first, so in the second optimizer
        # step it contributes a zero gradient but still steps with the group
        minibatch = torch.tensor([1, 1, 0, 1]) if i == 0 else torch.zeros(4, dtype=torch.long)
        chunks.append(LearnChunk(adv, valid, idx, minibatch))
    n_elements, n_samples = [5 * 2, 3 * 2], 8
    single.learn(rollouts, chunks, n_elements, n_samples)

    remote = ray.remote(LearnerWorker)
    workers = [remote.options(num_cpus=0.25).remote(cfg.policy, cfg.grpo, rank=r, world_size=2) for r in range(2)]
    host, port = ray.get(workers[0].rendezvous_address.remote())
    ray.get([w.init_process_group.remote(host, port, "gloo") for w in workers])
    ray.get([w.load_state.remote(start.tensors, None, 0) for w in workers])
    refs = [w.learn.remote([ray.put(rollouts[r])], [chunks[r]], n_elements, n_samples) for r, w in enumerate(workers)]
    stats = ray.get(refs)
    assert stats[0].loss == pytest.approx(stats[1].loss)
    assert stats[0].optimizer_steps == stats[1].optimizer_steps == 2
    distributed = [ray.get(w.weight_payload.remote()).tensors for w in workers]
    expected = single.weight_payload().tensors
    changed = 0
    for name, value in expected.items():
        assert torch.allclose(distributed[0][name], value, atol=1e-6, rtol=1e-5), name
        assert torch.equal(distributed[0][name], distributed[1][name]), name
        changed += int(not torch.equal(value, start.tensors[name]))
    assert changed > 0
    ray.get([w.shutdown.remote() for w in workers])
    for w in workers:
        ray.kill(w)


def test_end_to_end_overlapped_run(tmp_path):
    pairs_dir = tmp_path / "pairs"
    write_preference_pairs(make_tasks("pairs_eval", 2), pairs_dir, seed=0, pairs_per_task=2)
    heldout = write_instruction_jsonl(make_tasks("heldout", 2), tmp_path / "heldout")
    hooks = [
        EvalHookConfig(kind="reward_pair_accuracy", every_n_steps=2, path=str(pairs_dir / "pairs.jsonl")),
        EvalHookConfig(kind="world_oracle", every_n_steps=3, path=str(heldout)),
    ]
    cfg = toy_config(tmp_path, "grpo.num_steps=3", "checkpoint.every_n_steps=2", "logging.log_images_every_n_steps=2")
    cfg = dataclasses.replace(cfg, eval_hooks=hooks)
    result = run_flow_grpo(cfg, hook_registry=world_hook_registry())
    # pair accuracy every 2 steps (after round 1), the world oracle every 3 (after round 2)
    assert sorted(result.eval_metrics) == [1, 2]
    assert 0.0 <= result.eval_metrics[1]["reward_pairs/accuracy_overall"] <= 1.0
    assert 1.0 <= result.eval_metrics[2]["world_oracle/if"] <= 4.0
    assert result.steps_completed == 3 and result.adapter_version == 3
    assert len(result.summaries) == 3
    for s in result.summaries:
        assert s.n_samples == cfg.grpo.instructions_per_step * cfg.grpo.group_size
        assert s.learner is not None and s.sync_bytes == result.sync_bytes > 0
        # every phase was timed, inside the round's total; idle is the rest
        t = s.timing
        assert min(t.sample, t.reward, t.learn, t.sync) > 0.0
        assert t.idle == pytest.approx(t.total - t.sample - t.reward - t.learn - t.sync) and t.idle >= 0.0
    # fresh on-policy round: the learner re-scores what the sampler drew, so the ratio is 1 up to float32
    # rounding (batch layouts differ between sampling and re-scoring; the clip range is 1e-4 wide)
    assert result.summaries[0].learner.first_update_ratio_max_dev <= 2.4e-7
    assert result.last_checkpoint.name == "step_00000003"
    rounds = _rounds(cfg)
    ids = [rid for r in rounds for rid in r["record_ids"]]
    assert ids == [r.record_id for r in InstructionDataset.from_jsonl(cfg.data.train_path, seed=0).take(6)]
    assert (cfg.output_path / "samples" / "step_00000001_0.png").is_file()


def test_killed_sampler_or_reward_actor_is_replaced_and_round_completes(tmp_path):
    cfg = toy_config(tmp_path, "grpo.samples_per_chunk=4", "grpo.max_weight_lag=0")
    plan = reserve(cfg.ray)
    actors = ActorGroup(cfg, plan)
    try:
        payload = actors.initial_payload()
        actors.wait_sync(actors.broadcast(ray.put(payload), payload.num_bytes))
        records = InstructionDataset.from_jsonl(cfg.data.train_path, seed=0).take(2)
        requests = chunk_requests(records, [load_reference_images(r) for r in records], step=0, group_size=4,
                                  samples_per_chunk=4, seed=0, learner_version=0)
        pending = actors.submit(requests)
        ray.kill(actors.samplers[0], no_restart=False)  # dies with both chunks in flight or queued
        timings: dict[str, float] = {}
        gathered = actors.gather(pending, timings=timings)
        assert actors.reissued_chunks >= 1
        assert timings["sample"] > 0.0 and timings["reward"] >= 0.0
        assert [g.index for g in gathered] == [0, 1]
        assert all(torch.isfinite(g.reward.reward).all() for g in gathered)
        adv = round_advantages([g.request for g in gathered], [g.reward for g in gathered],
                               num_steps=cfg.policy.num_inference_steps, cfg_grpo=cfg.grpo, step=0)
        update = actors.wait_learn(actors.learn(gathered, adv.chunks, adv.minibatch_elements, adv.n_kept))
        assert update.stats.version == 1
        actors.wait_sync(actors.broadcast(update.payload_ref, payload.num_bytes))
        assert ray.get(actors.samplers[0].get_version.remote()) == 1

        # the reward actor dies with the next round's scoring queued: restarted, chunks re-issued
        before = actors.reissued_chunks
        for r in requests:
            r.learner_version = 1
        pending = actors.submit(requests)
        ray.kill(actors.reward_actors[0], no_restart=False)
        regathered = actors.gather(pending)
        assert actors.reissued_chunks > before
        assert all(torch.isfinite(g.reward.reward).all() for g in regathered)
    finally:
        actors.kill_all()
        plan.remove()


class _AlwaysFailingReward:
    """A reward model whose every call raises (a dead endpoint, a broken checkpoint)."""

    dimensions = ("instruction_following", "visual_quality")

    def score(self, sources, edits, instructions):
        raise RuntimeError("reward backend unreachable")


def test_an_always_failing_reward_stops_the_run_without_claiming_progress(tmp_path):
    registry = default_registry().extended(broken=lambda reward_cfg: _AlwaysFailingReward())
    cfg = toy_config(tmp_path, "grpo.num_steps=4", "checkpoint.every_n_steps=1", "reward.kind=jrm")
    cfg = dataclasses.replace(cfg, reward=dataclasses.replace(cfg.reward, kind="broken"))
    with pytest.raises(RewardFailureBudgetError) as err:
        run_flow_grpo(cfg, registry)
    message = str(err.value)
    assert "step 0" in message and "'broken'" in message and "reward backend unreachable" in message
    assert not (cfg.output_path / "checkpoints").exists() or not list((cfg.output_path / "checkpoints").iterdir())
