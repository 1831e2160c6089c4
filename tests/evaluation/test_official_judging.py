"""Judging as the official GEdit-Bench / ImgEdit-Bench scorers do: lenient parsing (unparsed items counted,
never guessed), JPEG q75 images for GEdit, the intersection subset, ImgEdit's official judge model.

Expected values are written by hand from the official definitions (VIEScore's ``mllm_output_to_dict`` /
``fix_json`` and ``min`` of the parsed list; ImgEdit's ``step1_get_avgscore.py``; Step1X-Edit's statistics).
"""

import base64
import io
import math

import pytest
from PIL import Image

from editrl.config import ConfigError, load_config
from reward.judges.base import JudgeRequest
from reward.judges.images import JPEG_Q75, PNG, as_judge_sees_it, encode_image
from reward.judges.parsing import MalformedAnswerError, official_fix_json
from reward.judges.prompts.imgedit import IMGEDIT_EDIT_TYPES, imgedit_format
from reward.judges.prompts.viescore import viescore_format
from rl.benchmarks.base import EditItem
from rl.benchmarks.config import PolicyBenchConfig, resolve_image_encoding
from rl.benchmarks.gedit import GEditBenchmark, load_gedit_bench
from rl.benchmarks.imgedit import ImgEditBenchmark
from rl.benchmarks.runner import evaluate_policy
from tests.evaluation.fixtures import (
    FakePolicy,
    ScriptedJudge,
    ScriptedServer,
    chat_reply,
    solid,
    write_gedit,
)
from tests.evaluation.test_openai_judge import _judge

OFFICIAL_VIE, STRICT_VIE = viescore_format("official"), viescore_format("strict")
OFFICIAL_IMG, STRICT_IMG = imgedit_format("official"), imgedit_format("strict")


@pytest.mark.parametrize(
    "text, expected",
    [
        # between the two delimiters; newlines removed before JSON (a raw newline inside a string is then fine)
        ('||V^=^V||\n{\n"score" : [7, 3, 9],\n"reasoning" : "a\nb"\n}\n||V^=^V||', (7.0, 3.0, 9.0)),
        # first "{" to last "}", newline inside the list
        ('Answer: {"score": [5,\n 4], "reasoning": "ok"} done', (5.0, 4.0)),
        ('{"score": 8, "reasoning": "one"}', (8.0,)),  # a bare score is wrapped in a list
        ('{"score": [12.5, 3]}', (12.5, 3.0)),  # neither range nor integrality checked
        ("{score: 7, reasoning: fine}", (7.0,)),  # fix_json quotes keys, wraps the number, quotes the string
        ("[6, 0]", (6.0, 0.0)),  # no braces: a bare two-score list
        (" 7 ", (7.0,)),  # no braces, no list: a bare integer 0-10 (Python's int() accepts the spaces)
    ],
)
def test_official_viescore_parser(text, expected):
    assert OFFICIAL_VIE.parse(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "11",  # a bare integer outside 0-10
        "score: 5",  # no braces, no list, not an integer
        '{"reasoning": "no score"}',  # parsed, but no score list (the official scorer would crash)
        '{"score": []}',  # min of nothing
        '{"score": ["high", 3]}',
        "",
    ],
)
def test_official_viescore_parser_gives_up_where_the_official_does(text):
    with pytest.raises(MalformedAnswerError):
        OFFICIAL_VIE.parse(text)


def test_strict_rejects_what_official_tolerates():
    for text in ('||V^=^V||{"score": [7, 3, 9], "reasoning": "x"}||V^=^V||', '{"score": 8}', "[6, 0]"):
        with pytest.raises(MalformedAnswerError):
            STRICT_VIE.parse(text)


def test_official_fix_json_by_hand():
    assert official_fix_json("{score: 7, reasoning: fine}") == '{"score": [7], "reasoning": "fine"}'
    assert official_fix_json('{"score": 4, "ok": true}') == '{"score": [4], "ok": true}'


def test_official_imgedit_parser_reads_every_colon_space_digits_line():
    text = "Brief reasoning: ok\nPrompt Compliance: 4\n**Visual Seamlessness:** 3\nPhysical & Detail Fidelity: 2"
    assert OFFICIAL_IMG.parse(text) == (4.0, 2.0)  # "**...:** 3" does not split on ": "
    assert STRICT_IMG.parse(text) == (4.0, 3.0, 2.0)
    assert OFFICIAL_IMG.parse("Brief reasoning: fine\nA: 10\nB: 4/5\nC : 3\nD: 1") == (10.0, 3.0, 1.0)
    with pytest.raises(MalformedAnswerError):
        OFFICIAL_IMG.parse("Brief reasoning: all good\nScore - 4")


def test_imgedit_official_item_score_is_rounded_like_the_script():
    bench = ImgEditBenchmark({t: "<edit_prompt>" for t in IMGEDIT_EDIT_TYPES}, "official")
    buf = io.BytesIO()
    solid(20).save(buf, format="PNG")
    item = EditItem("i1", "add", "add a hat", buf.getvalue())
    answer = ScriptedJudge(lambda r: "A: 4\nB: 4\nC: 3").judge(bench.requests(item, solid(10)))
    assert bench.item_metrics(item, answer) == {"score": 3.67}  # round(11 / 3, 2)
    assert ImgEditBenchmark(bench.prompts).item_metrics(item, answer) == {"score": pytest.approx(11 / 3)}


def test_jpeg_q75_is_what_the_judge_receives(tmp_path, monkeypatch):
    image = Image.effect_noise((24, 16), 60).convert("RGB")
    expected = io.BytesIO()
    image.save(expected, format="JPEG", quality=75)
    assert encode_image(image, JPEG_Q75) == expected.getvalue()
    with Image.open(io.BytesIO(expected.getvalue())) as decoded:
        assert list(as_judge_sees_it(image, JPEG_Q75).getdata()) == list(decoded.convert("RGB").getdata())
    assert as_judge_sees_it(image, PNG).tobytes() == image.tobytes()

    request = JudgeRequest("r", "Rate.", [image], OFFICIAL_VIE, JPEG_Q75)
    with ScriptedServer([(200, chat_reply('{"score": [8, 6]}'), {}, 0.0)]) as server:
        judge, _ = _judge(server, tmp_path, monkeypatch)
        (answer,) = judge.judge([request])
    assert answer.scores == (8.0, 6.0)
    url = server.bodies[0]["messages"][0]["content"][1]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == expected.getvalue()


def test_official_parsing_stops_after_one_retry_and_counts_instead_of_guessing(tmp_path, monkeypatch):
    with ScriptedServer([(200, chat_reply("I cannot rate this."), {}, 0.0)]) as server:
        judge, _ = _judge(server, tmp_path, monkeypatch, max_attempts=5)
        (answer,) = judge.judge([JudgeRequest("r", "Rate.", [solid(40)], OFFICIAL_VIE, JPEG_Q75)])
    assert answer.scores is None and answer.unparsed and answer.attempts == 2 and len(server.bodies) == 2
    assert (OFFICIAL_VIE.malformed_attempt_limit, OFFICIAL_IMG.malformed_attempt_limit) == (2, 1)  # ImgEdit: no retry
    assert STRICT_VIE.malformed_attempt_limit is None  # strict: the judge's own max_attempts


def test_gedit_defaults_to_jpeg_q75_and_the_config_resolves_encodings():
    assert GEditBenchmark().image_encoding == JPEG_Q75
    assert resolve_image_encoding("gedit", "auto") == JPEG_Q75 and resolve_image_encoding("imgedit", "auto") == PNG
    assert resolve_image_encoding("gedit", "png") == PNG
    with pytest.raises(ConfigError, match="parsing"):
        load_config(PolicyBenchConfig, None, ["data_dir=x", "parsing=lenient"])
    with pytest.raises(ConfigError, match="image_encoding"):
        load_config(PolicyBenchConfig, None, ["data_dir=x", "image_encoding=webp"])


def test_presets_use_the_official_judges():
    gedit = load_config(PolicyBenchConfig, "configs/eval_gedit.yaml", ["data_dir=x"])
    imgedit = load_config(PolicyBenchConfig, "configs/eval_imgedit.yaml", ["data_dir=x"])
    assert (gedit.judge.openai.model, gedit.parsing, gedit.image_encoding) == ("gpt-4.1", "official", "auto")
    assert (imgedit.judge.openai.model, imgedit.parsing, imgedit.bench) == ("gpt-4o", "official", "imgedit")


ANSWERS = {
    "k1/SC": '{"score": [8, 6, 7]}', "k1/PQ": '{"score": 9}',  # extra and missing scores: SC 6, PQ 9
    "k2/SC": '{"score": [4, 4]}', "k2/PQ": "no idea",  # unparsed: counted, excluded
    "k3/SC": "[10, 2]", "k3/PQ": '{"score": [5, 8]}',  # SC 2, PQ 5
    "k4/SC": '{"score": [9, 9]}', "k4/PQ": '{"score": [1, 4]}',  # SC 9, PQ 1
}


def test_gedit_official_parsing_and_the_intersection_subset(tmp_path):
    rows = [("background_change", "k1", True), ("background_change", "k2", True), ("color_alter", "k3", True),
            ("color_alter", "k4", False)]
    write_gedit(tmp_path, [
        {"task_type": g, "key": k, "instruction": f"edit {k}", "instruction_language": "en",
         "input_image": solid(40, (20, 10)), "intersection": inter}
        for g, k, inter in rows
    ])
    items = load_gedit_bench(tmp_path, "en")
    assert [i.subsets for i in items] == [("intersection",)] * 3 + [()]
    judge = ScriptedJudge(lambda r: ANSWERS[r.request_id])
    report = evaluate_policy(FakePolicy(delta=5), GEditBenchmark("official"), items, judge).report
    assert all(r.image_encoding == JPEG_Q75 for r in judge.seen)
    assert (report.n_items, report.n_failures, report.n_unparsed) == (4, 1, 1)
    # full set: background_change = k1 (SC 6, PQ 9); color_alter = mean of k3 (2, 5) and k4 (9, 1)
    assert report.overall["SC"] == pytest.approx((6 + (2 + 9) / 2) / 2)
    assert report.overall["PQ"] == pytest.approx((9 + (5 + 1) / 2) / 2)
    assert report.overall["O"] == pytest.approx((math.sqrt(54) + (math.sqrt(10) + math.sqrt(9)) / 2) / 2)
    inter = report.subsets["intersection"]
    assert (inter.n_items, inter.n_failures) == (3, 1)
    # intersection: background_change = k1 only (k2 unparsed), color_alter = k3 only (k4 not in the subset)
    assert inter.overall == pytest.approx({"SC": (6 + 2) / 2, "PQ": (9 + 5) / 2, "O": (math.sqrt(54) + math.sqrt(10)) / 2})
    markdown = report.to_markdown()
    assert "### intersection subset" in markdown and "1 failure(s) are answers that never parsed" in markdown
    assert report.to_json()["subsets"]["intersection"]["n_items"] == 3
