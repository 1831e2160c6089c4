"""OmniGen2 rotary embedding: tables, position ids and rotation against hand-computed values."""

import cmath
import math

import pytest
import torch

from policies.omnigen2 import OmniGen2RotaryPosEmbed
from policies.omnigen2.rotary import apply_rotary_emb


def test_get_freqs_cis_matches_hand_computed_tables():
    tables = OmniGen2RotaryPosEmbed.get_freqs_cis(axes_dim=(2, 4), axes_lens=(3, 2), theta=100)
    assert [tuple(t.shape) for t in tables] == [(3, 1), (2, 2)]
    # axis 0 (d=2): one frequency, 1; axis 1 (d=4): frequencies 1 and 100 ** (-2/4) = 0.1
    expected_axis0 = torch.tensor([[1 + 0j], [cmath.exp(1j)], [cmath.exp(2j)]], dtype=torch.complex128)
    expected_axis1 = torch.tensor(
        [[1 + 0j, 1 + 0j], [cmath.exp(1j), cmath.exp(0.1j)]], dtype=torch.complex128
    )
    torch.testing.assert_close(tables[0].to(torch.complex128), expected_axis0, rtol=0, atol=1e-6)
    torch.testing.assert_close(tables[1].to(torch.complex128), expected_axis1, rtol=0, atol=1e-6)


def test_position_ids_place_text_references_and_image():
    rope = OmniGen2RotaryPosEmbed(theta=10000, axes_dim=(2, 2, 2), axes_lens=(16, 8, 8))
    ids = rope.position_ids(text_len=2, ref_grids=[(1, 2)], image_grid=(2, 1))
    # text k -> (k, k, k); the 1x2 reference starts at the text length; the image after max(1, 2) more.
    expected = [[0, 0, 0], [1, 1, 1], [2, 0, 0], [2, 0, 1], [4, 0, 0], [4, 1, 0]]
    assert ids.tolist() == expected


def test_forward_gathers_per_axis_and_rejects_out_of_range_positions():
    rope = OmniGen2RotaryPosEmbed(theta=100, axes_dim=(2, 4), axes_lens=(3, 2))
    tables = OmniGen2RotaryPosEmbed.get_freqs_cis((2, 4), (3, 2), 100)
    rotations = rope(tables, torch.tensor([[2, 1]]))
    expected = torch.tensor([[cmath.exp(2j), cmath.exp(1j), cmath.exp(0.1j)]], dtype=torch.complex128)
    torch.testing.assert_close(rotations.to(torch.complex128), expected, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="axes_lens"):
        rope(tables, torch.tensor([[3, 0]]))


def test_apply_rotary_emb_rotates_consecutive_channel_pairs():
    x = torch.tensor([1.0, 0.0, 2.0, 1.0]).view(1, 1, 1, 4)  # pairs (1, 0) and (2, 1)
    angle = math.pi / 2
    rotations = torch.tensor([[[cmath.exp(1j * angle), 1 + 0j]]], dtype=torch.complex128)
    out = apply_rotary_emb(x, rotations)
    torch.testing.assert_close(out.view(4), torch.tensor([0.0, 1.0, 2.0, 1.0]), rtol=0, atol=1e-6)
    assert out.dtype == x.dtype
