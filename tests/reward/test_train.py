"""JRM training: schedule, config checks, exact resume, and a short Ray Train run that learns a synthetic task."""

import json
import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from editrl.config import ConfigError, load_config
from reward.jrm.data import PairDataError, load_images, load_preference_pairs, split_pairs
from reward.jrm.evaluation import pairwise_accuracy
from reward.jrm.model import JRM
from reward.jrm.model_init import build_model
from reward.jrm.schedule import lr_factor, warmup_cosine_schedule
from reward.jrm.train import train_jrm
from reward.jrm.train_config import JRMDataConfig, JRMModelInit, JRMTrainConfig
from reward.jrm.train_data import drop_overlong, sequence_length_bound
from reward.jrm.train_loop import planned_steps, run_worker, step_alpha
from reward.registry import RewardModelConfig, build_reward_model
from tests.reward.test_annotate import chat_server  # noqa: F401 (the scripted OpenAI-compatible server fixture)

REPO = Path(__file__).resolve().parents[2]


OTHER_HUES = [(0, 0, 230), (0, 200, 0), (220, 220, 0), (0, 200, 200), (200, 0, 200), (120, 120, 120), (255, 140, 0)]


def make_colour_pairs(root: Path, n: int, seed: int = 0, rationales: bool = False) -> Path:
    """Synthetic "make the square red" pairs: the preferred edit is red (jittered), the rejected one another
    hue; IF 4 vs 1, VQ equal (a tie on that dimension)."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        good = (200 + rng.randint(0, 40), rng.randint(0, 40), rng.randint(0, 40))
        bad = tuple(min(255, c + rng.randint(0, 40)) for c in OTHER_HUES[i % len(OTHER_HUES)])
        for name, colour in (("src", (128, 128, 128)), ("good", good), ("bad", bad)):
            Image.new("RGB", (32, 32), colour).save(root / f"{i}_{name}.png")
        rec = {
            "id": f"p{i}",
            "prompt": "make the square red",
            "path_src": f"{i}_src.png",
            "path1": f"{i}_good.png",
            "path2": f"{i}_bad.png",
            "model1_dim1_score": 4,
            "model1_dim2_score": 3,
            "model1_overall_score": 7,
            "model2_dim1_score": 1,
            "model2_dim2_score": 3,
            "model2_overall_score": 4,
            "tie_case": False,
        }
        if rationales:
            rec["rationale1"] = json.dumps({"visual_quality": {"reasoning": "the square is red"}})
            rec["rationale2"] = json.dumps({"visual_quality": {"reasoning": "the square is not red"}})
        lines.append(json.dumps(rec))
    path = root / "pairs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _cfg(pairs: Path, out: Path, **over) -> JRMTrainConfig:
    base = dict(
        model=JRMModelInit(tiny=True),
        data=JRMDataConfig(train_pairs=str(pairs), held_out_fraction=0.25, max_pixels=1024, image_check="exists"),
        output_dir=str(out),
        alpha=0.0,
        learning_rate=3e-3,
        weight_decay=0.0,
        warmup_ratio=0.1,
        epochs=100,
        global_batch_size=4,
        per_device_batch_size=4,
        num_workers=1,
        use_gpu=False,
        precision="fp32",
        gradient_checkpointing=False,
        eval_every_steps=1000,
        checkpoint_every_steps=1000,
        resume="never",
        wandb_mode="disabled",
        progress_bar=False,
    )
    base.update(over)
    return JRMTrainConfig(**base)


def test_lr_schedule_warmup_then_cosine():
    factors = [lr_factor(s, total_steps=10, warmup_steps=2) for s in range(11)]
    assert factors[:3] == pytest.approx([0.5, 1.0, 1.0])
    assert factors[6] == pytest.approx(0.5)  # progress (6-2)/8 = 0.5 -> 0.5 * (1 + cos(pi/2))
    assert factors[10] == pytest.approx(0.0)
    assert lr_factor(10, 10, 2, min_ratio=0.1) == pytest.approx(0.1)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    scheduler = warmup_cosine_schedule(optimizer, total_steps=4, warmup_ratio=0.3)  # ceil(1.2) = 2 warmup steps
    lrs = []
    for _ in range(4):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([1.0, 2.0, 2.0, 1.0])  # 2 * [1/2, 2/2, cos-progress 0, cos-progress 1/2]


def test_planned_steps_epochs_capped_by_max_steps():
    assert planned_steps(JRMTrainConfig(epochs=3), batches_per_epoch=5) == 15
    assert planned_steps(JRMTrainConfig(epochs=3, max_steps=7), batches_per_epoch=5) == 7


def test_config_batch_arithmetic_and_presets():
    with pytest.raises(ConfigError, match="global_batch_size"):
        load_config(JRMTrainConfig, None, ["global_batch_size=10", "num_workers=4"])
    paper = load_config(JRMTrainConfig, REPO / "configs" / "jrm_qwen3vl8b.yaml")
    assert (paper.global_batch_size, paper.num_workers, paper.grad_accumulation_steps) == (64, 8, 8)
    assert (paper.learning_rate, paper.weight_decay, paper.epochs, paper.data.max_pixels) == (2e-6, 0.1, 10, 200_704)
    assert (paper.adam_beta1, paper.adam_beta2, paper.warmup_ratio, paper.strategy) == (0.9, 0.95, 0.05, "fsdp")
    tiny = load_config(JRMTrainConfig, REPO / "configs" / "jrm_tiny.yaml")
    assert tiny.model.tiny and tiny.model.backbone is None and not tiny.use_gpu
    assert (paper.rank_loss, paper.lm_reduction) == ("hpsv3", "token_mean")


def test_objective_keys_are_validated_and_recorded_in_the_model_config():
    from reward.jrm.model import JRMConfig
    from reward.jrm.train_loop import record_objective

    for bad, key in (("rank_loss=mc", "rank_loss"), ("lm_reduction=sum", "lm_reduction")):
        with pytest.raises(ConfigError, match=key):
            load_config(JRMTrainConfig, None, [bad])
    cfg = load_config(JRMTrainConfig, None, ["rank_loss=paper", "lm_reduction=sequence_sum", "alpha=0.3"])
    model_cfg = JRMConfig()
    record_objective(model_cfg, cfg)
    assert (model_cfg.alpha, model_cfg.rank_loss, model_cfg.lm_reduction) == (0.3, "paper", "sequence_sum")


def test_tiny_model_init_sets_size_and_image_budget():
    init = JRMModelInit(
        tiny=True, tiny_hidden_size=64, tiny_num_layers=3, tiny_vision_depth=1, tiny_image_side=96, tiny_prompt="compact"
    )
    model = build_model(init)
    assert model.config.prompt == "compact"
    text, vision = model.backbone.config.text_config, model.backbone.config.vision_config
    assert (text.hidden_size, text.num_hidden_layers, vision.depth) == (64, 3, 1)
    assert model.head.mlp[0].in_features == 64
    batch = model.build_inputs([Image.new("RGB", (32, 32))], [Image.new("RGB", (32, 32))], ["make it red"])
    image_pad = model.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((batch.input_ids == image_pad).sum()) == 2 * (96 // 32) ** 2  # two images, (side/32)^2 tokens each
    for bad, key in (
        ("model.tiny_image_side=100", "tiny_image_side"),
        ("model.tiny_hidden_size=48", "tiny_hidden_size"),
        ("model.tiny_prompt=short", "tiny_prompt"),
    ):
        with pytest.raises(ConfigError, match=key):
            load_config(JRMTrainConfig, None, ["model.tiny=true", bad])


def test_length_bound_covers_the_real_sequence_and_drops_overlong_pairs(tmp_path):
    pairs_path = make_colour_pairs(tmp_path / "data", 2, rationales=True)
    pairs, _ = load_preference_pairs(pairs_path)
    model = JRM.build_tiny(seed=0)
    pairs[1].rationales["rejected"] = "very long rationale " * 50
    for pair in pairs:
        loaded = load_images(pair, 4096)
        batch = model.build_inputs(
            [loaded.source] * 2, [loaded.preferred, loaded.rejected], [pair.instruction] * 2,
            rationales=[pair.rationales["preferred"], pair.rationales["rejected"]],
        )
        assert batch.attention_mask.sum(dim=1).max() <= sequence_length_bound(model, pair, 4096)
    short_bound = sequence_length_bound(model, pairs[0], 4096)
    kept, dropped = drop_overlong(model, pairs, short_bound, 4096)
    assert [p.record_id for p in kept] == ["p0"] and dropped == ["p1"]


class _Crash(RuntimeError):
    pass


def test_resume_from_mid_run_checkpoint_reaches_the_same_weights(tmp_path):
    pairs = make_colour_pairs(tmp_path / "data", 12, rationales=True)
    common = dict(alpha=0.5, max_steps=4, checkpoint_every_steps=2, eval_every_steps=2, warmup_ratio=0.5)
    run_worker(_cfg(pairs, tmp_path / "straight", **common))

    def crash_at_step_two(metrics):
        if metrics["step"] == 2:
            raise _Crash

    interrupted = _cfg(pairs, tmp_path / "resumed", resume="auto", **common)
    with pytest.raises(_Crash):
        run_worker(interrupted, report=crash_at_step_two)
    assert [p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir()] == ["step_00000002"]
    run_worker(interrupted)
    log = [json.loads(line)["step"] for line in (tmp_path / "resumed" / "train_log.jsonl").read_text().splitlines()]
    assert log == [1, 2, 3, 4]
    # how joint the run was: every training pair had both rationales, every edit of a step was supervised
    metrics = json.loads((tmp_path / "resumed" / "metrics.json").read_text())
    assert metrics["rationales"] == {"pairs": 9, "both_sides": 9, "one_side": 0, "no_side": 0}
    first = json.loads((tmp_path / "resumed" / "train_log.jsonl").read_text().splitlines()[0])
    assert first["train/lm_sides"] == 2 * 4  # 4 pairs per step, both sides
    straight = load_file(tmp_path / "straight" / "final" / "backbone" / "model.safetensors")
    resumed = load_file(tmp_path / "resumed" / "final" / "backbone" / "model.safetensors")
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    head_a = load_file(tmp_path / "straight" / "final" / "reward_head.safetensors")
    head_b = load_file(tmp_path / "resumed" / "final" / "reward_head.safetensors")
    assert all(torch.equal(head_a[k], head_b[k]) for k in head_a)
    initial = JRM.build_tiny(seed=0).head.state_dict()
    assert not all(torch.equal(initial[k], head_a[k]) for k in head_a)


def test_rank_warmup_trains_ranking_alone_then_the_joint_loss(tmp_path):
    assert [step_alpha(JRMTrainConfig(alpha=0.7, rank_warmup_steps=2), s) for s in range(4)] == [0.0, 0.0, 0.7, 0.7]
    assert step_alpha(JRMTrainConfig(alpha=0.7), 0) == 0.7  # the paper's joint loss from the first step
    with pytest.raises(ConfigError, match="rank_warmup_steps"):
        JRMTrainConfig(rank_warmup_steps=-1).validate()
    pairs = make_colour_pairs(tmp_path / "data", 12, rationales=True)
    run_worker(_cfg(pairs, tmp_path / "run", alpha=0.5, rank_warmup_steps=2, max_steps=3))
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [row["train/alpha"] for row in log] == [0.0, 0.0, 0.5]
    assert [row["train/lm_sides"] for row in log] == [0, 0, 2 * 4]  # no rationale is even appended before step 3
    for row in log[:2]:  # L = L_rank while alpha is 0
        assert row["train/lm_loss"] == 0.0 and row["train/loss"] == pytest.approx(row["train/rank_loss"], rel=1e-6)
    last = log[2]
    assert last["train/lm_loss"] > 0
    assert last["train/loss"] == pytest.approx(0.5 * last["train/rank_loss"] + 0.5 * last["train/lm_loss"], rel=1e-5)


def _data_parallel_worker(rank: int, cfgs: list[JRMTrainConfig], port: int) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        for cfg in cfgs:
            run_worker(cfg, rank=rank, world_size=2)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_workers_match_one_worker_and_sharded_runs_resume(tmp_path):
    import socket

    import torch.multiprocessing as mp

    pairs = make_colour_pairs(tmp_path / "data", 16)
    # a large adam_eps keeps AdamW from amplifying float-rounding differences of near-zero gradients into
    # lr-sized steps (summation order differs between the layouts); the maths must agree, not the bits
    common = dict(global_batch_size=8, per_device_batch_size=4, max_steps=3, weight_decay=0.1, adam_eps=1e-2)
    run_worker(_cfg(pairs, tmp_path / "one", num_workers=1, **common))  # 2 accumulation steps
    two = {
        strategy: _cfg(pairs, tmp_path / strategy, num_workers=2, strategy=strategy, checkpoint_every_steps=2, **common)
        for strategy in ("ddp", "fsdp")
    }
    mid = tmp_path / "fsdp" / "checkpoints" / "step_00000002"
    resumed_cfg = replace(two["fsdp"], output_dir=str(tmp_path / "resumed"), resume=str(mid))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(_data_parallel_worker, args=([two["ddp"], two["fsdp"], resumed_cfg], port), nprocs=2)

    def final_weights(name):
        return load_file(tmp_path / name / "final" / "backbone" / "model.safetensors")

    one = final_weights("one")
    initial = JRM.build_tiny(seed=0).backbone.state_dict()
    assert [k for k in one if not torch.equal(one[k], initial[k])]
    for strategy in ("ddp", "fsdp"):
        other = final_weights(strategy)
        assert all(torch.allclose(one[k], other[k], atol=1e-6) for k in one), strategy
    # the sharded run's mid-run checkpoint holds the full optimizer state and resumes to the same weights
    opt = load_file(mid / "optimizer.safetensors")
    assert opt["head.mlp.0.weight::exp_avg"].shape == JRM.build_tiny(seed=0).head.mlp[0].weight.shape
    fsdp, resumed = final_weights("fsdp"), final_weights("resumed")
    assert all(torch.allclose(fsdp[k], resumed[k], atol=1e-7) for k in fsdp)


@pytest.mark.slow
def test_ray_training_raises_held_out_accuracy_well_above_chance(tmp_path):
    pairs_path = make_colour_pairs(tmp_path / "data", 48)
    cfg = _cfg(
        pairs_path,
        tmp_path / "run",
        model=JRMModelInit(tiny=True, tiny_seed=1),
        global_batch_size=8,
        per_device_batch_size=4,  # 2 accumulation steps
        max_steps=15,
        eval_every_steps=15,
        checkpoint_every_steps=15,
    )
    pairs, _ = load_preference_pairs(pairs_path)
    _, held = split_pairs(pairs, cfg.data.held_out_fraction, cfg.seed)
    held_loaded = [load_images(p, cfg.data.max_pixels) for p in held]
    before = pairwise_accuracy(JRM.build_tiny(seed=1), held_loaded, 8)["acc/overall"]

    result = train_jrm(cfg)

    assert len(held) == 12 and before <= 0.6
    assert result.metrics["eval/acc/overall"] >= 0.9
    assert result.metrics["eval/acc/instruction_following"] >= 0.9
    reloaded = build_reward_model(RewardModelConfig(kind="jrm_alpha0", checkpoint=result.checkpoint_dir))
    assert pairwise_accuracy(reloaded, held_loaded, 8)["acc/overall"] == result.metrics["eval/acc/overall"]
    # how it was trained is recorded in the run's metrics and in the checkpoint
    objective = json.loads((tmp_path / "run" / "metrics.json").read_text())["objective"]
    assert objective == {"alpha": cfg.alpha, "rank_loss": "hpsv3", "lm_reduction": "token_mean"}
    saved = json.loads((Path(result.checkpoint_dir) / "jrm_config.json").read_text())
    assert (saved["rank_loss"], saved["lm_reduction"]) == ("hpsv3", "token_mean")


def test_a_broken_pair_file_fails_before_the_ray_cluster_starts(tmp_path):
    import ray

    pairs = make_colour_pairs(tmp_path / "data", 4)
    pairs.write_text(pairs.read_text() + '{"id": "broken", "prompt": \n')
    cfg = _cfg(pairs, tmp_path / "out")
    cfg = replace(cfg, data=replace(cfg.data, on_error="raise"))
    with pytest.raises(PairDataError, match=r"pairs\.jsonl:5"):
        train_jrm(cfg)
    assert not ray.is_initialized()


def test_alpha_above_zero_without_rationales_is_an_error_naming_the_key(tmp_path):
    from reward.jrm.train_data import check_stage1_data, load_training_data

    pairs = make_colour_pairs(tmp_path / "data", 4)
    cfg = _cfg(pairs, tmp_path / "out", alpha=0.7)
    with pytest.raises(ConfigError, match=r"data\.rationales: alpha=0\.7 > 0 .*none of the 3 training pairs"):
        load_training_data(cfg.data, cfg.seed, cfg.alpha)
    with pytest.raises(ConfigError, match=r"data\.rationales"):
        check_stage1_data(cfg)
    with pytest.raises(ConfigError, match=r"data\.rationales"):
        train_jrm(cfg)  # before the Ray cluster starts
    missing = replace(cfg, data=replace(cfg.data, rationales=str(tmp_path / "absent.jsonl")))
    with pytest.raises(ConfigError, match=r"data\.rationales: .*absent\.jsonl not found"):
        check_stage1_data(missing)
    check_stage1_data(replace(cfg, alpha=0.0))  # the ranking-only baseline needs none
    # a pair without a rationale is counted in the load report, not silently an alpha = 0 pair
    text = pairs.read_text().splitlines()
    with_one = make_colour_pairs(tmp_path / "mixed", 4, rationales=True)
    mixed = with_one.read_text().splitlines()
    with_one.write_text("\n".join([mixed[0], mixed[1], *(line for line in text[2:])]) + "\n")
    partial = replace(cfg, data=replace(cfg.data, train_pairs=str(with_one), held_out_fraction=0.0,
                                        image_check="none"))
    train, _, lines = load_training_data(partial.data, partial.seed, partial.alpha)
    assert len(train) == 4
    assert "rationales: 2/4 training pairs with both sides, 0 with one, 2 without any (4 side(s) train L_rank only)" in lines


def test_stage1_annotates_missing_rationales_with_the_configured_teacher(tmp_path, chat_server):  # noqa: F811
    from reward.jrm.teachers.config import TeacherConfig
    from reward.jrm.train import run_annotation
    from reward.jrm.train_config import JRMAnnotateConfig
    from reward.jrm.train_data import check_stage1_data, load_training_data
    from tests.reward.test_annotate import _ChatHandler

    pairs = make_colour_pairs(tmp_path / "data", 4)
    lines = pairs.read_text().splitlines()
    lines[3] = lines[3].replace("make the square red", "server error please")  # the server answers HTTP 500
    pairs.write_text("\n".join(lines) + "\n")
    rationales = tmp_path / "rationales.jsonl"
    teacher = TeacherConfig(kind="openai", base_url=chat_server, model="judge", api_key_env=None, timeout_s=10)
    cfg = _cfg(pairs, tmp_path / "out", alpha=0.7, data=JRMDataConfig(
        train_pairs=str(pairs), held_out_fraction=0.0, max_pixels=1024, image_check="exists",
        rationales=str(rationales)), annotate=JRMAnnotateConfig(enabled=True, teacher=teacher, max_retries=0, batch_size=2))
    check_stage1_data(cfg)  # the file does not exist yet, the annotation step will write it
    summary = run_annotation(cfg)
    assert summary is not None and summary.written_ok == 6 and summary.written_rejected == 2
    assert summary.rejection_reasons == {"teacher_error": 4}  # 2 edits x 2 dimensions
    train, _, report = load_training_data(cfg.data, cfg.seed, cfg.alpha)
    assert "rationales: 3/4 training pairs with both sides, 0 with one, 1 without any" in report[-1]
    # resumable: a rerun asks only for what failed on a teacher error, never again for finished edits
    _ChatHandler.seen = []
    again = run_annotation(cfg)
    assert again is not None and again.already_done == 6 and again.written_rejected == 2
    assert _ChatHandler.seen and all("server error please" in json.dumps(body) for _, _, body in _ChatHandler.seen)
    # once complete, a rerun neither asks nor even builds the teacher (no endpoint, no key needed)
    rows = [json.loads(line) for line in rationales.read_text().splitlines()]
    rationales.write_text("".join(json.dumps({**r, "status": "ok", "rationale": "{}"}) + "\n" for r in rows))
    _ChatHandler.seen = []
    broken = TeacherConfig(kind="openai", base_url="http://127.0.0.1:1/v1", model="m", api_key_env="NO_SUCH_KEY_ENV")
    done = run_annotation(replace(cfg, annotate=replace(cfg.annotate, teacher=broken)))
    assert done is not None and done.already_done == 8 and not _ChatHandler.seen
    with pytest.raises(ConfigError, match=r"data\.rationales: annotate\.enabled"):
        load_config(JRMTrainConfig, None, ["annotate.enabled=true", "annotate.teacher.model=m"])
    with pytest.raises(ConfigError, match=r"annotate\.teacher: required"):
        load_config(JRMTrainConfig, None, ["annotate.enabled=true", "data.rationales=r.jsonl"])
