"""Cost of scoring a batch of edits: JRM's one forward vs generative scoring vs EditReward's two passes.

One small random Qwen3-VL config (the same for all three), batch 8, in one run with interleaved repeats:

- ``jrm``: ``JRM.score`` - one batched forward whose input ends at ``<|reward|>``;
- ``generative``: the same backbone generates the JSON rationale after the evaluation prompt, forced to
  ``min_new_tokens = max_new_tokens = 128`` (greedy, KV cache), then a score is parsed from the text;
- ``two_pass``: ``EditRewardModel.score`` - EditReward's published scheme, two forwards with its two prompts.

Memory: peak resident-set growth (RSS sampled every millisecond from /proc/self/statm by a background thread
during one call, minus RSS just before it), per method, each in a fresh process (after one warm-up call) whose
malloc returns freed large blocks to the OS. tracemalloc would miss torch's tensor memory.
Run: ``python -m bench.reward_speed``; writes ``runs/bench/reward_speed.json``.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import re
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image
from transformers import Qwen3VLForConditionalGeneration

from editrl.io import atomic_write_json
from editrl.tiny_qwen_vl import build_tiny_qwen3_vl
from reward.editreward import EDITREWARD_TOKEN, EditRewardModel
from reward.jrm.model import JRM, JRMConfig
from reward.jrm.prompts import COMPACT_EVALUATION_PROMPT
from reward.qwen_vl_inputs import build_vl_batch, source_edit_sample

OUTPUT = Path("runs/bench/reward_speed.json")
GENERATED_TOKENS = 128


def _images(batch: int, side: int) -> tuple[list[Image.Image], list[Image.Image], list[str]]:
    gen = torch.Generator().manual_seed(0)

    def noise() -> Image.Image:
        pixels = torch.randint(0, 256, (side, side, 3), generator=gen, dtype=torch.uint8)
        return Image.fromarray(pixels.numpy())

    sources = [noise() for _ in range(batch)]
    edits = [noise() for _ in range(batch)]
    instructions = [f"replace object {i} with a red wooden chair and keep the background" for i in range(batch)]
    return sources, edits, instructions


class PeakRSS:
    """Peak RSS growth (bytes) during a ``with`` block, sampled every millisecond."""

    def __enter__(self) -> PeakRSS:
        gc.collect()
        self.baseline = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _rss(self) -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.001)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def delta_mib(self) -> float:
        return (self.peak - self.baseline) / 2**20


def generative_scorer(
    jrm: JRM, sources, edits, instructions, tokens: int = GENERATED_TOKENS
) -> Callable[[], list[float | None]]:
    """Greedy generation of exactly ``tokens`` tokens after the evaluation prompt, then a score parsed from the
    text (the inputs are moved to the model's device)."""
    samples = [
        source_edit_sample(src, ed, COMPACT_EVALUATION_PROMPT.format(instruction=ins) + ' Also give "score": 1-4.')
        for src, ed, ins in zip(sources, edits, instructions)
    ]

    @torch.no_grad()
    def run() -> list[float | None]:
        batch = build_vl_batch(jrm.tokenizer, jrm.image_processor, samples, padding_side="left")
        batch = batch.to(jrm.device, dtype=jrm.backbone.get_input_embeddings().weight.dtype)
        out = jrm.backbone.generate(
            **batch.model_inputs(),
            min_new_tokens=tokens,
            max_new_tokens=tokens,
            do_sample=False,
            pad_token_id=jrm.tokenizer.pad_token_id,
        )
        if out.shape[1] - batch.input_ids.shape[1] != tokens:
            raise RuntimeError("generation did not produce the forced number of tokens")
        texts = jrm.tokenizer.batch_decode(out[:, batch.input_ids.shape[1] :], skip_special_tokens=True)
        found = [re.search(r'"score"\s*:\s*([1-4](?:\.\d+)?)', t) for t in texts]
        return [float(m.group(1)) if m else None for m in found]

    return run


def _interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per call of each function, rotating the order every repeat."""
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    return {n: statistics.median(t) for n, t in times.items()}


def build_scorers(batch: int, side: int, hidden_size: int, num_layers: int) -> dict[str, Callable[[], object]]:
    """The three scorers on one random backbone size, bound to the same batch of inputs."""
    pixels = side * side
    jrm_parts = build_tiny_qwen3_vl(hidden_size=hidden_size, num_layers=num_layers, vision_hidden_size=128)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        backbone = Qwen3VLForConditionalGeneration(jrm_parts.config)
    jrm = JRM(
        backbone,
        jrm_parts.tokenizer,
        jrm_parts.image_processor,
        JRMConfig(head_mlp_size=1024, min_pixels=pixels, max_pixels=pixels, batch_size=batch),
    ).eval()
    er_parts = build_tiny_qwen3_vl(
        extra_special_tokens=(EDITREWARD_TOKEN,), hidden_size=hidden_size, num_layers=num_layers, vision_hidden_size=128
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        editreward = EditRewardModel(
            er_parts.config, er_parts.tokenizer, er_parts.image_processor, batch_size=batch, pixels=pixels
        ).eval()
    sources, edits, instructions = _images(batch, side)
    return {
        "jrm": lambda: jrm.score(sources, edits, instructions),
        "generative": generative_scorer(jrm, sources, edits, instructions),
        "two_pass": lambda: editreward.score(sources, edits, instructions),
        "jrm_inputs": lambda: jrm.scoring_inputs(sources, edits, instructions),
    }


def _memory_child(method: str, batch: int, side: int, hidden_size: int, num_layers: int) -> float:
    """Peak RSS growth (MiB) of one call of ``method`` in this (fresh) process, after one warm-up call."""
    torch.set_num_threads(1)
    fn = build_scorers(batch, side, hidden_size, num_layers)[method]
    fn()
    with PeakRSS() as rss:
        fn()
    return rss.delta_mib


def peak_memory(method: str, batch: int, side: int, hidden_size: int, num_layers: int) -> float:
    """Run :func:`_memory_child` in a fresh spawned process whose malloc returns freed blocks >= 64 KiB to the
    OS (``MALLOC_MMAP_THRESHOLD_``), so freed-but-cached memory from other calls cannot hide a peak."""
    previous = os.environ.get("MALLOC_MMAP_THRESHOLD_")
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"
    try:
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            return pool.apply(_memory_child, (method, batch, side, hidden_size, num_layers))
    finally:
        if previous is None:
            os.environ.pop("MALLOC_MMAP_THRESHOLD_")
        else:
            os.environ["MALLOC_MMAP_THRESHOLD_"] = previous


def measure(repeats: int, batch: int, side: int, hidden_size: int, num_layers: int) -> dict:
    """Time (interleaved, this process) and peak memory (fresh processes) of the three scorers on one size."""
    scorers = build_scorers(batch, side, hidden_size, num_layers)
    fns = {name: scorers[name] for name in ("jrm", "generative", "two_pass")}
    for fn in fns.values():  # warm-up
        fn()
    seconds = _interleaved(fns, repeats)
    memory = {name: peak_memory(name, batch, side, hidden_size, num_layers) for name in fns}
    scoring = scorers["jrm_inputs"]()
    parsed = sum(s is not None for s in scorers["generative"]())
    return {
        "hidden_size": hidden_size,
        "num_layers": num_layers,
        "jrm_tokens_per_sequence": int(scoring.attention_mask.sum(dim=1).float().mean()),
        "image_tokens_per_sequence": int(scoring.mm_token_type_ids.sum(dim=1).float().mean()),
        "seconds_per_batch": seconds,
        "speedup_jrm_vs_generative": seconds["generative"] / seconds["jrm"],
        "speedup_jrm_vs_two_pass": seconds["two_pass"] / seconds["jrm"],
        "peak_rss_delta_mib": memory,
        "generative_scores_parsed": f"{parsed}/{batch} (random weights: parsing is expected to fail)",
    }


def main(repeats: int = 3, batch: int = 8, side: int = 128, sizes: tuple[tuple[int, int], ...] = ((256, 4), (64, 2))) -> dict:
    """Measure every backbone size in ``sizes`` (hidden, layers); the first is the headline figure."""
    torch.set_num_threads(1)
    runs = [measure(repeats, batch, side, hidden, layers) for hidden, layers in sizes]
    result = {
        "config": {
            "backbone": "Qwen3-VL (random init), local tiny BPE tokenizer",
            "vision_hidden_size": 128,
            "batch": batch,
            "image_side": side,
            "repeats": repeats,
            "generated_tokens": GENERATED_TOKENS,
            "torch_threads": 1,
            "device": "cpu",
        },
        "headline": runs[0],
        "sizes": runs,
        "targets": {"vs_generative": 20.0, "vs_two_pass": 1.8},
        "memory_method": "peak RSS (sampled every 1 ms from /proc/self/statm) minus RSS just before one call, after one warm-up call, in a fresh process with MALLOC_MMAP_THRESHOLD_=65536",
    }
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(OUTPUT, result)
    print(f"reward scoring, batch {batch}, {side}px images, CPU, 1 thread, median of {repeats}")
    for run in runs:
        print(
            f" Qwen3-VL h={run['hidden_size']} L={run['num_layers']}: {run['jrm_tokens_per_sequence']} tokens/sequence "
            f"({run['image_tokens_per_sequence']} image)"
        )
        for name, sec in run["seconds_per_batch"].items():
            print(f"  {name:<11} {sec * 1000:9.1f} ms/batch   peak RSS +{run['peak_rss_delta_mib'][name]:7.1f} MiB")
        print(
            f"  JRM is {run['speedup_jrm_vs_generative']:.1f}x faster than generative (target >= 20x), "
            f"{run['speedup_jrm_vs_two_pass']:.2f}x faster than two-pass (target >= 1.8x)"
        )
    print(f"  wrote {OUTPUT}")
    return result


if __name__ == "__main__":
    main()
