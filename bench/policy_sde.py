"""Cost of Flow-GRPO's SDE step with log-prob bookkeeping vs a plain Euler step, and rollout memory.

Same tiny OmniGen2 pipeline, same inputs, in one run with interleaved repeats (so machine noise hits both
sides alike). A "step" is the guided velocity (dual CFG, all branches in one transformer call) plus the
update: ``sde_step_with_logprob`` (noise 0.9) or the Euler update. Also reports the update alone, and
bytes per sample of a Rollout (measured on the tiny model, and computed for the real 512² recipe).
Run: ``python -m bench.policy_sde``; writes ``runs/bench/policy_sde.json``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

from editrl.io import atomic_write_json
from policies.omnigen2.guidance import cfg_active
from policies.omnigen2.sde import sde_step_with_logprob
from policies.omnigen2.settings import SamplingSettings
from policies.omnigen2.tiny import build_tiny_pipeline
from policies.rollout import Rollout

OUTPUT = Path("runs/bench/policy_sde.json")


def _seconds_per_call(fn: Callable[[], object], inner: int) -> float:
    """Mean seconds of one call over ``inner`` back-to-back calls."""
    start = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - start) / inner


def _interleaved(a: Callable[[], object], b: Callable[[], object], repeats: int, inner: int) -> tuple[float, float]:
    """Median over repeats of the per-call seconds of a and b, alternating which runs first."""
    times_a, times_b = [], []
    for r in range(repeats):
        order = ((a, times_a), (b, times_b)) if r % 2 == 0 else ((b, times_b), (a, times_a))
        for fn, sink in order:
            sink.append(_seconds_per_call(fn, inner))
    return statistics.median(times_a), statistics.median(times_b)


def rollout_bytes(rollout: Rollout) -> int:
    """Total bytes of the tensors a Rollout holds."""
    c = rollout.conditions
    tensors = [rollout.latents, rollout.log_probs, rollout.timesteps, rollout.images, c.text_hidden_states,
               c.text_attention_mask]
    tensors += [t for t in (c.negative_text_hidden_states, c.negative_text_attention_mask) if t is not None]
    tensors += [r for refs in c.ref_latents for r in refs]
    return sum(t.numel() * t.element_size() for t in tensors)


def real_recipe_bytes_per_sample(
    steps: int = 20, side: int = 512, latent_channels: int = 16, text_tokens: int = 64, text_dim: int = 2048
) -> int:
    """Computed (not measured) Rollout bytes per sample for OmniGen2 at 512², T=20: fp32 latents and images,
    bf16 text states (instruction + negative) and one 512² reference latent."""
    latent = latent_channels * (side // 8) ** 2
    return (steps + 1) * latent * 4 + steps * 4 + 3 * side * side * 4 + 2 * text_tokens * (text_dim * 2 + 1) + latent * 2


def main(repeats: int = 9, inner: int = 5, batch: int = 4, side: int = 64) -> dict:
    """Measure and print; returns the results also written to ``runs/bench/policy_sde.json``."""
    torch.set_num_threads(1)
    settings = SamplingSettings(num_inference_steps=10, height=side, width=side)
    pipeline = build_tiny_pipeline(sampling=settings)
    pipeline.add_lora(rank=4, alpha=8)
    sources = [Image.new("RGB", (side, side), (40 * i, 90, 200 - 30 * i)) for i in range(batch)]
    instructions = [f"edit number {i}: make the background blue" for i in range(batch)]
    generator = torch.Generator().manual_seed(0)
    rollout = pipeline.sample_with_logprob(sources, instructions, generator=generator)
    conditions = rollout.conditions
    x = rollout.latents[:, 1].contiguous()
    t, t_next = rollout.timesteps[1], rollout.timesteps[2]
    guided = cfg_active(torch.full((batch,), 1), settings.num_inference_steps, settings.cfg_range)
    velocity = torch.randn_like(x)

    def velocity_of(latents: torch.Tensor) -> torch.Tensor:
        return pipeline.guided_velocity(latents, t.expand(batch), conditions, guided, 4.0, 2.0)

    @torch.no_grad()
    def sde_step() -> torch.Tensor:
        return sde_step_with_logprob(velocity_of(x), t, t_next, x, 0.9, generator=generator).prev_sample

    @torch.no_grad()
    def euler_step() -> torch.Tensor:
        return x + (t_next - t) * velocity_of(x)

    def sde_update() -> torch.Tensor:
        return sde_step_with_logprob(velocity, t, t_next, x, 0.9, generator=generator).log_prob

    def euler_update() -> torch.Tensor:
        return x + (t_next - t) * velocity

    sde_s, euler_s = _interleaved(sde_step, euler_step, repeats, inner)
    sde_u, euler_u = _interleaved(sde_update, euler_update, repeats, inner * 20)
    measured = rollout_bytes(rollout) / batch
    results = {
        "setup": {"batch": batch, "output_px": side, "latent": list(x.shape[1:]), "steps": settings.num_inference_steps,
                  "cfg": "dual (3 branches in one call)", "repeats": repeats, "inner": inner,
                  "threads": torch.get_num_threads()},
        "step_seconds": {"sde_with_logprob": sde_s, "euler": euler_s},
        "step_overhead_ratio": sde_s / euler_s - 1.0,
        "update_only_seconds": {"sde_with_logprob": sde_u, "euler": euler_u},
        "update_only_share_of_euler_step": (sde_u - euler_u) / euler_s,
        "rollout_bytes_per_sample_tiny_measured": measured,
        "rollout_bytes_per_sample_real_512_computed": real_recipe_bytes_per_sample(),
        "target": "log-prob bookkeeping <= 10% of a step",
    }
    print(f"policy_sde: tiny OmniGen2, batch {batch}, {side}px, dual CFG, {repeats}x{inner} interleaved repeats")
    print(f"  step: SDE+logprob {sde_s * 1e3:.2f} ms vs Euler {euler_s * 1e3:.2f} ms "
          f"-> overhead {100 * results['step_overhead_ratio']:+.1f}% (target <= 10%)")
    print(f"  update alone: SDE+logprob {sde_u * 1e6:.0f} us vs Euler {euler_u * 1e6:.0f} us "
          f"({100 * results['update_only_share_of_euler_step']:.1f}% of an Euler step)")
    print(f"  rollout memory per sample: {measured / 1024:.1f} KiB (tiny, measured); "
          f"{results['rollout_bytes_per_sample_real_512_computed'] / 2**20:.1f} MiB (512² T=20 recipe, computed)")
    atomic_write_json(OUTPUT, results)
    print(f"  wrote {OUTPUT}")
    return results


if __name__ == "__main__":
    main()
