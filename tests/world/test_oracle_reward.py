import json

import pytest
import torch

from editrl.config import ConfigError
from reward.base import RewardModel
from reward.registry import RewardModelConfig
from world.oracle_reward import WorldOracleReward, oracle_reward
from world.registries import WORLD_ORACLE_KIND, world_reward_registry
from world.render import to_pil
from world.tasks import build_task, make_tasks, write_instruction_jsonl


def test_oracle_reward_is_combined_scores_plus_edit_success():
    mu, reward = oracle_reward(torch.tensor([4, 1]), torch.tensor([2, 3]), torch.tensor([0.5, 0.0]), "mean")
    assert mu.tolist() == [[4.0, 2.0], [1.0, 3.0]]
    assert torch.allclose(reward, torch.tensor([3.5, 2.0]))  # (4+2)/2 + 0.5, (1+3)/2 + 0
    _, reward_if = oracle_reward(torch.tensor([4]), torch.tensor([2]), torch.tensor([1.0]), "instruction_following")
    assert reward_if.tolist() == [5.0]
    _, reward_min = oracle_reward(torch.tensor([1, 3]), torch.tensor([4, 2]), torch.tensor([0.0, 0.5]), "min")
    assert reward_min.tolist() == [1.0, 2.5]  # a clean no-op (IF 1, VQ 4) scores its IF; min(3, 2) + 0.5


def test_same_instruction_tasks_are_told_apart_by_source():
    # two "make the background ..." tasks with one instruction text but different scenes
    candidates = [build_task(seed, 32, "background") for seed in range(40)]
    by_text = {}
    for task in candidates:
        by_text.setdefault(task.instruction, []).append(task)
    first, second = next(group for group in by_text.values() if len(group) >= 2)[:2]
    model = WorldOracleReward([first, second])
    assert isinstance(model, RewardModel)
    sources = [to_pil(first.source_image), to_pil(second.source_image)]
    perfect = [to_pil(first.target_image), to_pil(second.target_image)]
    swapped = [to_pil(second.target_image), to_pil(first.target_image)]
    right = model.score(sources, perfect, [first.instruction] * 2)
    assert right.mu[:, 0].tolist() == [4.0, 4.0]
    wrong = model.score(sources, swapped, [first.instruction] * 2)
    assert (wrong.reward < right.reward).all()


def test_registry_kind_builds_from_instruction_jsonl_and_rejects_bad_lines(tmp_path):
    tasks = make_tasks("rl", 3)
    path = write_instruction_jsonl(tasks, tmp_path)
    registry = world_reward_registry()
    model = registry.build(RewardModelConfig(kind=WORLD_ORACLE_KIND, checkpoint=str(path)))
    scores = model.score([to_pil(t.source_image) for t in tasks], [to_pil(t.source_image) for t in tasks], [t.instruction for t in tasks])
    assert scores.mu[:, 0].tolist() == [1.0, 1.0, 1.0]  # a no-op edit follows no instruction
    with pytest.raises(KeyError, match="no task has the instruction"):
        model.score([to_pil(tasks[0].source_image)], [to_pil(tasks[0].source_image)], ["paint it all purple"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(path.read_text() + json.dumps({"id": "x", "instruction": "remove the cat"}) + "\n")
    with pytest.raises(ConfigError, match=r"bad.jsonl:4"):
        registry.build(RewardModelConfig(kind=WORLD_ORACLE_KIND, checkpoint=str(bad)))
    with pytest.raises(ConfigError, match="checkpoint"):
        registry.build(RewardModelConfig(kind=WORLD_ORACLE_KIND))
