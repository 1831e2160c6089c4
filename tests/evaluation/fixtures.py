"""Test fixtures in the exact public layouts (written here, a handful of items) and small fakes."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image

from policies.settings import SamplingSettings
from reward.base import RewardScores
from reward.judges.base import JudgeAnswer, JudgeRequest
from reward.judges.parsing import MalformedAnswerError


def solid(value: int, size: tuple[int, int] = (16, 12)) -> Image.Image:
    """A solid RGB image whose every channel is ``value``."""
    return Image.new("RGB", size, (value, value, value))


def png_cell(image: Image.Image, name: str) -> dict:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return {"bytes": buf.getvalue(), "path": name}


def write_gedit(root: Path, rows: Sequence[dict]) -> Path:
    """rows: task_type, key, instruction, instruction_language, input_image (PIL), optionally intersection (bool,
    default True). HF layout data/*.parquet."""
    table = pa.Table.from_pylist(
        [
            {
                "task_type": r["task_type"],
                "key": r["key"],
                "instruction": r["instruction"],
                "instruction_language": r["instruction_language"],
                "input_image": png_cell(r["input_image"], f"{r['key']}.png"),
                "input_image_raw": png_cell(r["input_image"], f"{r['key']}_raw.png"),
                "Intersection_exist": r.get("intersection", True),
            }
            for r in rows
        ]
    )
    path = root / "data" / "train-00000-of-00001.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def write_editreward_bench(root: Path, rows: Sequence[dict]) -> Path:
    """rows: key (2 ids), instruction, input_image, output_images (2 PIL), task_type, dimension."""
    table = pa.Table.from_pylist(
        [
            {
                "key": list(r["key"]),
                "instruction": r["instruction"],
                "input_image": png_cell(r["input_image"], "in.png"),
                "output_images": [png_cell(im, f"out{i}.png") for i, im in enumerate(r["output_images"])],
                "task_type": r["task_type"],
                "dimension": r["dimension"],
            }
            for r in rows
        ]
    )
    path = root / "data" / "train-00000-of-00001.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


class BrightnessReward:
    """A RewardModel whose IF score is the edit's mean brightness / 64 and VQ is 4 - that; reward = IF."""

    dimensions = ("instruction_following", "visual_quality")

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.source_sizes: list[tuple[int, int]] = []

    def score(self, sources, edits, instructions) -> RewardScores:
        self.calls.append(len(edits))
        self.source_sizes += [s.size for s in sources]
        brightness = torch.tensor([sum(im.convert("L").getdata()) / (im.width * im.height) for im in edits])
        if_score = brightness / 64.0
        mu = torch.stack([if_score, 4.0 - if_score], dim=1)
        return RewardScores(mu=mu, sigma=torch.ones_like(mu), reward=if_score.clone(), dimensions=self.dimensions)


class ScriptedJudge:
    """A Judge answering each request from ``answer_for(request)`` -> text or None (None = failure); a text
    that does not parse is an unparsed failure."""

    name = "scripted"

    def __init__(self, answer_for: Callable[[JudgeRequest], str | None]) -> None:
        self.answer_for = answer_for
        self.seen: list[JudgeRequest] = []

    def judge(self, requests: Sequence[JudgeRequest]) -> list[JudgeAnswer]:
        out = []
        for r in requests:
            self.seen.append(r)
            text = self.answer_for(r)
            if text is None:
                out.append(JudgeAnswer(r.request_id, None, failure="scripted failure", attempts=3))
            else:
                try:
                    out.append(JudgeAnswer(r.request_id, r.answer_format.parse(text), raw_text=text, attempts=1))
                except MalformedAnswerError as exc:
                    out.append(JudgeAnswer(r.request_id, None, text, f"malformed answer: {exc}", 2, unparsed=True))
        return out


class FakePolicy:
    """An EditingPolicy returning the source brightened by ``delta``; records the kwargs it received."""

    sampling = SamplingSettings()

    def __init__(self, delta: int = 10) -> None:
        self.delta = delta
        self.calls: list[dict] = []

    def edit(self, sources, instructions, *, seed=0, **kwargs):
        self.calls.append({"n": len(sources), "seed": seed, **kwargs})
        return [Image.eval(s, lambda v: min(255, v + self.delta)) for s in sources]


class ScriptedServer:
    """A local OpenAI-compatible chat-completions server on 127.0.0.1.

    ``script`` maps the n-th request (0-based) to (status, body dict or text, headers, delay_s); requests past
    the script repeat the last entry. Received JSON bodies and headers are recorded.
    """

    def __init__(self, script: Sequence[tuple[int, object, dict, float]]) -> None:
        self.script = list(script)
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server API)
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                with server.lock:
                    index = len(server.bodies)
                    server.bodies.append(body)
                    server.headers.append(dict(self.headers))
                status, payload, headers, delay = server.script[min(index, len(server.script) - 1)]
                if delay:
                    threading.Event().wait(delay)
                data = json.dumps(payload).encode() if isinstance(payload, dict) else str(payload).encode()
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def chat_reply(text: str) -> dict:
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}
