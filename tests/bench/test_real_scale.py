"""`make bench-gpu`'s code path on the tiny configs and the CPU: every phase runs and reports finite figures,
without Ray or wandb importable (the diffusers policy families included); the real configs build the released
sizes (on the meta device); the round projection and the per-phase time limit."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bench.real_scale import (
    CONFIGS,
    FAMILIES,
    FAMILY_PIPELINES,
    MIN_PHASE_SECONDS,
    PHASE_FUNCTIONS,
    PHASES,
    PhaseTimeout,
    balanced_sampler_gpus,
    component_parameters,
    finite_numbers,
    gqa_flop_mapping,
    load_component_configs,
    measured,
    project_round,
    run,
    sdpa_gqa_backward_flops,
    sdpa_gqa_forward_flops,
    time_limit,
)

REPO = Path(__file__).resolve().parents[2]
# Ray and wandb made unimportable: the benchmark must run on a bare GPU machine
RUN = "import sys; sys.modules['ray'] = None; sys.modules['wandb'] = None; from bench.real_scale import main; main(sys.argv[1:])"


def test_tiny_scale_runs_every_phase_with_finite_figures(tmp_path):
    out = tmp_path / "real_scale_tiny.json"
    proc = subprocess.run(
        [sys.executable, "-c", RUN, "--scale", "tiny", "--device", "cpu", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert sorted(report["phases"]) == sorted(PHASES)
    for name, figures in report["phases"].items():
        assert "error" not in figures, f"{name}: {figures['error']}"
        assert finite_numbers(figures), name
    phases = report["phases"]
    assert phases["sampler"]["seconds_per_sample"] > 0 and phases["sampler"]["achieved_tflop_s"] > 0
    settings = [k for k in phases["learner"] if k.startswith("micro_batch_")]
    assert len(settings) == 2 and all(phases["learner"][k]["seconds_per_sample"] > 0 for k in settings)
    assert phases["learner"]["first_update_ratio_max_dev"] <= 1e-6
    assert phases["reward"]["speedup_jrm_vs_generative"] > 0 and phases["jrm_train"]["seconds_per_pair"] > 0
    assert phases["colocated"]["scores_finite"] == 1.0
    assert phases["projection"]["one_pass_per_round"]["hybrid"]["round_seconds"] > 0
    assert "-- projection" in proc.stdout
    for family in FAMILIES:
        figures = phases[f"family_{family}"]
        assert figures["preset"] == f"configs/{family}_jrm_32gpu.yaml"
        assert figures["settings"]["lora_target_modules"] == 8
        assert figures["sampler"]["seconds_per_sample"] > 0 and figures["sampler"]["peak_memory_gib"] >= 0
        learner = figures["learner"]
        assert learner["micro_batch_0"]["seconds_per_sample"] > 0 and learner["micro_batch_0"]["peak_memory_gib"] >= 0
        assert learner["first_update_ratio_max_dev"] <= 1e-5  # the learner re-scores the sampler's own rollout
        assert figures["lora_parameters_million"] > 0 and f"-- family_{family}" in proc.stdout
        assert figures["projection"]["one_pass_per_round"]["hybrid"]["round_seconds"] > 0
    assert phases["family_flux_kontext"]["settings"]["guidance_scale"] == 2.5  # the presets' policy sections
    assert phases["family_qwen_image_edit"]["settings"]["guidance_scale"] == 4.0
    assert "family_phase_timeout_s" in report and "component_configs_verified" in report


# parameters of the released models (diffusers / transformers classes at the real configs)
RELEASED_PARAMETERS = {
    "flux_kontext": {"transformer": 11_901_408_320, "text_encoder_2": 4_762_310_656, "text_encoder": 123_060_480,
                     "vae": 83_819_683},
    "qwen_image_edit": {"transformer": 20_430_401_088, "text_encoder": 8_292_166_656, "vae": 126_892_531},
}


@pytest.mark.parametrize("family", FAMILIES)
def test_real_family_configs_build_the_released_sizes(family):
    # shapes only (meta device): FLUX.1 Kontext's 12B transformer and T5-XXL, Qwen-Image's 20B and Qwen2.5-VL-7B
    pipe = FAMILY_PIPELINES[family](load_component_configs("real"), torch.device("meta"), torch.bfloat16)
    counts = {name: round(billions * 1e9) for name, billions in component_parameters(pipe).items()}
    assert counts == pytest.approx(RELEASED_PARAMETERS[family], rel=1e-6)
    assert pipe.transformer.dtype == torch.bfloat16
    # each real config says which of its values were checked against a copy of the released config.json
    for name in {"flux_kontext": ("flux_kontext_transformer", "clip_l_text", "t5_xxl_encoder"),
                 "qwen_image_edit": ("qwen_image_transformer", "qwen_image_vae", "qwen2_5_vl_7b")}[family]:
        assert json.loads((CONFIGS / "real" / f"{name}.json").read_text())["_verified"]


def test_round_projection_from_the_measured_h200_figures():
    # the H200 figures: 2.15 s to draw, 0.074 s to score, ~5.4 s per training pass, per sample
    one = project_round(2.15, 0.074, 5.4, passes=1)
    assert one["hybrid"]["round_seconds"] == pytest.approx(9 * (2.15 + 0.074 + 5.4))  # ~69 s, ~9 samples per GPU
    assert one["split"]["sampler_seconds"] == pytest.approx(12 * 2.224)
    assert one["split"]["learner_seconds"] == pytest.approx(36 * 5.4)
    two = project_round(2.15, 0.074, 5.4, passes=2)
    assert two["split"]["round_seconds"] == pytest.approx(36 * 5.4 * 2)  # the learners bound the round
    assert two["split"]["busy_fraction"] < 0.5 and one["hybrid"]["busy_fraction"] == 1.0
    # pool sizes from the measured costs: learning is ~2.4x drawing + scoring, so 10 of 32 GPUs sample
    # (6 with two passes); still no shorter than hybrid, where no GPU waits for the other side
    balanced = one["split_balanced"]
    assert balanced["sampler_gpus"] == balanced_sampler_gpus(2.15, 0.074, 5.4, 1) == 10
    assert two["split_balanced"]["sampler_gpus"] == 6
    assert balanced["round_seconds"] < one["split"]["round_seconds"]
    assert balanced["round_seconds"] == pytest.approx(max(288 / 10 * 2.224, 288 / 22 * 5.4))
    assert one["hybrid"]["round_seconds"] <= balanced["round_seconds"]


def test_a_phase_past_its_limit_is_stopped():
    start = time.perf_counter()
    with pytest.raises(PhaseTimeout, match="limit"), time_limit(0.1):
        time.sleep(5)
    assert time.perf_counter() - start < 2


def test_gqa_attention_flops_match_the_formula():
    # q (B=2, H_q=8, L=10, D=16), k (2, H_kv=2, S=12, 16), v (2, 2, 12, D_v=32): QK^T and AV over 8 heads
    q, k, v = (2, 8, 10, 16), (2, 2, 12, 16), (2, 2, 12, 32)
    assert sdpa_gqa_forward_flops(q, k, v) == 2 * 2 * 8 * 10 * 12 * 16 + 2 * 2 * 8 * 10 * 12 * 32
    # torch's own backward count for the broadcast heads; equal heads are unchanged
    from torch.utils.flop_counter import sdpa_backward_flop_count

    grad = (2, 8, 10, 32)
    assert sdpa_gqa_backward_flops(grad, q, k, v) == sdpa_backward_flop_count(grad, q, (2, 8, 12, 16), (2, 8, 12, 32))
    assert sdpa_gqa_forward_flops(q, (2, 8, 12, 16), (2, 8, 12, 32)) == sdpa_gqa_forward_flops(q, k, v)
    assert torch.ops.aten._scaled_dot_product_efficient_attention in gqa_flop_mapping()


def test_a_failing_flop_count_keeps_the_timings():
    calls = []

    def fn():
        calls.append(1)
        if len(calls) == 4:  # cold + 2 timed calls succeed; the counted call fails
            raise RuntimeError("CUDA out of memory under the counter")
        return torch.ones(3).sum()

    m = measured(fn, torch.device("cpu"), repeats=2)
    assert m["flops"] is None and "out of memory" in m["flops_error"] and m["seconds"] >= 0 and len(calls) == 4
    counted = measured(lambda: torch.ones(8, 8) @ torch.ones(8, 8), torch.device("cpu"), repeats=1)
    assert counted["flops"] == 2 * 8 * 8 * 8
    skipped = measured(lambda: None, torch.device("cpu"), repeats=1, count_flops=False)
    assert skipped["flops"] is None and "not counted" in skipped["flops_error"]


def test_the_total_limit_skips_phases_and_each_phase_is_saved(monkeypatch):
    monkeypatch.setitem(PHASE_FUNCTIONS, "sampler", lambda ctx: time.sleep(1.0) or {"seconds_per_sample": 1.0})
    monkeypatch.setitem(PHASE_FUNCTIONS, "learner", lambda ctx: pytest.fail("must be skipped"))
    saved = []
    report = run("tiny", torch.device("cpu"), ("sampler", "learner"), total_timeout_s=MIN_PHASE_SECONDS + 0.5,
                 on_phase=lambda r: saved.append(sorted(r["phases"])))
    assert report["phases"]["sampler"]["seconds_per_sample"] == 1.0
    assert "left" in report["phases"]["learner"]["skipped"]
    assert saved == [["sampler"]]


def test_a_lost_device_skips_the_remaining_phases(monkeypatch):
    import bench.real_scale as real_scale

    def lost(device):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(real_scale, "_free", lost)
    monkeypatch.setitem(PHASE_FUNCTIONS, "sampler", lambda ctx: {"seconds_per_sample": 1.0})
    monkeypatch.setitem(PHASE_FUNCTIONS, "learner", lambda ctx: pytest.fail("must be skipped"))
    report = run("tiny", torch.device("cpu"), ("sampler", "learner"))
    assert "illegal memory access" in report["phases"]["sampler"]["device_lost"]
    assert report["phases"]["learner"] == {"skipped": "the device was lost in phase sampler"}


def test_projection_reads_an_earlier_runs_phases():
    inputs = {"sampler": {"seconds_per_sample": 2.0}, "reward": {"jrm": {"seconds_per_pair": 0.5}},
              "learner": {"micro_batch_0": {"seconds_per_sample": 4.0}, "micro_batch_6": {"error": "out of memory"}}}
    report = run("tiny", torch.device("cpu"), ("projection",), inputs=inputs)
    assert sorted(report["phases"]) == ["projection"]  # the inputs are read, not copied
    assert report["phases"]["projection"]["one_pass_per_round"]["hybrid"]["round_seconds"] == pytest.approx(9 * 6.5)
    missing = run("tiny", torch.device("cpu"), ("projection",), inputs={"sampler": {"seconds_per_sample": 2.0}})
    error = missing["phases"]["projection"]["error"]
    assert "reward.jrm.seconds_per_pair" in error and "learner.micro_batch_" in error and "sampler." not in error
