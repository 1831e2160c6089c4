"""Every entry point's --help lists the config sections and points to the config reference."""

import pytest

from launch import demo, flow_grpo_jrm, train_jrm
from world.bases import build as bases_build


@pytest.mark.parametrize(
    ("call", "section"),
    [
        (lambda: flow_grpo_jrm.parse_args(["--help"]), "grpo.*"),
        (lambda: train_jrm.main(["--help"]), "data.*"),
        (lambda: demo.main(["--help"]), "claims.*"),
        (lambda: bases_build.main(["--help"]), "backbone.*"),
    ],
    ids=["flow_grpo_jrm", "train_jrm", "demo", "world_bases_build"],
)
def test_help_lists_sections_and_the_reference(capsys, call, section):
    with pytest.raises(SystemExit) as done:
        call()
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "config sections" in text and section in text and "docs/config-reference.md" in text
