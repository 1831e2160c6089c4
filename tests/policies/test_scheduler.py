"""OmniGen2's shifted time grid and Euler step, against hand-computed values and the official config file."""

import json

import pytest
import torch

from policies.omnigen2.scheduler import OmniGen2FlowMatchScheduler, time_shift_grid


def test_time_shift_grid_matches_hand_computed_values():
    # 6400 latent tokens -> m = 80/40 = 2; t/(2 - t) for t in 0, 1/4, 1/2, 3/4
    assert time_shift_grid(4, 6400).tolist() == pytest.approx([0.0, 1 / 7, 1 / 3, 0.6], abs=1e-7)
    assert time_shift_grid(4, 1600).tolist() == pytest.approx([0.0, 0.25, 0.5, 0.75], abs=1e-7)
    assert time_shift_grid(4, None).tolist() == pytest.approx([0.0, 0.25, 0.5, 0.75], abs=1e-7)


def test_loads_official_config_and_steps_euler(tmp_path):
    (tmp_path / "scheduler_config.json").write_text(
        json.dumps({"_class_name": "FlowMatchEulerDiscreteScheduler", "_diffusers_version": "0.33.1",
                    "dynamic_time_shift": True, "num_train_timesteps": 1000})
    )
    scheduler = OmniGen2FlowMatchScheduler.from_pretrained(tmp_path)
    assert scheduler.config.dynamic_time_shift is True
    scheduler.set_timesteps(4, num_tokens=6400)
    assert scheduler.grid.tolist() == pytest.approx([0.0, 1 / 7, 1 / 3, 0.6, 1.0], abs=1e-7)
    x, v = torch.ones(1, 1, 2, 2), torch.full((1, 1, 2, 2), 3.0)
    for t in scheduler.timesteps:
        x = scheduler.step(v, t, x).prev_sample
    assert torch.allclose(x, torch.full_like(x, 4.0))
    with pytest.raises(RuntimeError):
        scheduler.step(v, 1.0, x)
    plain = OmniGen2FlowMatchScheduler(dynamic_time_shift=False)
    plain.set_timesteps(4, num_tokens=6400)
    assert plain.timesteps.tolist() == pytest.approx([0.0, 0.25, 0.5, 0.75])
