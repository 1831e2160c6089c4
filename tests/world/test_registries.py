"""The world's kinds on the registries a run is handed: ``world_oracle`` as a reward model and as an eval hook."""

from reward.registry import default_registry
from rl.config import EvalHookConfig
from rl.hook_registry import default_hook_registry
from world.eval_hook import WorldOracleHook
from world.registries import WORLD_ORACLE_KIND, world_hook_registry, world_reward_registry
from world.tasks import make_tasks, write_instruction_jsonl


def test_world_registries_add_the_oracle_to_the_built_in_kinds_only_on_a_copy():
    hooks, rewards = world_hook_registry(), world_reward_registry()
    assert set(hooks.names) == {*default_hook_registry().names, WORLD_ORACLE_KIND}
    assert set(rewards.names) == {*default_registry().names, WORLD_ORACLE_KIND}
    base = default_hook_registry()
    assert WORLD_ORACLE_KIND in world_hook_registry(base) and WORLD_ORACLE_KIND not in base


def test_world_oracle_hook_builds_from_an_instruction_jsonl_with_a_limit(tmp_path):
    tasks = make_tasks("heldout", 3)
    path = write_instruction_jsonl(tasks, tmp_path)
    builder = world_hook_registry().get(WORLD_ORACLE_KIND)
    hook = builder(EvalHookConfig(kind=WORLD_ORACLE_KIND, every_n_steps=4, path=str(path), limit=2), None)
    assert isinstance(hook, WorldOracleHook) and hook.every_n_steps == 4
    assert [t.task_id for t in hook.tasks] == [t.task_id for t in tasks[:2]]
