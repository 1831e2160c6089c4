"""OmniGen2's 3-axis rotary position embedding (Lumina-style complex RoPE).

Every token gets a position id `(a, r, c)`: text token k is `(k, k, k)`; the tokens of an image are
`(shift, row, col)`, where `shift` starts at the text length and grows by `max(rows, cols)` after each
reference image, so the output image comes after all references on the first axis. Each axis `i` owns
`axes_dim[i]` channels of a head; its rotation is looked up in a precomputed complex table.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class OmniGen2RotaryPosEmbed(nn.Module):
    """Turns token layouts into per-token complex rotations; holds no parameters (no state-dict entries)."""

    def __init__(
        self,
        theta: int,
        axes_dim: Sequence[int],
        axes_lens: Sequence[int] = (300, 512, 512),
        patch_size: int = 2,
    ) -> None:
        super().__init__()
        self.theta = theta
        self.axes_dim = tuple(axes_dim)
        self.axes_lens = tuple(axes_lens)
        self.patch_size = patch_size

    @staticmethod
    def get_freqs_cis(axes_dim: Sequence[int], axes_lens: Sequence[int], theta: float) -> list[torch.Tensor]:
        """Complex rotation tables, one per axis: entry `i` is `(axes_lens[i], axes_dim[i] // 2)`.

        `table[pos, k] = exp(1j * pos * theta ** (-2k / d))`, computed in float64 (complex128), or float32
        on machines with MPS (which lacks float64), as the official implementation does.
        """
        float_dtype = torch.float32 if torch.backends.mps.is_available() else torch.float64
        tables = []
        for dim, length in zip(axes_dim, axes_lens):
            if dim % 2:
                raise ValueError(f"rotary axis dimension must be even, got {dim}")
            inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=float_dtype) / dim))  # (d/2,)
            angles = torch.outer(torch.arange(length, dtype=float_dtype), inv_freq)  # (len, d/2)
            tables.append(torch.polar(torch.ones_like(angles), angles))
        return tables

    def position_ids(
        self,
        text_len: int,
        ref_grids: Sequence[tuple[int, int]],
        image_grid: tuple[int, int],
        device: torch.device | None = None,
    ) -> torch.Tensor:
        """Position ids `(text_len + sum(h*w of refs) + H*W, 3)` of one sample's joint sequence.

        Grids are in tokens (latent size // patch_size), in sequence order: text, references, output image.
        """
        parts = [torch.arange(text_len, device=device).unsqueeze(1).expand(text_len, 3)]
        shift = text_len
        for rows, cols in [*ref_grids, image_grid]:
            row_ids = torch.arange(rows, device=device).repeat_interleave(cols)
            col_ids = torch.arange(cols, device=device).repeat(rows)
            parts.append(torch.stack([torch.full_like(row_ids, shift), row_ids, col_ids], dim=1))
            shift += max(rows, cols)
        return torch.cat(parts, dim=0)

    def forward(self, freqs_cis: Sequence[torch.Tensor], position_ids: torch.Tensor) -> torch.Tensor:
        """Rotations `(..., sum(axes_dim) // 2)` for position ids `(..., 3)`, in the tables' complex dtype."""
        if len(freqs_cis) != len(self.axes_dim):
            raise ValueError(f"freqs_cis has {len(freqs_cis)} axis tables, expected {len(self.axes_dim)}")
        per_axis = []
        for axis, table in enumerate(freqs_cis):
            ids = position_ids[..., axis]
            if ids.numel() and int(ids.max()) >= table.shape[0]:
                raise ValueError(
                    f"rotary position {int(ids.max())} on axis {axis} exceeds axes_lens[{axis}]={table.shape[0]}; "
                    "the image or the text is too long for this model's rotary tables"
                )
            per_axis.append(table.to(position_ids.device)[ids])
        return torch.cat(per_axis, dim=-1)


def apply_rotary_emb(x: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs of queries/keys `x (B, L, heads, head_dim)` by `rotations (B, L, head_dim//2)`.

    Consecutive channels `(2k, 2k+1)` form the complex number rotated by `rotations[..., k]`; the product is
    taken in the rotations' precision (complex128 from `get_freqs_cis`, as officially) and cast back to x.dtype.
    """
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], x.shape[-1] // 2, 2))
    return torch.view_as_real(pairs * rotations.unsqueeze(2)).flatten(3).type_as(x)
