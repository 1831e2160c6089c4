"""The alpha sweep command (Fig. 4): config per alpha, the report, and the whole command on tiny models."""

import json
import math
from pathlib import Path

import pytest
import torch

from editrl.config import ConfigError
from reward.jrm.alpha_sweep import SweepRow, sweep_configs, write_sweep_report
from reward.jrm.train_config import JRMTrainConfig

REPO = Path(__file__).resolve().parents[2]


def test_one_config_per_alpha_differing_only_in_alpha_and_where_it_goes(tmp_path):
    base = JRMTrainConfig(rank_loss="paper", seed=5, wandb_run_name="x")
    configs = sweep_configs(base, [0.0, 0.7], tmp_path)
    assert [c.alpha for c in configs] == [0.0, 0.7]
    assert [c.output_dir for c in configs] == [str(tmp_path / "alpha_0"), str(tmp_path / "alpha_0.7")]
    assert [c.wandb_run_name for c in configs] == ["x-alpha-0", "x-alpha-0.7"]
    for c in configs:
        assert (c.rank_loss, c.seed, c.learning_rate) == ("paper", 5, base.learning_rate)
    for bad, match in (([], "at least one"), ([0.5, 0.5], "duplicates"), ([1.5], r"\[0, 1\]")):
        with pytest.raises(ConfigError, match=match):
            sweep_configs(base, bad, tmp_path)


def test_report_table_json_and_plot(tmp_path):
    rows = [
        SweepRow(alpha=a, checkpoint=f"c{a}", accuracy={"instruction_following": acc, "visual_quality": 0.5, "overall": acc},
                 counted={"instruction_following": 10, "visual_quality": 4, "overall": 10},
                 effective_rank=rank, spectral_entropy=math.log(rank), isotropy=0.01, spectrum_samples=20)
        for a, acc, rank in ((0.7, 0.9, 7.8), (0.0, 0.8, 3.1))
    ]
    rows[0].accuracy["visual_quality"] = math.nan  # nothing counted
    paths = write_sweep_report(rows, tmp_path, {"rank_loss": "hpsv3", "lm_reduction": "token_mean"})
    data = json.loads(paths["json"].read_text())
    assert [r["alpha"] for r in data["rows"]] == [0.0, 0.7] and data["objective"]["rank_loss"] == "hpsv3"
    text = paths["markdown"].read_text()
    assert "| 0 | 0.800 | 0.500 | 0.800 | 3.10 |" in text and "| 0.7 | 0.900 | n/a | 0.900 | 7.80 |" in text
    assert data["rows"][1]["accuracy"]["visual_quality"] is None
    assert "Ranking loss `hpsv3`" in text
    assert paths["plot"].stat().st_size > 1000


def _effective_rank(h: torch.Tensor) -> float:
    """exp(entropy) of the normalised singular values of the centred (n, d) matrix (DESIGN.md 2.6)."""
    s = torch.linalg.svdvals((h - h.mean(dim=0)).double())
    p = s / s.sum()
    p = p[p > 0]
    return math.exp(float(-(p * p.log()).sum()))


@pytest.mark.slow
def test_the_sweep_command_end_to_end_on_tiny_models(tmp_path):
    from launch.jrm_alpha_sweep import main
    from reward.jrm.data import load_images, load_preference_pairs, split_pairs
    from reward.jrm.model import JRM
    from reward.metrics import pairwise_counts
    from tests.reward.test_train import make_colour_pairs

    pairs_path = make_colour_pairs(tmp_path / "data", 24, rationales=True)
    out = tmp_path / "sweep"
    code = main([
        "--config", str(REPO / "configs" / "jrm_tiny.yaml"), "--alphas", "0", "0.7", "--out", str(out),
        "--spectrum-pairs", "4",
        f"data.train_pairs={pairs_path}", "data.held_out_fraction=0.25", "data.max_pixels=1024", "max_steps=3",
        "global_batch_size=4", "per_device_batch_size=4", "eval_every_steps=3", "checkpoint_every_steps=3",
        "resume=never", "wandb_mode=disabled", "progress_bar=false", "learning_rate=3e-3",
    ])
    assert code == 0
    report = json.loads((out / "sweep.json").read_text())
    assert [r["alpha"] for r in report["rows"]] == [0.0, 0.7]
    assert report["objective"] == {"rank_loss": "hpsv3", "lm_reduction": "token_mean"}
    assert (out / "sweep.png").stat().st_size > 1000 and "| 0.7 |" in (out / "sweep.md").read_text()

    # recompute each row from its checkpoint on the same held-out split (6 pairs: 25% of 24, seed 0)
    pairs, _ = load_preference_pairs(pairs_path)
    _, held = split_pairs(pairs, 0.25, 0)
    loaded = [load_images(p, 1024) for p in held]
    finals = []
    for row in report["rows"]:
        assert Path(row["checkpoint"]) == out / f"alpha_{row['alpha']:g}" / "final"
        assert json.loads((out / f"alpha_{row['alpha']:g}" / "metrics.json").read_text())["objective"]["alpha"] == row["alpha"]
        model = JRM.from_pretrained(row["checkpoint"])
        model.eval()
        counts = pairwise_counts(model, loaded, 8)
        for key in ("instruction_following", "overall"):
            assert counts.counted[key] == row["counted"][key] == 6
            assert row["accuracy"][key] == pytest.approx(counts.correct[key] / counts.counted[key])
        assert row["counted"]["visual_quality"] == 0 and row["accuracy"]["visual_quality"] is None  # VQ: all ties
        with torch.no_grad():
            sources = [p.source for p in loaded[:4] for _ in range(2)]
            edits = [e for p in loaded[:4] for e in (p.preferred, p.rejected)]
            h = model.forward(model.scoring_inputs(sources, edits, [p.pair.instruction for p in loaded[:4] for _ in range(2)])).h
        assert row["spectrum_samples"] == 8
        assert row["effective_rank"] == pytest.approx(_effective_rank(h.float()), rel=1e-4)
        finals.append(model.head.mlp[0].weight.detach().clone())
    assert not torch.equal(finals[0], finals[1])  # the two alphas really trained differently
