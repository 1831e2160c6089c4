"""Rationale annotation: strict validation, bounded retries, resumable output, the OpenAI-compatible backend."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from reward.jrm.annotate import annotate_pairs, attach_rationales, validate_answer
from reward.jrm.pairs import EditScores, PreferencePair
from reward.jrm.rationale import RationaleError
from reward.jrm.teachers.base import TeacherError
from reward.jrm.teachers.openai_compatible import OpenAICompatibleTeacher
from reward.jrm.teachers.prompts import build_teacher_prompt

GOOD_IF = json.dumps(
    {
        "edit_region": [{"id": 0, "label": "ball", "bbox_2d": [100, 200, 300, 400]}],
        "reasoning": "<|bbox_0|> the ball is red now. <|global|> nothing else changed.",
    }
)
GOOD_VQ = json.dumps({"reasoning": "clean, no artifacts"})

BAD_IF = {
    "invalid_json": '{"edit_region": [',
    "missing_regions": json.dumps({"reasoning": "<|global|> ok"}),
    "bbox_out_of_range": GOOD_IF.replace("400", "1001"),
    "bbox_degenerate": GOOD_IF.replace("[100, 200, 300, 400]", "[300, 200, 100, 400]"),
    "unknown_bbox_ref": GOOD_IF.replace("<|bbox_0|>", "<|bbox_3|>"),
    "missing_global": GOOD_IF.replace("<|global|>", ""),
    "missing_reasoning": json.dumps({"edit_region": []}),
}


@pytest.mark.parametrize(("reason", "answer"), BAD_IF.items(), ids=list(BAD_IF))
def test_validation_rejects_each_malformed_if_answer(reason, answer):
    with pytest.raises(RationaleError) as err:
        validate_answer("IF", answer)
    assert err.value.reason == reason


def test_validation_accepts_good_answers_and_vq_needs_reasoning():
    assert validate_answer("IF", "```json\n" + GOOD_IF + "\n```").regions[0].label == "ball"
    assert validate_answer("VQ", GOOD_VQ).to_json() == {"reasoning": "clean, no artifacts"}
    with pytest.raises(RationaleError, match="too_many_regions"):
        validate_answer("IF", GOOD_IF, max_regions=0)
    with pytest.raises(RationaleError, match="missing_reasoning"):
        validate_answer("VQ", json.dumps({"text": "x"}))


def test_prompts_carry_instruction_and_score_and_refuse_bad_scores():
    prompt = build_teacher_prompt("IF", "make the ball red", 3)
    assert "make the ball red" in prompt and "at 3 on a 1-4 scale" in prompt and "<|global|>" in prompt
    assert "at 1 on" in build_teacher_prompt("VQ", "x", 1)
    with pytest.raises(ValueError):
        build_teacher_prompt("IF", "x", 5)


def _pairs(tmp_path, n):
    img = tmp_path / "img.png"
    Image.new("RGB", (8, 8), (10, 20, 30)).save(img)
    other = tmp_path / "img2.png"
    Image.new("RGB", (8, 8), (200, 20, 30)).save(other)
    return [
        PreferencePair(f"r{i}", "make it red", img, other, img, EditScores(4, 3, 7), EditScores(2, 2, 4))
        for i in range(n)
    ]


class ScriptedTeacher:
    """Answers from a per-(record, dimension) script of successive answers; records every call."""

    def __init__(self, script=None, fail_calls=()):
        self.script = script or {}
        self.calls = []
        self.fail_calls = set(fail_calls)

    def generate(self, requests):
        self.calls.append([(r.record_id, r.dimension, r.score) for r in requests])
        if len(self.calls) in self.fail_calls:
            raise RuntimeError("backend down")
        out = []
        for r in requests:
            queue = self.script.get((r.record_id, r.dimension))
            out.append(queue.pop(0) if queue else (GOOD_IF if r.dimension == "IF" else GOOD_VQ))
        return out


def test_bounded_retries_then_rejected_with_reasons(tmp_path):
    pairs = _pairs(tmp_path, 2)
    teacher = ScriptedTeacher(
        {
            ("r0/path1", "IF"): [BAD_IF["invalid_json"], GOOD_IF],
            ("r1/path2", "VQ"): ["nope"] * 10,
        },
        fail_calls={1},
    )
    out = tmp_path / "ann.jsonl"
    summary = annotate_pairs(pairs, teacher, out, max_retries=2, batch_size=4, progress=False)
    rows = {r["key"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert summary.written_ok == 3 and summary.written_rejected == 1 and summary.rejected_keys == ["r1/path2"]
    assert len(teacher.calls) == 3  # the first call fails as a whole, then two more rounds: 1 + max_retries
    assert rows["r0/path1"]["status"] == "ok" and rows["r1/path2"]["status"] == "rejected"
    assert summary.rejection_reasons == {"teacher_error": 1, "invalid_json": 2}
    assert {(k, d, s) for k, d, s in teacher.calls[1] if k == "r0/path2"} == {("r0/path2", "IF", 2), ("r0/path2", "VQ", 2)}
    rationale = json.loads(rows["r0/path1"]["rationale"])
    assert rationale["instruction_following"]["edit_region"][0]["label"] == "ball"
    assert rationale["visual_quality"] == {"reasoning": "clean, no artifacts"}
    joined, missing = attach_rationales(pairs, out)
    assert missing == 1 and joined[0].rationales["preferred"] == rows["r0/path1"]["rationale"]
    assert "rejected" not in joined[1].rationales


def test_rerun_skips_finished_and_redoes_torn_last_line(tmp_path):
    pairs = _pairs(tmp_path, 3)
    out = tmp_path / "ann.jsonl"
    annotate_pairs(pairs[:2], ScriptedTeacher(), out, progress=False)
    text = out.read_text()
    last = text.splitlines()[-1]
    out.write_text(text[: len(text) - len(last) // 2 - 1])  # crash in the middle of the last line
    teacher = ScriptedTeacher()
    summary = annotate_pairs(pairs, teacher, out, progress=False)
    asked = {k for call in teacher.calls for k, _, _ in call}
    assert asked == {"r1/path2", "r2/path1", "r2/path2"}
    assert summary.torn_lines_redone == 1 and summary.already_done == 3 and summary.written_ok == 3
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["key"] for r in rows) == sorted(f"r{i}/path{s}" for i in range(3) for s in (1, 2))


class _ChatHandler(BaseHTTPRequestHandler):
    seen: list = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append((self.path, self.headers.get("Authorization"), body))
        prompt = body["messages"][0]["content"][-1]["text"]
        if "server error please" in prompt:
            self.send_response(500)
            self.end_headers()
            return
        answer = GOOD_VQ if "visual quality" in prompt else GOOD_IF
        payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": answer}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def chat_server():
    _ChatHandler.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ChatHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_openai_compatible_teacher_against_local_server(tmp_path, chat_server, monkeypatch):
    monkeypatch.setenv("TEST_TEACHER_KEY", "sekret-123")
    teacher = OpenAICompatibleTeacher(chat_server, "judge-model", api_key_env="TEST_TEACHER_KEY", timeout_s=10)
    summary = annotate_pairs(_pairs(tmp_path, 1), teacher, tmp_path / "ann.jsonl", progress=False)
    assert summary.written_ok == 2
    path, auth, body = _ChatHandler.seen[0]
    assert path == "/v1/chat/completions" and auth == "Bearer sekret-123" and body["model"] == "judge-model"
    parts = body["messages"][0]["content"]
    assert [p["type"] for p in parts] == ["image_url", "image_url", "text"]
    assert parts[0]["image_url"]["url"].startswith("data:image/png;base64,")
    bad = _pairs(tmp_path, 1)[0]
    bad.instruction = "server error please"
    with pytest.raises(TeacherError, match="HTTP 500") as err:
        teacher.generate([_request_for(bad)])
    assert "sekret" not in str(err.value)
    teacher.close()


def _request_for(pair):
    from reward.jrm.annotate import _units_for_pair

    return _units_for_pair(pair, ("IF",), None)[0].requests["IF"]


def test_missing_key_env_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("NO_SUCH_TEACHER_KEY", raising=False)
    with pytest.raises(TeacherError, match="NO_SUCH_TEACHER_KEY"):
        OpenAICompatibleTeacher("http://127.0.0.1:1/v1", "m", api_key_env="NO_SUCH_TEACHER_KEY")


def test_transformers_teacher_with_a_tiny_qwen3_vl(tmp_path):
    from reward.jrm.teachers.transformers_local import TransformersTeacher
    from reward.jrm.tiny import build_tiny_backbone

    model, parts = build_tiny_backbone(seed=0)
    teacher = TransformersTeacher(model.eval(), parts.tokenizer, parts.image_processor, max_new_tokens=4)
    pairs = _pairs(tmp_path, 1)
    answers = teacher.generate([_request_for(pairs[0]), _request_for(pairs[0])])
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    assert answers[0] == answers[1]  # greedy decoding of identical requests, left-padded in one batch
    summary = annotate_pairs(pairs, teacher, tmp_path / "ann.jsonl", max_retries=1, progress=False)
    assert summary.written_rejected == 2 and summary.teacher_calls == 2  # random weights never write valid JSON
    model.save_pretrained(tmp_path / "teacher")
    parts.tokenizer.save_pretrained(tmp_path / "teacher")
    parts.image_processor.save_pretrained(tmp_path / "teacher")
    reloaded = TransformersTeacher.from_local_dir(tmp_path / "teacher", dtype="float32", max_new_tokens=4)
    assert reloaded.generate([_request_for(pairs[0])]) == answers[:1]


def test_rerun_retries_teacher_failures_but_not_invalid_answers(tmp_path):
    pairs = _pairs(tmp_path, 2)
    out = tmp_path / "ann.jsonl"
    first = ScriptedTeacher({("r1/path1", "IF"): ["nope"]}, fail_calls={1})
    summary = annotate_pairs(pairs, first, out, max_retries=0, batch_size=2, progress=False)
    assert summary.written_rejected == 3 and summary.rejection_reasons == {"teacher_error": 4, "invalid_json": 1}
    second = ScriptedTeacher()
    annotate_pairs(pairs, second, out, max_retries=0, batch_size=2, progress=False)
    assert {k for call in second.calls for k, _, _ in call} == {"r0/path1", "r0/path2"}
    joined, missing = attach_rationales(pairs, out)
    assert missing == 1 and set(joined[0].rationales) == {"preferred", "rejected"}


def test_paper_template_shows_the_vq_teacher_only_the_edited_image(tmp_path, chat_server, monkeypatch):
    monkeypatch.setenv("TEST_TEACHER_KEY", "k")
    teacher = OpenAICompatibleTeacher(chat_server, "judge-model", api_key_env="TEST_TEACHER_KEY", timeout_s=10)
    summary = annotate_pairs(_pairs(tmp_path, 1), teacher, tmp_path / "ann.jsonl", progress=False, template="paper")
    teacher.close()
    assert summary.written_ok == 2
    kinds = {}
    for _, _, body in _ChatHandler.seen:
        parts = body["messages"][0]["content"]
        dim = "VQ" if parts[-1]["text"].startswith("You are an expert visual quality inspector") else "IF"
        kinds.setdefault(dim, set()).add(tuple(p["type"] for p in parts))
    assert kinds == {"IF": {("image_url", "image_url", "text")}, "VQ": {("image_url", "text")}}
