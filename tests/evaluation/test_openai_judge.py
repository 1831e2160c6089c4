"""The OpenAI-compatible judge against a local scripted HTTP server on 127.0.0.1."""

import base64
import io

import pytest
from PIL import Image

from editrl.config import ConfigError
from reward.judges.base import JudgeRequest
from reward.judges.openai_compatible import OpenAICompatibleJudge, OpenAIJudgeConfig, backoff_delay
from reward.judges.prompts.viescore import VIESCORE_FORMAT
from tests.evaluation.fixtures import ScriptedServer, chat_reply, solid

KEY_ENV = "EDITRL_TEST_JUDGE_KEY"
SECRET = "sk-test-secret-123"
GOOD = chat_reply('{"score": [8, 6], "reasoning": "fine"}')


def _judge(server, tmp_path, monkeypatch, **overrides):
    monkeypatch.setenv(KEY_ENV, SECRET)
    fields = dict(
        base_url=server.base_url, model="gpt-4.1", api_key_env=KEY_ENV, max_attempts=4, backoff_initial_s=0.5,
        backoff_max_s=10.0, timeout_s=5.0, max_concurrency=2, cache_dir=str(tmp_path / "cache"),
    )
    fields.update(overrides)
    sleeps: list[float] = []
    judge = OpenAICompatibleJudge(OpenAIJudgeConfig(**fields), sleep=sleeps.append, show_progress=False)
    return judge, sleeps


def _request(rid="r0", value=40):
    return JudgeRequest(rid, "Rate this edit.", [solid(value), solid(value + 100)], VIESCORE_FORMAT)


def test_backoff_delay_doubles_and_caps_and_honours_retry_after():
    assert [backoff_delay(a, 0.5, 3.0) for a in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 3.0]
    assert backoff_delay(1, 0.5, 3.0, retry_after_s=2.5) == 2.5
    assert backoff_delay(1, 0.5, 3.0, retry_after_s=30.0) == 3.0


def test_retries_with_backoff_then_succeeds_and_rerun_hits_the_cache(tmp_path, monkeypatch):
    script = [
        (500, {"error": "boom"}, {}, 0.0),
        (429, {"error": "slow down"}, {"Retry-After": "3"}, 0.0),
        (200, chat_reply("no json here"), {}, 0.0),
        (200, GOOD, {}, 0.0),
    ]
    with ScriptedServer(script) as server:
        judge, sleeps = _judge(server, tmp_path, monkeypatch)
        [answer] = judge.judge([_request()])
        assert answer.ok and answer.scores == (8.0, 6.0) and answer.attempts == 4 and not answer.cached
        # after attempt 1: 0.5 * 2**0; attempt 2: Retry-After 3; attempt 3: 0.5 * 2**2
        assert sleeps == [0.5, 3.0, 2.0]
        assert len(server.bodies) == 4

        body, headers = server.bodies[0], server.headers[0]
        assert body["model"] == "gpt-4.1" and body["max_tokens"] == 1024 and body["temperature"] == 0.0
        content = body["messages"][0]["content"]
        assert content[0] == {"type": "text", "text": "Rate this edit."}
        urls = [c["image_url"]["url"] for c in content[1:]]
        assert len(urls) == 2 and all(u.startswith("data:image/png;base64,") for u in urls)
        decoded = Image.open(io.BytesIO(base64.b64decode(urls[1].split(",", 1)[1])))
        assert decoded.getpixel((0, 0)) == (140, 140, 140)
        assert headers["Authorization"] == f"Bearer {SECRET}"

        rerun, _ = _judge(server, tmp_path, monkeypatch)
        [again] = rerun.judge([_request()])
        assert again.cached and again.scores == (8.0, 6.0) and again.attempts == 0
        assert len(server.bodies) == 4  # no new request
        [other] = rerun.judge([_request(value=41)])  # different image bytes: not a cache hit
        assert not other.cached and len(server.bodies) == 5
    assert SECRET not in repr(judge)
    assert all(SECRET not in p.read_text() for p in (tmp_path / "cache").rglob("*.json"))


def test_always_malformed_is_a_counted_failure_not_a_zero(tmp_path, monkeypatch):
    with ScriptedServer([(200, chat_reply('{"score": [12, 3]}'), {}, 0.0)]) as server:
        judge, sleeps = _judge(server, tmp_path, monkeypatch, max_attempts=3)
        answers = judge.judge([_request("a"), _request("b", value=90)])
    assert [a.request_id for a in answers] == ["a", "b"]
    for a in answers:
        assert a.scores is None and not a.ok and a.attempts == 3
        assert "malformed" in a.failure and "outside [0, 10]" in a.failure
    assert len(server.bodies) == 6 and len(sleeps) == 4
    assert not list((tmp_path / "cache").rglob("*.json"))  # failures are not cached


def test_timeouts_are_retried_then_recorded(tmp_path, monkeypatch):
    with ScriptedServer([(200, GOOD, {}, 1.0)]) as server:
        judge, sleeps = _judge(server, tmp_path, monkeypatch, timeout_s=0.2, max_attempts=2)
        [answer] = judge.judge([_request()])
    assert answer.scores is None and "timeout" in answer.failure and answer.attempts == 2
    assert sleeps == [0.5]


def test_client_errors_are_not_retried(tmp_path, monkeypatch):
    with ScriptedServer([(400, {"error": "bad image"}, {}, 0.0)]) as server:
        judge, sleeps = _judge(server, tmp_path, monkeypatch)
        [answer] = judge.judge([_request()])
    assert answer.scores is None and answer.attempts == 1 and "HTTP 400" in answer.failure
    assert sleeps == [] and len(server.bodies) == 1


def test_missing_key_names_the_variable(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ConfigError, match=KEY_ENV):
        OpenAICompatibleJudge(OpenAIJudgeConfig(api_key_env=KEY_ENV))


def test_error_bodies_that_echo_the_key_are_redacted(tmp_path, monkeypatch):
    echoed = {"error": "denied", "request_headers": {"Authorization": f"Bearer {SECRET}"}, "hint": f"key={SECRET}"}
    with ScriptedServer([(403, echoed, {}, 0.0)]) as server:
        judge, _ = _judge(server, tmp_path, monkeypatch)
        [answer] = judge.judge([_request()])
    assert "HTTP 403" in answer.failure and "denied" in answer.failure
    assert SECRET not in answer.failure and "[REDACTED]" in answer.failure


def test_redact_secrets_patterns():
    from reward.judges.redact import redact_secrets

    text = 'Authorization: Bearer abcdefgh12345 {"api_key": "zzz999"} sk-proj-ABCDEFGH1234 mykey-123'
    out = redact_secrets(text, ["mykey-123"])
    for secret in ("abcdefgh12345", "zzz999", "sk-proj-ABCDEFGH1234", "mykey-123"):
        assert secret not in out
    assert out.count("[REDACTED]") == 4
    assert redact_secrets("HTTP 400: bad image size") == "HTTP 400: bad image size"
