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
