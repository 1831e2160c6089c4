"""Token-sequence plumbing of the OmniGen2 transformer: patchify latents, pad variable-length sequences."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def patchify(latent: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(C, H, W) latent -> (H/p * W/p, p*p*C) tokens in row-major patch order, channels fastest."""
    channels, height, width = latent.shape
    p = patch_size
    grid = latent.reshape(channels, height // p, p, width // p, p)
    return grid.permute(1, 3, 2, 4, 0).reshape((height // p) * (width // p), p * p * channels)


def unpatchify(tokens: torch.Tensor, grid: tuple[int, int], patch_size: int) -> torch.Tensor:
    """(rows*cols, p*p*C) tokens -> (C, rows*p, cols*p) latent; the inverse of `patchify`."""
    rows, cols = grid
    p = patch_size
    channels = tokens.shape[-1] // (p * p)
    patches = tokens.reshape(rows, cols, p, p, channels)
    return patches.permute(4, 0, 2, 1, 3).reshape(channels, rows * p, cols * p)


def token_grid(latent: torch.Tensor, patch_size: int, what: str) -> tuple[int, int]:
    """(rows, cols) of patches of a (C, H, W) latent; H and W must be multiples of the patch size."""
    if latent.ndim != 3:
        raise ValueError(f"{what} must be a (C, H, W) latent, got shape {tuple(latent.shape)}")
    _, height, width = latent.shape
    if height % patch_size or width % patch_size:
        raise ValueError(f"{what} has size {height}x{width}, not a multiple of patch_size={patch_size}")
    return height // patch_size, width // patch_size


def pad_sequences(
    sequences: Sequence[torch.Tensor], length: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack `(L_i, ...)` tensors into `(B, L, ...)` zero-padded at the end, with a `(B, L)` bool mask that is
    True on the valid positions. `L` is `length` or the longest `L_i`. Differentiable."""
    if not sequences:
        raise ValueError("pad_sequences needs at least one sequence")
    lengths = [seq.shape[0] for seq in sequences]
    length = max(lengths) if length is None else length
    padded = torch.stack(
        [torch.cat([seq, seq.new_zeros(length - seq.shape[0], *seq.shape[1:])]) for seq in sequences]
    )
    positions = torch.arange(length, device=padded.device)
    mask = positions[None, :] < torch.tensor(lengths, device=padded.device)[:, None]
    return padded, mask
