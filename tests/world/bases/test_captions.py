"""The backbone base's texts come from scene data only, and say what a scene holds and what changed."""

import ast
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from editrl.config import ConfigError
from world.bases.captions import (
    CHANGE_PROMPT,
    CHANGE_PROMPTS,
    CONTEXT_TEMPLATE,
    DESCRIBE_PROMPT,
    DESCRIBE_PROMPTS,
    MATCH_PROMPT,
    NOTHING_CHANGED,
    caption_examples,
    comparison_examples,
    content_words,
    describe_change,
    describe_scene,
    vary_prompts,
)
from world.bases.config import BackboneBaseConfig, VarietyPhaseConfig
from world.scene import Scene, Shape
from world.tasks import EDIT_TYPES, build_task, make_tasks

BASES = Path(__file__).resolve().parents[3] / "world" / "bases"
#: Modules that hold or make the oracle's scores, preference pairs or rationales: the bases never import them.
LABEL_MODULES = {
    "world.oracle", "world.oracle_reward", "world.pairs", "world.teacher", "world.corruptions", "world.evaluate",
    "world.eval_hook", "world.demo", "reward.jrm.annotate", "reward.jrm.rationale", "reward.jrm.teachers",
    "reward.jrm.data", "reward.jrm.pairs", "reward.jrm.train_data",
}


def test_describe_scene_lists_background_and_objects_in_grid_order():
    scene = Scene("gray", (Shape("square", "blue", "small", "center"), Shape("circle", "red", "large", "top left")))
    assert describe_scene(scene) == (
        "a gray background with a large red circle at the top left, a small blue square at the center."
    )
    assert describe_scene(Scene("white", ())) == "a white background with no objects."


@pytest.mark.parametrize("edit_type,phrase", [
    ("recolour", " turned "), ("remove", " was removed"), ("add", " was added"), ("move", " moved from the "),
    ("background", "the background changed from "), ("resize", " became "),
])
def test_what_changed_names_each_edit_type(edit_type, phrase):
    for seed in range(20):
        task = build_task(seed, 32, edit_type)
        text = describe_change(task.source, task.target)
        assert phrase in text and ";" not in text, (task.instruction, text)  # exactly one change, of that kind
        assert describe_change(task.source, task.source) == NOTHING_CHANGED


def test_what_changed_combines_changes_and_is_directional():
    before = Scene("white", (Shape("circle", "red", "small", "top"),))
    after = Scene("black", (Shape("circle", "red", "large", "bottom"), Shape("square", "green", "small", "left")))
    assert describe_change(before, after) == (
        "the background changed from white to black; the red circle moved from the top to the bottom; "
        "the red circle became larger; a small green square at the left was added."
    )
    assert "was removed" in describe_change(after, before)


def test_examples_read_only_the_scenes_of_the_tasks():
    tasks = make_tasks("pretrain", 30)
    # stand-ins with nothing but the two scenes: reading an instruction or edit type would raise AttributeError
    bare = [SimpleNamespace(source=t.source, target=t.target) for t in tasks]
    examples = caption_examples(bare, no_change_fraction=0.5, seed=3)
    assert examples == caption_examples(tasks, no_change_fraction=0.5, seed=3)
    scenes = {s for t in tasks for s in (t.source, t.target)}
    counts = {DESCRIBE_PROMPT: 0, CHANGE_PROMPT: 0}
    for example in examples:
        assert set(example.scenes) <= scenes
        counts[example.prompt] += 1
        if example.prompt == DESCRIBE_PROMPT:
            assert example.answer == describe_scene(*example.scenes)
        else:
            assert example.answer == describe_change(*example.scenes)
        for word in ("IF", "VQ", "score", "instruction", "reasoning", "{"):
            assert word not in example.answer
    assert counts[DESCRIBE_PROMPT] == 2 * len(tasks) and counts[CHANGE_PROMPT] > len(tasks)
    assert {t.edit_type for t in tasks} == set(EDIT_TYPES)


def test_content_words_name_what_an_instruction_is_about():
    assert content_words("make the background white") == content_words("change the background to white") == {"background", "white"}
    assert content_words("put a large yellow square in the top left") == {"yellow", "square", "top", "left", "top left"}
    assert content_words("make the background black") != content_words("make the background white")


def test_matching_pairs_each_edit_with_its_instruction_and_one_negative():
    tasks = make_tasks("pretrain", 40)
    # stand-ins with the scenes and the instruction only: reading an edit type or anything else would raise
    bare = [SimpleNamespace(source=t.source, target=t.target, instruction=t.instruction) for t in tasks]
    examples = caption_examples(bare, no_change_fraction=0.0, seed=5, match_fraction=1.0)
    assert caption_examples(tasks, 0.0, 5, match_fraction=0.0) == caption_examples(tasks, 0.0, 5)
    matching = [e for e in examples if e.prompt not in (DESCRIBE_PROMPT, CHANGE_PROMPT)]
    assert len(matching) == 2 * len(tasks) and len(examples) == 5 * len(tasks)
    kinds = {"no-op": 0, "other instruction": 0}
    for task, positive, negative in zip(tasks, matching[0::2], matching[1::2]):
        assert (positive.scenes, positive.prompt, positive.answer) == (
            (task.source, task.target), MATCH_PROMPT.format(instruction=task.instruction), "yes.")
        assert negative.answer == "no."
        if negative.scenes == (task.source, task.source):
            assert negative.prompt == positive.prompt
            kinds["no-op"] += 1
        else:
            assert negative.scenes == (task.source, task.target)
            other = negative.prompt.removeprefix("Instruction: ").split(". Does it say")[0]
            assert other in {t.instruction for t in tasks} and content_words(other) != content_words(task.instruction)
            kinds["other instruction"] += 1
    assert min(kinds.values()) >= 10  # both negatives, about half each
    with pytest.raises(ConfigError, match="match_fraction"):
        BackboneBaseConfig(match_fraction=1.5).validate()


#: Measures built bases against the oracle (its job); the build never imports it (checked below).
EVALUATION = "evaluate.py"


def test_the_bases_never_import_the_oracle_pairs_or_rationales():
    imported = set()
    for path in sorted(p for p in BASES.glob("*.py") if p.name != EVALUATION):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add((path.name, node.module))
            elif isinstance(node, ast.Import):
                imported.update((path.name, alias.name) for alias in node.names)
    bad = [(f, m) for f, m in imported if any(m == b or m.startswith(b + ".") for b in LABEL_MODULES)]
    assert not bad
    assert ("captions.py", "world.scene") in imported  # the check does see the package's imports
    assert not [(f, m) for f, m in imported if m == "world.bases.evaluate" or m.endswith(".evaluate") and "bases" in m]


def test_the_backbone_with_world_vocabulary_reads_colour_and_shape_words_as_single_tokens():
    from world.bases.backbone import build_backbone
    from world.bases.config import BackboneBaseConfig

    plain = build_backbone(BackboneBaseConfig(hidden_size=32, num_layers=1, vision_hidden_size=32, vision_depth=1))
    worded = build_backbone(BackboneBaseConfig(hidden_size=32, num_layers=1, vision_hidden_size=32, vision_depth=1,
                                               world_vocabulary=True))
    text = "a small cyan triangle at the top left"
    assert worded[1].tokenizer.tokenize(text) == ["a", "Ġsmall", "Ġcyan", "Ġtriangle", "Ġat", "Ġthe", "Ġtop", "Ġleft"]
    assert len(plain[1].tokenizer.tokenize(text)) > 8
    # the model's vocabulary covers the larger tokenizer
    assert worded[0].get_input_embeddings().num_embeddings == len(worded[1].tokenizer)


def test_prompt_variety_rewords_and_prefixes_questions_but_keeps_scenes_answers_and_matching():
    tasks = make_tasks("pretrain", 60)
    plain = caption_examples(tasks, 0.2, seed=4, match_fraction=0.5)
    instructions = [t.instruction for t in tasks]
    varied = vary_prompts(plain, instructions, True, 0.5, np.random.default_rng(0))
    assert vary_prompts(plain, instructions, False, 0.0, np.random.default_rng(0)) == plain
    assert len(varied) == len(plain)
    wordings, with_context = set(), 0
    for before, after in zip(plain, varied):
        assert (after.scenes, after.answer) == (before.scenes, before.answer)
        if before.prompt not in (DESCRIBE_PROMPT, CHANGE_PROMPT):
            assert after.prompt == before.prompt  # matching examples already name their instruction
            continue
        pool = CHANGE_PROMPTS if before.prompt == CHANGE_PROMPT else DESCRIBE_PROMPTS
        question = after.prompt
        if after.prompt.startswith('Edit: "'):
            instruction, question = after.prompt.removeprefix('Edit: "').split('" ', 1)
            assert instruction in instructions
            assert CONTEXT_TEMPLATE.format(instruction=instruction, prompt=question) == after.prompt
            with_context += 1
        assert question in pool
        wordings.add(question)
    asked = sum(1 for e in plain if e.prompt in (DESCRIBE_PROMPT, CHANGE_PROMPT))
    assert wordings == set(CHANGE_PROMPTS) | set(DESCRIBE_PROMPTS)
    assert 0.35 < with_context / asked < 0.65
    only_context = vary_prompts(plain[:30], instructions, False, 1.0, np.random.default_rng(1))
    asked_first = [e for e in only_context if not e.prompt.startswith("Instruction: ")]
    assert asked_first and all(
        e.prompt.startswith('Edit: "') and e.prompt.endswith((DESCRIBE_PROMPT, CHANGE_PROMPT)) for e in asked_first
    )


def test_comparison_examples_show_each_edit_both_ways_and_once_unchanged():
    tasks = make_tasks("pretrain", 50)
    bare = [SimpleNamespace(source=t.source, target=t.target, instruction=t.instruction) for t in tasks]
    examples = comparison_examples(bare, seed=2, describe_fraction=0.0, context_fraction=0.0)
    assert len(examples) == 3 * len(tasks)
    for task, forward, backward, twice in zip(tasks, examples[0::3], examples[1::3], examples[2::3]):
        assert forward.scenes == (task.source, task.target) and forward.answer == describe_change(task.source, task.target)
        assert backward.scenes == (task.target, task.source) and backward.answer == describe_change(task.target, task.source)
        assert twice.scenes in ((task.source, task.source), (task.target, task.target)) and twice.answer == NOTHING_CHANGED
        assert {forward.prompt, backward.prompt, twice.prompt} <= set(CHANGE_PROMPTS)
    with_describe = comparison_examples(bare, seed=2, describe_fraction=1.0, context_fraction=0.0)
    described = [e for e in with_describe if len(e.scenes) == 1]
    assert len(described) == len(tasks) and all(e.prompt in DESCRIBE_PROMPTS for e in described)
    assert comparison_examples(bare, 7, 0.3, 0.5) == comparison_examples(tasks, 7, 0.3, 0.5)
    with pytest.raises(ConfigError, match="variety.context_fraction"):
        VarietyPhaseConfig(context_fraction=-0.1).validate()
    with pytest.raises(ConfigError, match="variety.steps"):
        BackboneBaseConfig(variety=VarietyPhaseConfig(steps=-1)).validate()
