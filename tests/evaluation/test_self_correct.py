"""Self-correction (JRM paper Table 3) and the best-of-N Generate-Critique-Refine loop, with a fake policy whose
edit depends on the instruction, a fake JRM (brightness score, scripted critiques) and a scripted judge: the
table's numbers by hand."""

import math

import pytest
import torch
from PIL import Image

from reward.base import RewardScores
from reward.jrm.model import Explanation
from reward.jrm.rationale import Rationale, Region
from rl.benchmarks.base import EditItem
from rl.benchmarks.gedit import GEditBenchmark
from rl.benchmarks.saved_outputs import SavedEdit
from rl.benchmarks.self_correct import (
    SelfCorrectConfig,
    critique_text,
    refine_instruction,
    run_self_correction,
    write_self_correction,
)
from tests.evaluation.fixtures import ScriptedJudge, solid


def brightness(image: Image.Image) -> float:
    return sum(image.convert("L").getdata()) / (image.width * image.height)


class LetterPolicy:
    """Edits the source by adding 3 * (the number of letters 'a' in the instruction) to every pixel."""

    def __init__(self) -> None:
        self.instructions: list[str] = []

    def edit(self, sources, instructions, *, seed=0, **kwargs):
        self.instructions += list(instructions)
        return [self._brighten(s, 3 * i.count("a")) for s, i in zip(sources, instructions)]

    @staticmethod
    def _brighten(source: Image.Image, amount: int) -> Image.Image:
        return Image.eval(source, lambda v: min(255, v + amount))


class FakeJRM:
    """Score: IF = brightness / 64, VQ = 1, reward = mean; critiques scripted per (instruction, round)."""

    dimensions = ("instruction_following", "visual_quality")

    def __init__(self, script: dict[str, list[str]]) -> None:
        self.script = script
        self.rounds: dict[str, int] = {}
        self.explained: list[tuple[str, float]] = []

    def score(self, sources, edits, instructions):
        if_score = torch.tensor([brightness(e) / 64 for e in edits], dtype=torch.float64)
        mu = torch.stack([if_score, torch.ones_like(if_score)], dim=1)
        return RewardScores(mu, torch.ones_like(mu), mu.mean(dim=1), self.dimensions)

    def explain(self, sources, edits, instructions, *, max_new_tokens=512):
        out = []
        for edit, instruction in zip(edits, instructions):
            r = self.rounds.get(instruction, 0)
            self.rounds[instruction] = r + 1
            self.explained.append((instruction, brightness(edit)))
            out.append(Explanation(self.script[instruction][r], None, "not JSON", {}))
        return out


def judge_by_brightness(request):
    """SC = brightness // 20 (at most 10), PQ = 10; the edit is the request's last image."""
    if request.request_id.endswith("/PQ"):
        return '{"score": [10, 10], "reasoning": "r"}'
    return f'{{"score": [{min(10, int(brightness(request.images[-1]) // 20))}, 10], "reasoning": "r"}}'


def saved_edits():
    """Source values and the original run's O; the original edit is the source + 10. k4 is above every
    threshold, k5 was not judged."""
    rows = [("k1", 100, 6.5), ("k2", 60, 4.5), ("k3", 20, 2.5), ("k4", 150, 8.0), ("k5", 80, None)]
    return [
        SavedEdit(
            EditItem(key, "color_alter", f"edit {key}", solid(v)), solid(v + 10),
            None if o is None else {"SC": o, "PQ": o, "O": o},
        )
        for key, v, o in rows
    ]


def expected_o(value: float) -> float:
    return math.sqrt(min(10, int(value // 20)) * 10)


def test_table3_single_round_by_hand(tmp_path):
    script = {"edit k1": ["aa"], "edit k2": ["a"], "edit k3": ["no"]}
    policy, jrm, judge = LetterPolicy(), FakeJRM(script), ScriptedJudge(judge_by_brightness)
    result = run_self_correction(
        saved_edits(), policy, jrm, GEditBenchmark(), judge, SelfCorrectConfig(), seed=5, edits_dir=tmp_path / "edits",
    )
    by_key = {i.key: i for i in result.items}
    assert sorted(by_key) == ["k1", "k2", "k3"]  # k4: O = 8 is above every threshold; k5: no VIEScore
    values = {"k1": 100, "k2": 60, "k3": 20}
    for key, v in values.items():
        critique = script[f"edit {key}"][0]
        refined = refine_instruction(f"edit {key}", critique)
        assert refined.startswith(f"edit {key}\n") and refined.endswith(critique)
        after = v + 3 * refined.count("a")
        item = by_key[key]
        assert item.critiques == [critique] and item.refined_instructions == [refined] and item.chosen == 1
        assert item.jrm_before == pytest.approx(((v + 10) / 64 + 1) / 2)
        assert item.jrm_after == pytest.approx((after / 64 + 1) / 2)
        assert item.after["O"] == pytest.approx(expected_o(after))
    assert policy.instructions == [refine_instruction(f"edit {k}", script[f"edit {k}"][0]) for k in values]
    # the judge is asked about the original instruction, with the source and the re-edit
    sc = [r for r in judge.seen if r.request_id == "k1/SC"][0]
    assert "edit k1" in sc.prompt and "critique" not in sc.prompt
    assert sc.images[0].getpixel((0, 0)) == (100, 100, 100)

    rows = {r.threshold: r for r in result.rows}
    assert [r.samples for r in result.rows] == [3, 2, 2, 1, 1]
    before = {"k1": 6.5, "k2": 4.5, "k3": 2.5}

    def delta(keys):
        return sum(by_key[k].after["O"] - before[k] for k in keys) / len(keys)

    def jrm_delta(keys):
        return sum(by_key[k].jrm_after - by_key[k].jrm_before for k in keys) / len(keys)

    assert rows[7.0].viescore_delta == pytest.approx(delta(["k1", "k2", "k3"]))
    assert rows[5.0].viescore_delta == pytest.approx(delta(["k2", "k3"]))
    assert rows[3.0].viescore_delta == pytest.approx(delta(["k3"]))
    assert rows[3.0].jrm_delta == pytest.approx(jrm_delta(["k3"]))
    assert rows[7.0].jrm_delta == pytest.approx(jrm_delta(["k1", "k2", "k3"]))
    assert rows[6.0].viescore_before == pytest.approx(3.5) and rows[6.0].judged == 2
    assert rows[7.0].viescore_delta_by_metric["O"] == pytest.approx(rows[7.0].viescore_delta)
    assert rows[7.0].viescore_delta_by_metric["PQ"] == pytest.approx(sum(10 - before[k] for k in before) / 3)
    assert rows[7.0].jrm_delta_by_dimension["visual_quality"] == pytest.approx(0.0)
    assert rows[7.0].jrm_delta_by_dimension["instruction_following"] == pytest.approx(2 * rows[7.0].jrm_delta)
    assert any("k5" not in n and "no VIEScore" in n for n in result.notes)

    json_path, md_path = write_self_correction(result, tmp_path)
    md = md_path.read_text()
    assert "| O < 7 | 3 |" in md and "Table 3" in md
    assert (tmp_path / "edits" / "round_1" / "color_alter" / "k1.png").is_file()
    assert json_path.is_file()


def test_judge_failures_are_counted_not_scored():
    judge = ScriptedJudge(lambda r: None if r.request_id.startswith("k2") else judge_by_brightness(r))
    script = {"edit k1": ["a"], "edit k2": ["a"], "edit k3": ["a"]}
    result = run_self_correction(saved_edits(), LetterPolicy(), FakeJRM(script), GEditBenchmark(), judge, SelfCorrectConfig())
    row = result.rows[0]
    assert (row.samples, row.judged) == (3, 2)
    k2 = [i for i in result.items if i.key == "k2"][0]
    assert k2.after is None and "scripted failure" in k2.after_failure
    assert row.jrm_delta is not None  # JRM's columns still cover all 3


def test_loop_keeps_the_best_of_n_by_jrm():
    # N = 3: the original (+10) and two refinements; each round critiques the previous round's edit
    script = {"edit k1": ["x", "aaaa"], "edit k2": ["x", "x"], "edit k3": ["aaaaaa", "x"]}
    policy, jrm, judge = LetterPolicy(), FakeJRM(script), ScriptedJudge(judge_by_brightness)
    cfg = SelfCorrectConfig(rounds=2, select="best_jrm")
    result = run_self_correction(saved_edits(), policy, jrm, GEditBenchmark(), judge, cfg)
    by_key = {i.key: i for i in result.items}
    template_a = refine_instruction("", "x").count("a")  # the letters 'a' of the template itself
    # k1: +10, +3t, +3(t+4): the last; k2: +10, +3t, +3t: the original if 3t < 10; k3: +3(t+6) first refinement
    assert 3 * template_a < 10
    assert by_key["k1"].chosen == 2 and by_key["k3"].chosen == 1 and by_key["k2"].chosen == 0
    assert by_key["k2"].after == {"SC": 4.5, "PQ": 4.5, "O": 4.5}  # the original kept: its saved VIEScore
    assert not [r for r in judge.seen if r.request_id.startswith("k2/")]
    assert by_key["k1"].candidates_jrm == pytest.approx(
        [((100 + d) / 64 + 1) / 2 for d in (10, 3 * template_a, 3 * (template_a + 4))]
    )
    # round 2 critiqued round 1's edit of k1 (100 + 3t), not the original
    assert ("edit k1", 100 + 3 * template_a) in jrm.explained
    md = result.to_markdown()
    assert "best of 3 by JRM" in md


def test_critique_text_uses_region_labels_and_is_cut_at_a_word():
    rationale = Rationale("IF", "<|bbox_0|> the hat is red, not blue <|global|> background kept", (Region(0, "hat", (0, 0, 10, 10)),))
    explanation = Explanation("raw", {"IF": rationale, "VQ": Rationale("VQ", "slight blur")}, None, {})
    text = critique_text(explanation, 1000)
    assert text == "Instruction following: [hat] the hat is red, not blue [overall] background kept Visual quality: slight blur"
    assert critique_text(explanation, 30) == "Instruction following: [hat]"
    raw = Explanation('{"reasoning": "<|bbox_3|> odd<|im_end|>  text"}', None, "bad", {})
    assert critique_text(raw, 1000) == '{"reasoning": " odd text"}'
    assert refine_instruction("make it red", "") == "make it red"


def test_config_is_checked():
    with pytest.raises(ValueError, match="rounds"):
        SelfCorrectConfig(rounds=0).validate()
    with pytest.raises(ValueError, match="select"):
        SelfCorrectConfig(select="median").validate()


def test_rejudge_before_takes_the_delta_from_the_same_judge():
    script = {"edit k1": ["aa"], "edit k2": ["a"], "edit k3": ["no"]}
    judge = ScriptedJudge(judge_by_brightness)
    cfg = SelfCorrectConfig(rejudge_before=True)
    result = run_self_correction(saved_edits(), LetterPolicy(), FakeJRM(script), GEditBenchmark(), judge, cfg)
    values = {"k1": 100, "k2": 60, "k3": 20}
    for item in result.items:
        assert item.saved["O"] in (6.5, 4.5, 2.5)  # the selection's score is kept
        assert item.before["O"] == pytest.approx(expected_o(values[item.key] + 10))  # the original, judged now
    row = result.rows[0]
    deltas = [i.after["O"] - i.before["O"] for i in result.items]
    assert row.samples == 3 and row.viescore_delta == pytest.approx(sum(deltas) / 3)
    assert len(judge.seen) == 2 * 3 * 2  # SC and PQ of 3 originals and 3 re-edits
    assert result.settings["rejudge_before"] is True


def test_critiques_of_a_tiny_jrm_with_the_paper_prompts():
    """With the paper prompts JRM explains each dimension in its own row; the critique is plain text either way."""
    from reward.jrm.model import JRM, tiny_jrm_config

    jrm = JRM.build_tiny(seed=0, config=tiny_jrm_config(prompt="paper"))
    explanations = jrm.explain([solid(40, (32, 32))], [solid(90, (32, 32))], ["make it red"], max_new_tokens=4)
    assert len(explanations) == 1 and set(explanations[0].texts) == {"IF", "VQ"}
    text = critique_text(explanations[0], 200)
    assert "<|" not in text and len(text) <= 200
