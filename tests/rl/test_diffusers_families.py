"""One short Flow-GRPO run per diffusers family (tiny FLUX.1 Kontext, tiny Qwen-Image-Edit) on a local Ray
cluster with the tiny JRM as the reward: the same controller, actors and learner as OmniGen2."""

import pytest
import ray

from rl.controller import run_flow_grpo
from tests.rl.helpers import toy_config

pytestmark = pytest.mark.slow

FAMILY_OVERRIDES = {
    "flux_kontext": ["policy.kind=flux_kontext", "policy.text_guidance_scale=2.5",
                     "policy.flux_kontext.max_sequence_length=16"],
    "qwen_image_edit": ["policy.kind=qwen_image_edit", "policy.cfg_range=[0.0,1.0]"],
}


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.parametrize("kind", sorted(FAMILY_OVERRIDES))
def test_short_rl_run(tmp_path, kind):
    cfg = toy_config(tmp_path, *FAMILY_OVERRIDES[kind], "grpo.num_steps=2", "checkpoint.every_n_steps=2")
    assert cfg.policy.kind == kind
    result = run_flow_grpo(cfg)
    assert result.steps_completed == 2 and result.adapter_version == 2
    first = result.summaries[0]
    assert first.n_samples == cfg.grpo.instructions_per_step * cfg.grpo.group_size
    assert first.learner is not None and first.sync_bytes > 0
    # fresh on-policy round: re-scoring what the sampler drew gives ratio 1 up to float32 rounding
    assert first.learner.first_update_ratio_max_dev <= 1e-6
    assert result.last_checkpoint.name == "step_00000002"
