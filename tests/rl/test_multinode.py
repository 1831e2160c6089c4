"""Stage 1 -> stage 2 through the launcher on a simulated two-node Ray cluster (``ray.cluster_utils.Cluster``).

Two nodes with 2 CPUs and one logical GPU each; the preset's hybrid shape in small: one bundle per policy worker,
each holding the worker (0.5 GPU) and its reward actor (0.5 GPU), STRICT_SPREAD so one bundle lands on each
node; the models are tiny and run on CPU. Both nodes share this machine's file system, which is what a shared
mount looks like, so ``jrm.output_dir`` is absolute with ``jrm.shared_output_dir: true``. Each reward actor
records (through a wrapping reward factory) the node it runs on, the checkpoint it loaded and its score of a
fixed pair, which must equal the score of stage 1's final JRM loaded here. The launcher's ``main`` runs as a
user runs it (its ``ensure_ray`` keeps the driver's connection to the cluster; its shared-storage probe runs on
both nodes); only ``run_flow_grpo`` is wrapped to hand it that reward registry.
"""

import functools
import json
import os
import uuid
from pathlib import Path

import pytest
import ray
import torch
from PIL import Image

import rl.controller as controller
from launch import flow_grpo_jrm
from reward.jrm.model import JRM
from reward.registry import RewardModelConfig, RewardRegistry, build_reward_model, default_registry
from rl.checkpoint import latest_checkpoint
from tests.reward.test_annotate import chat_server  # noqa: F401 (the scripted OpenAI-compatible teacher)
from tests.rl.helpers import TOY, write_toy_instructions
from world.pairs import write_preference_pairs
from world.tasks import make_tasks


def _fixed_input(pairs: str) -> tuple[list, list, list]:
    record = json.loads(Path(pairs).read_text().splitlines()[0])
    source, edit = (Image.open(Path(pairs).parent / record[k]).convert("RGB") for k in ("path_src", "path1"))
    return [source], [edit], [record["prompt"]]


def _recording_jrm(record_dir: str, pairs: str, cfg: RewardModelConfig):
    """The built-in ``jrm`` kind, and a record of where it was built, from what, and its score of a fixed pair."""
    model = default_registry().build(cfg)
    context = ray.get_runtime_context()
    record = {
        "pid": os.getpid(), "node_id": context.get_node_id(), "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
        "placement_group": context.get_placement_group_id(), "checkpoint": cfg.checkpoint,
        "mu": model.score(*_fixed_input(pairs)).mu.tolist(),
    }
    (Path(record_dir) / f"{uuid.uuid4().hex}.json").write_text(json.dumps(record))
    return model


@pytest.fixture
def two_nodes(monkeypatch):
    from ray.cluster_utils import Cluster

    if ray.is_initialized():  # a local cluster an earlier test left running (run_flow_grpo does not stop Ray)
        ray.shutdown()
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    node = {"num_cpus": 2, "num_gpus": 1, "object_store_memory": 150 * 1024**2}
    cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    cluster.add_node(**node)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.mark.slow
def test_stage1_jrm_reaches_the_reward_actors_on_both_nodes(tmp_path, two_nodes, chat_server, monkeypatch, capsys):  # noqa: F811
    nodes = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
    assert len(nodes) == 2 and ray.cluster_resources()["GPU"] == 2
    pairs = str(write_preference_pairs(make_tasks("pairs", 4), tmp_path / "pairs", seed=0, pairs_per_task=2).path)
    data = write_toy_instructions(tmp_path / "world", 4)
    jrm_out, rl_out, records = tmp_path / "shared" / "jrm", tmp_path / "run", tmp_path / "records"
    records.mkdir()
    registry = RewardRegistry({"jrm": functools.partial(_recording_jrm, str(records), pairs)})
    original = controller.run_flow_grpo

    def with_recording_registry(cfg, reward_registry=None, **kwargs):  # the launcher imports it when it runs
        assert reward_registry is None
        return original(cfg, registry, **kwargs)

    monkeypatch.setattr(controller, "run_flow_grpo", with_recording_registry)
    overrides = [
        "train_jrm=true", f"jrm.data.train_pairs={pairs}", f"jrm.output_dir={jrm_out}", "jrm.shared_output_dir=true",
        "jrm.epochs=1", "jrm.max_steps=1", "jrm.eval_every_steps=1", "jrm.checkpoint_every_steps=1",
        f"jrm.data.rationales={tmp_path / 'rationales.jsonl'}", "jrm.annotate.enabled=true",
        "jrm.annotate.teacher.kind=openai", f"jrm.annotate.teacher.base_url={chat_server}",
        "jrm.annotate.teacher.model=judge", "jrm.annotate.teacher.api_key_env=null",
        "jrm.wandb_mode=disabled", "jrm.progress_bar=false",
        # the preset's placement shape, in small: a policy worker and its reward actor per GPU, one GPU per node
        "ray.placement=hybrid", "ray.num_samplers=2", "ray.sampler_num_gpus=0.5", "ray.reward_num_gpus=0.5",
        "ray.placement_strategy=STRICT_SPREAD", "ray.learner_backend=gloo", f"ray.address={two_nodes.address}",
        "policy.device=cpu", "reward.device=cpu",
        f"data.train_path={data}", f"output_dir={rl_out}", "grpo.num_steps=2", "checkpoint.every_n_steps=2",
        "logging.wandb=false", "logging.progress_bar=false",
    ]
    assert flow_grpo_jrm.main(["--config", str(TOY), *overrides]) == 0
    out = capsys.readouterr().out

    # stage 1 wrote the final JRM on the shared directory
    final = jrm_out / "final"
    assert (final / "jrm_config.json").is_file()
    assert json.loads((jrm_out / "metrics.json").read_text())["final"]["step"] == 1.0
    local = build_reward_model(RewardModelConfig(kind="jrm", checkpoint=str(final)))
    assert isinstance(local, JRM)
    expected = local.score(*_fixed_input(pairs)).mu

    # one reward actor per node, each on its logical GPU share, each scoring with stage 1's final JRM
    built = [json.loads(p.read_text()) for p in records.glob("*.json")]
    actors = [r for r in built if r["pid"] != os.getpid()]
    assert len(actors) == 2, built
    assert sorted(r["node_id"] for r in actors) == nodes
    assert all(r["gpu_ids"] and r["placement_group"] == actors[0]["placement_group"] for r in actors)
    for r in actors:
        assert r["checkpoint"] == str(final)
        assert torch.allclose(torch.tensor(r["mu"]), expected, atol=1e-5, rtol=0)
    untrained = build_reward_model(RewardModelConfig(kind="jrm", tiny=True)).score(*_fixed_input(pairs)).mu
    assert not torch.allclose(untrained, expected, atol=1e-4, rtol=0)  # the score tells the trained JRM apart

    # stage 2: two rounds in hybrid placement, and a checkpoint that records the JRM it trained against
    summary = json.loads(out[out.index('{\n  "output_dir"'):out.rindex("}") + 1])
    assert summary["steps_completed"] == 2 and summary["adapter_version"] == 2
    # the run's own placement check: one policy worker and its reward actor on each node, on the same GPU
    placement = summary["placement"]
    assert placement["ok"] and placement["problems"] == [] and placement["gpus"] == 2
    assert sorted(placement["nodes"]) == nodes
    assert all(counts == {"policy": 1, "reward": 1, "learner": 0} for counts in placement["nodes"].values())
    ckpt = latest_checkpoint(rl_out)
    assert ckpt is not None and ckpt.name == "step_00000002"
    assert summary["last_checkpoint"] == str(ckpt)
    rounds = [json.loads(line) for line in (rl_out / "rounds.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rounds] == [0, 1]
