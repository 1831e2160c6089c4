"""Spectrum statistics of h against hand-computed values, and the side-by-side plot."""

import json
import math

import pytest
import torch

from reward.jrm.analysis import collect_features, spectrum_stats, write_report


def _plus_minus_axes(scales):
    """Rows +a_i e_i and -a_i e_i: zero mean, centred singular values sqrt(2) * a_i."""
    d = len(scales)
    eye = torch.diag(torch.tensor(scales, dtype=torch.float64))
    return torch.cat([eye, -eye]), d


def test_isotropic_set_has_full_effective_rank_and_isotropy_one():
    h, d = _plus_minus_axes([2.0] * 5)
    st = spectrum_stats(h)
    assert st.effective_rank == pytest.approx(d) and st.spectral_entropy == pytest.approx(math.log(d))
    assert st.isotropy == pytest.approx(1.0)
    # +e_i vs -e_i: cos -1 (d pairs, both orders); all other distinct pairs are orthogonal.
    n = 2 * d
    assert st.mean_cosine == pytest.approx(-2 * d / (n * (n - 1)))


def test_rank_one_set_has_effective_rank_one():
    direction = torch.tensor([1.0, 2.0, -1.0, 0.5])
    h = torch.arange(1.0, 7.0).unsqueeze(1) * direction + 3.0 * direction
    st = spectrum_stats(h)
    assert st.effective_rank == pytest.approx(1.0, abs=1e-6)
    assert st.isotropy == pytest.approx(0.0, abs=1e-12)
    assert st.mean_cosine == pytest.approx(1.0)


def test_two_scales_match_hand_computation():
    # centred singular values sqrt(2)*a = 3 and 1 -> p = (0.75, 0.25)
    h, _ = _plus_minus_axes([3 / math.sqrt(2), 1 / math.sqrt(2)])
    st = spectrum_stats(h)
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert st.singular_values.tolist() == pytest.approx([3.0, 1.0])
    assert st.spectral_entropy == pytest.approx(entropy) and st.effective_rank == pytest.approx(math.exp(entropy))
    assert st.isotropy == pytest.approx(1 / 9)


def test_bad_input_and_report_files(tmp_path):
    with pytest.raises(ValueError, match="NaN"):
        spectrum_stats(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]))
    feats = collect_features(lambda batch: torch.stack([torch.tensor(x) for x in batch]), [[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], 2)
    assert feats.shape == (3, 2)
    stats = {"alpha=0": spectrum_stats(torch.randn(20, 6)), "alpha=0.7": spectrum_stats(torch.randn(20, 6))}
    json_path, png = write_report(stats, tmp_path)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads(json_path.read_text())
    assert saved["alpha=0"]["effective_rank"] == pytest.approx(stats["alpha=0"].effective_rank)


def test_compare_checkpoints_collects_h_of_each_jrm(tmp_path):
    from PIL import Image

    from reward.jrm.analysis import compare_checkpoints, jrm_feature_fn
    from reward.jrm.model import JRM

    models = {"alpha=0": JRM.build_tiny(seed=0), "alpha=0.7": JRM.build_tiny(seed=1)}
    for name, model in models.items():
        model.save_pretrained(tmp_path / name)
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (200, 200, 0), (0, 90, 200)]
    samples = [(Image.new("RGB", (32, 32), (90, 90, 90)), Image.new("RGB", (32, 32), c), f"paint it {i}") for i, c in enumerate(colours)]
    stats = compare_checkpoints({n: tmp_path / n for n in models}, samples, tmp_path / "report", batch_size=2)
    h = collect_features(jrm_feature_fn(models["alpha=0"]), samples, batch_size=5)
    assert h.shape == (5, models["alpha=0"].backbone.config.text_config.hidden_size)
    assert stats["alpha=0"].singular_values.tolist() == pytest.approx(spectrum_stats(h).singular_values.tolist(), rel=1e-4)
    assert (tmp_path / "report" / "spectra.png").is_file()


def _rotation(angle_z: float, angle_x: float) -> torch.Tensor:
    cz, sz, cx, sx = math.cos(angle_z), math.sin(angle_z), math.cos(angle_x), math.sin(angle_x)
    rz = torch.tensor([[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    rx = torch.tensor([[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]], dtype=torch.float64)
    return rz @ rx


def test_effective_rank_is_exp_of_the_entropy_of_normalised_singular_values():
    # a diagonal 3x3 block (+/- rows): centred singular values sqrt(2) * (4, 2, 1) -> p = (4, 2, 1) / 7
    h, _ = _plus_minus_axes([4.0, 2.0, 1.0])
    st = spectrum_stats(h)
    p = [4 / 7, 2 / 7, 1 / 7]
    entropy = -sum(x * math.log(x) for x in p)
    assert st.spectral_entropy == pytest.approx(entropy)
    assert st.effective_rank == pytest.approx(math.exp(entropy))
    assert st.isotropy == pytest.approx(1 / 16)  # min(s^2) / max(s^2) over the first min(n - 1, d)


def test_procrustes_recovers_a_known_rotation():
    from reward.jrm.analysis import procrustes_align

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(30, 3, generator=gen, dtype=torch.float64)
    true = _rotation(0.7, -1.1)
    target = x @ true + torch.tensor([5.0, -2.0, 1.0], dtype=torch.float64)  # a translation is centred away
    rotation, aligned, disparity = procrustes_align(x, target, allow_reflection=False)
    assert torch.allclose(rotation, true, atol=1e-10)
    assert disparity == pytest.approx(0.0, abs=1e-20)
    assert torch.allclose(aligned, target - target.mean(dim=0), atol=1e-10)
    # a reflected target: recovered exactly only when reflections are allowed
    flip = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
    rot_refl, _, d_refl = procrustes_align(x, x @ true @ flip)
    assert torch.allclose(rot_refl, true @ flip, atol=1e-10) and d_refl == pytest.approx(0.0, abs=1e-20)
    rot_proper, _, d_proper = procrustes_align(x, x @ true @ flip, allow_reflection=False)
    assert torch.linalg.det(rot_proper) == pytest.approx(1.0) and d_proper > 0.01


def test_pca_coordinates_by_hand():
    from reward.jrm.analysis import pca_coordinates

    # +/- 3 e1, +/- 2 e2, +/- 1 e3, +/- 0.5 e4 (8 rows, zero mean): variance 2 * (9, 4, 1, 0.25) / 8 per axis
    h, _ = _plus_minus_axes([3.0, 2.0, 1.0, 0.5])
    coords, ratio = pca_coordinates(h)
    total = 2 * (9 + 4 + 1 + 0.25)
    assert ratio.tolist() == pytest.approx([18 / total, 8 / total, 2 / total])
    rms = math.sqrt(total / 8)
    # the principal directions are the axes: row +3 e1 sits at +-3 / rms on component 1, -3 e1 opposite
    assert coords[0].abs().tolist() == pytest.approx([3 / rms, 0.0, 0.0])
    assert coords[5].abs().tolist() == pytest.approx([0.0, 2 / rms, 0.0])
    assert torch.allclose(coords[4:7], -coords[0:3])
    assert float(coords[:, 0].max()) == pytest.approx(3 / rms)  # sign: the largest-magnitude coordinate positive
    assert coords.shape == (8, 3)
    few, few_ratio = pca_coordinates(torch.tensor([[0.0, 1.0], [2.0, 1.0]]))  # one direction only
    assert few[:, 1:].abs().max() == 0 and few_ratio.tolist() == pytest.approx([1.0, 0.0, 0.0])


def test_aligned_pca_rotates_every_model_onto_the_reference(tmp_path):
    from reward.jrm.analysis import aligned_pca, write_report

    gen = torch.Generator().manual_seed(1)
    base = torch.randn(40, 6, generator=gen, dtype=torch.float64) * torch.tensor([5.0, 3.0, 2.0, 0.1, 0.1, 0.1], dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=gen, dtype=torch.float64))
    feats = {"alpha=0": base, "alpha=0.7": 2.0 * base @ q + 1.0}  # same geometry, rotated, scaled, shifted
    pca = aligned_pca(feats)
    assert pca["alpha=0"].disparity == 0.0 and torch.equal(pca["alpha=0"].rotation, torch.eye(3, dtype=torch.float64))
    assert pca["alpha=0.7"].disparity == pytest.approx(0.0, abs=1e-12)
    assert torch.allclose(pca["alpha=0.7"].coords, pca["alpha=0"].coords, atol=1e-8)
    with pytest.raises(ValueError, match="same samples"):
        aligned_pca({"a": base, "b": base[:10]})
    stats = {name: spectrum_stats(h) for name, h in feats.items()}
    write_report(stats, tmp_path, pca=pca, labels=["g1", "g2"] * 20, settings={"device": "cpu"})
    saved = json.loads((tmp_path / "pca.json").read_text())
    assert len(saved["models"]["alpha=0.7"]["coords"]) == 40 and saved["labels"][:2] == ["g1", "g2"]
    assert (tmp_path / "pca.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((tmp_path / "analysis.json").read_text())
    assert summary["models"]["alpha=0"]["effective_rank"] == pytest.approx(stats["alpha=0"].effective_rank)


def test_the_pairs_command_with_device_and_dtype(tmp_path, capsys):
    """``python -m reward.jrm.analysis`` on preference pairs (the diagnostic), in bfloat16: every report file."""
    from reward.jrm.analysis import main
    from reward.jrm.model import JRM
    from tests.reward.test_train import make_colour_pairs

    pairs_path = make_colour_pairs(tmp_path / "data", 4)
    for name, seed in (("a0", 0), ("a7", 1)):
        JRM.build_tiny(seed=seed).save_pretrained(tmp_path / name)
    out = tmp_path / "out"
    argv = ["--checkpoint", f"a0={tmp_path / 'a0'}", "--checkpoint", f"a7={tmp_path / 'a7'}", "--pairs", str(pairs_path),
            "--max-pixels", "1024", "--device", "cpu", "--dtype", "bfloat16", "--out", str(out)]
    assert main(argv) == 0
    assert "a0: n=8" in capsys.readouterr().out
    summary = json.loads((out / "analysis.json").read_text())
    assert summary["settings"]["dtype"] == "bfloat16" and summary["models"]["a7"]["num_samples"] == 8
    assert {p.name for p in out.iterdir()} >= {"spectra.json", "spectra.png", "pca.json", "pca.png", "analysis.json"}
