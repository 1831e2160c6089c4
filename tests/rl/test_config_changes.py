"""Resume config comparison: which changes are applied and which change the run's meaning."""

from rl.config_changes import ConfigChange, compare_configs, flatten, is_mutable


def test_flatten_keeps_lists_as_leaves():
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": None}) == {"a.b": 1, "a.c": [1, 2], "d": None}


def test_mutable_keys_and_prefixes():
    assert is_mutable("grpo.learning_rate") and is_mutable("logging.wandb_mode") and is_mutable("eval_hooks")
    assert not is_mutable("grpo.learning_rate_warmup")  # a prefix match needs the dot
    assert not is_mutable("grpo.seed") and not is_mutable("policy.lora_alpha") and not is_mutable("data.train_path")


def test_compare_splits_and_sorts_every_difference():
    old = {"grpo": {"learning_rate": 1e-3, "seed": 0, "beta": 0.04}, "policy": {"lora_alpha": 64}, "logging": {"wandb": True}}
    new = {"grpo": {"learning_rate": 5e-4, "seed": 1, "beta": 0.04}, "policy": {"lora_alpha": 32}, "logging": {"wandb": False},
           "extra": {"k": 1}}
    changes = compare_configs(old, new)
    assert changes.mutable == (ConfigChange("grpo.learning_rate", 1e-3, 5e-4), ConfigChange("logging.wandb", True, False))
    assert [c.key for c in changes.fixed] == ["extra.k", "grpo.seed", "policy.lora_alpha"]
    assert str(changes.fixed[2]) == "policy.lora_alpha: 64 -> 32"
    assert changes.fixed[0].old == "<absent>"


def test_identical_configs_have_no_changes():
    cfg = {"grpo": {"learning_rate": 1e-3}, "eval_hooks": [{"kind": "x"}]}
    changes = compare_configs(cfg, {"grpo": {"learning_rate": 1e-3}, "eval_hooks": [{"kind": "x"}]})
    assert changes.mutable == () and changes.fixed == ()


def test_a_run_from_before_the_tiny_and_annotate_keys_resumes():
    old = {"policy": {"checkpoint": None}, "reward": {"checkpoint": "/x/final"}, "jrm": {"alpha": 0.7}}
    new = {
        "policy": {"checkpoint": None, "tiny": True}, "reward": {"checkpoint": "/x/final", "tiny": False},
        "jrm": {"alpha": 0.7, "shared_output_dir": True, "annotate": {"enabled": True, "teacher": None}},
    }
    changes = compare_configs(old, new)
    assert not changes.fixed and len(changes.mutable) == 5
    assert compare_configs({"jrm": {"alpha": 0.7}}, {"jrm": {"alpha": 0.0}}).fixed  # alpha still fixed
