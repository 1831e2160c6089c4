"""docs/config-reference.md is generated from the config schemas; it must match what they say now."""

from pathlib import Path

from launch.config_reference import render

REPO = Path(__file__).resolve().parents[1]


def test_the_config_reference_is_current():
    committed = (REPO / "docs" / "config-reference.md").read_text()
    assert committed == render(), "regenerate it: python -m launch.config_reference > docs/config-reference.md"


def test_the_reference_names_keys_of_every_section():
    text = render()
    for key in ("`grpo.learning_rate`", "`grpo.max_failed_reward_fraction`", "`checkpoint.allow_config_change`",
                "`data.allow_outside_paths`", "`alpha`", "`rl.grpo.group_size`"):
        assert key in text
