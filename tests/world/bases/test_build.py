"""The reduced build end to end: outputs load through the real loaders, metadata matches, same seed -> same weights.

Two reduced builds (about 10 s each on one core): ``a`` through the CLI; ``c`` in code, first with a size limit
it exceeds (it fails, leaves no output and keeps its stages), then resumed with the preset's limit.
"""

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from editrl.config import ConfigError
from editrl.manifest import DamagedCheckpointError
from policies.omnigen2.pipeline import OmniGen2EditPipeline
from reward.jrm.model import JRM
from world.bases.build import build_bases, main, work_dir_of
from world.bases.config import REPO_ROOT, load_bases_config
from world.bases.load import check_bases, load_backbone_base, load_policy_base
from world.render import to_pil
from world.tasks import make_tasks

LIMIT_BYTES = 25_000_000


def _weights(root: Path) -> dict[str, torch.Tensor]:
    return {f"{p.relative_to(root)}:{k}": v for p in sorted(root.rglob("*.safetensors")) for k, v in load_file(p).items()}


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    root = tmp_path_factory.mktemp("bases")
    main(["--out", str(root / "a"), "--size", "reduced", "--no-progress"])
    cfg = load_bases_config("reduced")
    with pytest.raises(ValueError, match="max_total_mb"):
        build_bases(dataclasses.replace(cfg, max_total_mb=0.01), root / "c", progress=False)
    failed = {"out_exists": (root / "c").exists(), "work_has": sorted(p.name for p in work_dir_of(root / "c").iterdir())}
    resumed = build_bases(cfg, root / "c", progress=False)
    return root, cfg, failed, resumed


def test_reduced_build_writes_both_layouts_under_the_size_limit(builds):
    root, cfg, _, _ = builds
    out = root / "a"
    for component in ("transformer", "vae", "scheduler", "mllm", "processor"):
        assert (out / "policy" / component).is_dir()
    assert (out / "policy" / "model_index.json").is_file()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json"):
        assert (out / "backbone" / name).is_file()
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    info = json.loads((out / "build_info.json").read_text())
    assert info["sizes_bytes"]["total"] == total - (out / "build_info.json").stat().st_size
    assert 100_000 < total <= LIMIT_BYTES and cfg.max_total_mb * 1e6 == LIMIT_BYTES
    assert not work_dir_of(out).exists()  # the work folder became the output folder


def test_metadata_records_the_build_config_and_git_revision(builds):
    root, cfg, _, _ = builds
    out = root / "a"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True)
    expected_rev = head.stdout.strip() if head.returncode == 0 else "unknown"
    info = check_bases(out, cfg)
    assert info["config"] == dataclasses.asdict(cfg) and info["git_rev"] == expected_rev
    for kind in ("policy", "backbone"):
        meta = json.loads((out / kind / "world_base.json").read_text())
        assert meta["git_rev"] == expected_rev and meta["config"][kind] == dataclasses.asdict(getattr(cfg, kind))
        if kind == "backbone":  # the reduced preset runs the second (varied wordings) phase too
            assert meta["training"]["variety_examples"] >= 3 * cfg.backbone.n_tasks
            assert meta["training"]["variety_heldout_answer_loss_trained"] is not None
        for path in (out / kind).rglob("*.safetensors"):
            with safe_open(path, framework="pt") as handle:
                header = handle.metadata()
            assert header["editrl.base"] == kind and header["editrl.git_rev"].startswith(expected_rev)
            assert header["format"] == "pt"


def test_the_policy_base_loads_through_the_policy_registry_and_edits(builds):
    root, cfg, _, _ = builds
    pipeline = load_policy_base(root / "a", cfg, use_lora=False, num_inference_steps=2)
    assert isinstance(pipeline, OmniGen2EditPipeline)
    saved = load_file(root / "a" / "policy" / "transformer" / "diffusion_pytorch_model.safetensors")
    loaded = pipeline.transformer.state_dict()
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k]) for k in saved)
    task = make_tasks("heldout", 1)[0]
    edited = pipeline.edit([to_pil(task.source_image)], [task.instruction], seed=0)
    assert edited[0].size == (cfg.image_size, cfg.image_size)


def test_the_backbone_base_loads_through_the_jrm_backbone_path_and_scores(builds):
    root, cfg, _, _ = builds
    jrm = load_backbone_base(root / "a", cfg)
    assert isinstance(jrm, JRM)
    saved = load_file(root / "a" / "backbone" / "model.safetensors")
    loaded = jrm.backbone.state_dict()
    same_shape = [k for k in saved if k in loaded and saved[k].shape == loaded[k].shape]
    assert len(same_shape) >= len(saved) - 2  # all but the embedding rows the JRM's new tokens were added to
    assert all(torch.equal(saved[k], loaded[k]) for k in same_shape)
    tasks = make_tasks("heldout", 2)
    scores = jrm.score([to_pil(t.source_image) for t in tasks], [to_pil(t.target_image) for t in tasks], [t.instruction for t in tasks])
    assert torch.isfinite(scores.mu).all()


def test_a_different_build_config_or_damaged_file_is_named(builds, tmp_path):
    root, cfg, _, _ = builds
    other = dataclasses.replace(cfg, policy=dataclasses.replace(cfg.policy, flow_steps=cfg.policy.flow_steps + 1))
    with pytest.raises(ConfigError, match=rf"build_info\.json: config key 'policy\.flow_steps' is {cfg.policy.flow_steps}\b"):
        load_policy_base(root / "a", other)
    copy = tmp_path / "bases"
    shutil.copytree(root / "a", copy)
    meta_path = copy / "backbone" / "world_base.json"
    meta = json.loads(meta_path.read_text())
    meta["config"]["backbone"]["steps"] += 1
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DamagedCheckpointError, match="world_base.json"):
        load_backbone_base(copy, cfg)
    weights = copy / "policy" / "vae" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(DamagedCheckpointError, match="vae/diffusion_pytorch_model.safetensors"):
        load_policy_base(copy, cfg)


def test_size_limit_is_atomic_and_the_build_resumes_to_the_same_weights(builds):
    root, _, failed, resumed = builds
    assert failed == {"out_exists": False, "work_has": ["backbone", "policy"]}
    assert resumed.reused == ["policy", "backbone"] and resumed.seconds == {}
    a, c = _weights(root / "a"), _weights(root / "c")
    assert a.keys() == c.keys() and len(a) > 50
    assert all(torch.equal(a[k], c[k]) for k in a)  # same seed, same machine: the same tensors


def test_a_foreign_output_folder_is_refused(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a bases folder"):
        build_bases(load_bases_config("reduced"), tmp_path, progress=False)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_the_backbone_jrm_sees_images_at_the_side_the_backbone_was_pretrained_at(builds):
    root, cfg, _, _ = builds
    jrm = load_backbone_base(root / "a", cfg)
    side = cfg.backbone.image_side
    assert jrm.config.min_pixels == jrm.config.max_pixels == side * side
    rows = jrm.backbone.get_input_embeddings().weight  # <|reward|> starts where the base begins its answers
    assert jrm.config.reward_token_init == "answer_start"
    assert torch.equal(rows[jrm.reward_token_id], rows[jrm.answer_start_token_id()])


def test_the_evaluation_reports_held_out_if_and_the_within_group_spread(builds, tmp_path):
    import json

    import numpy as np

    from world.bases.evaluate import main as evaluate
    from world.bases.evaluate import within_group_std

    assert within_group_std(np.array([[1, 1, 3, 3], [2, 2, 2, 2]], dtype=float)) == 0.5  # stds 1 and 0
    root, _, _, _ = builds
    report = evaluate(["--bases", str(root / "a"), "--size", "reduced", "--heldout", "4", "--groups", "2",
                       "--group-size", "3", "--work", str(tmp_path)])
    saved = json.loads((tmp_path / "evaluation.json").read_text())
    policy = saved["policy"]
    assert sum(policy["if_histogram"].values()) == policy["n_heldout"] == 4
    assert 1.0 <= policy["oracle_if"] <= 4.0 and 1.0 <= policy["sde_if_mean"] <= 4.0
    assert 0.0 <= policy["sde_if_within_group_std"] <= 1.5 and (policy["groups"], policy["group_size"]) == (2, 3)
    assert 0.0 <= policy["sde_share_groups_with_spread"] <= 1.0
    assert policy["sde_if_mean"] <= policy["sde_if_best_of_group"] <= 4.0
    assert "jrm" not in report  # --jrm-steps 0 skips the fine-tuning


def test_the_demo_starts_its_policy_and_jrms_from_the_bases(builds, tmp_path):
    from editrl.config import load_config
    from world.demo import stages
    from world.demo.config import DemoConfig

    root, cfg, _, _ = builds
    demo = load_config(DemoConfig, REPO_ROOT / "configs" / "demo_smoke.yaml",
                       [f"bases={root / 'a'}", "bases_size=reduced", f"output_dir={tmp_path}"])
    policy = stages.stage_pretrain(demo, tmp_path)
    assert policy.checkpoint_dir == root / "a" / "policy" and policy.vae_losses == policy.flow_losses == []
    assert not (tmp_path / "policy_pretrained").exists()  # nothing was pretrained here
    model = stages.jrm_model_init(demo)
    assert model.backbone == str(root / "a" / "backbone") and model.backbone_image_side == cfg.backbone.image_side
    assert model.backbone_head_mlp_size == demo.jrm.model.tiny_head_mlp_size
    assert model.backbone_reward_token_init == "answer_start"
    run = stages.jrm_run_config(demo, tmp_path, 0.7)
    assert run.model == model and run.alpha == 0.7 and run.output_dir == str(tmp_path / "jrm_alpha_0.7")
    assert demo.jrm.prompt is None and run.prompt == demo.jrm.model.tiny_prompt  # not the paper's long prompt
    # without bases: the demo's own tiny JRM
    assert stages.jrm_model_init(load_config(DemoConfig, REPO_ROOT / "configs" / "demo_smoke.yaml")).tiny
    with pytest.raises(ConfigError, match="bases: .* is not a folder"):
        load_config(DemoConfig, REPO_ROOT / "configs" / "demo_smoke.yaml", [f"bases={tmp_path / 'missing'}"])
    guided = load_config(DemoConfig, REPO_ROOT / "configs" / "demo_smoke.yaml",
                         [f"bases={root / 'a'}", "bases_size=reduced", "rl.policy.text_guidance_scale=3.0",
                          "rl.policy.image_guidance_scale=1.5"])
    with pytest.raises(ConfigError, match="rl.policy.negative_prompt"):  # the official negative prompt by default
        stages.stage_pretrain(guided, tmp_path)
    guided.rl.policy.negative_prompt = cfg.policy.uncond_prompt
    assert stages.stage_pretrain(guided, tmp_path).checkpoint_dir == root / "a" / "policy"
    wrong_size = load_config(DemoConfig, REPO_ROOT / "configs" / "demo_smoke.yaml",
                             [f"bases={root / 'a'}", "bases_size=full", f"output_dir={tmp_path}"])
    with pytest.raises(ValueError, match="build_info.json"):  # the full preset's config is not what was built
        stages.stage_pretrain(wrong_size, tmp_path)


def test_stages_built_side_by_side_in_worker_processes_give_the_sequential_weights(builds, tmp_path):
    root, cfg, _, _ = builds
    report = build_bases(cfg, tmp_path / "p", progress=False, jobs=2)
    assert sorted(report.seconds) == ["backbone", "policy"] and report.reused == []
    a, p = _weights(root / "a"), _weights(tmp_path / "p")
    assert sorted(a) == sorted(p)
    assert all(torch.equal(a[k], p[k]) for k in a)
    assert not list((tmp_path / "p").glob("*.log"))  # the stage logs stay out of the bases
    with pytest.raises(ValueError, match="jobs"):
        build_bases(cfg, tmp_path / "q", progress=False, jobs=0)
