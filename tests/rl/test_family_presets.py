"""The FLUX.1 Kontext and Qwen-Image-Edit presets load as small overrides of the OmniGen2 preset."""

import pytest

from rl.config import load_experiment_config
from tests.rl.helpers import REPO


@pytest.mark.parametrize(
    ("preset", "kind", "guidance"),
    [("flux_kontext_jrm_32gpu.yaml", "flux_kontext", 2.5), ("qwen_image_edit_jrm_32gpu.yaml", "qwen_image_edit", 4.0)],
)
def test_family_preset_chain(tmp_path, preset, kind, guidance):
    # the presets name cluster paths; blank them so they load here
    local = ["policy.checkpoint=null", "policy.tiny=true", "jrm.model.backbone=null", "jrm.model.tiny=true", f"data.train_path={tmp_path}/x.jsonl"]
    cfg = load_experiment_config(REPO / "configs" / preset, local)
    paper = load_experiment_config(REPO / "configs" / "omnigen2_jrm_32gpu.yaml", local)
    assert cfg.policy.kind == kind and cfg.policy.text_guidance_scale == guidance
    assert (cfg.policy.height, cfg.policy.width, cfg.policy.num_inference_steps) == (512, 512, 20)
    assert "add_q_proj" in cfg.policy.lora_target_modules and cfg.policy.dtype == "bfloat16"
    # the same reward, learner, placement and GRPO recipe as OmniGen2
    assert cfg.ray == paper.ray and cfg.grpo == paper.grpo and cfg.reward == paper.reward
