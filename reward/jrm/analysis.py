"""Representation analysis of JRM's shared state h (DESIGN.md section 2.6): singular spectrum and its rank.

Over n samples, stack h into an (n, d) matrix, centre the columns, take the singular values s. With
``p = s / sum(s)``: spectral entropy ``H = -sum p log p`` (natural log), effective rank ``exp(H)`` (between 1
and min(n, d); equal to d for a perfectly isotropic set, 1 for a rank-1 set).

Isotropy, two measures:
- ``isotropy``: ``min(s^2) / max(s^2)`` over the first ``k = min(n - 1, d)`` singular values (centring removes
  one degree of freedom, so beyond k they are zero by construction); 1 = every direction carries the same
  variance, 0 = some direction is unused.
- ``mean_cosine``: the mean cosine similarity between distinct *uncentred* h vectors (the "anisotropy" of
  contextual embeddings); near 0 = spread in all directions, near 1 = all vectors point the same way.

The paper reports effective rank 46.86 for the alpha=0 baseline vs 91.77 for JRM (alpha=0.7).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from editrl.io import atomic_write_bytes, atomic_write_json
from reward.jrm.pairs import LoadedPair


@dataclass
class SpectrumStats:
    """Spectral statistics of one set of representations.

    singular_values: (k,) float64, descending, of the centred (n, d) matrix, k = min(n, d).
    """

    effective_rank: float
    spectral_entropy: float
    isotropy: float
    mean_cosine: float
    num_samples: int
    dim: int
    singular_values: torch.Tensor

    def to_json(self) -> dict[str, float | int | list[float]]:
        out = asdict(self)
        out["singular_values"] = self.singular_values.tolist()
        return out


def spectrum_stats(h: torch.Tensor) -> SpectrumStats:
    """Statistics of h: (n, d) with n >= 2 (computed in float64; non-finite input is an error)."""
    if h.ndim != 2 or h.shape[0] < 2:
        raise ValueError(f"need an (n, d) matrix with n >= 2, got shape {tuple(h.shape)}")
    h = h.detach().to(torch.float64)
    if not torch.isfinite(h).all():
        raise ValueError("representations contain NaN or inf")
    n, d = h.shape
    s = torch.linalg.svdvals(h - h.mean(dim=0, keepdim=True))
    total = s.sum()
    if total <= 0:
        raise ValueError("all representations are identical: the centred spectrum is zero")
    p = s / total
    nz = p[p > 0]
    entropy = float(-(nz * nz.log()).sum())
    k = min(n - 1, d)
    energy = s[:k] ** 2
    isotropy = float(energy.min() / energy.max())
    unit = h / h.norm(dim=1, keepdim=True).clamp_min(1e-12)
    cos = unit @ unit.T
    mean_cosine = float((cos.sum() - cos.diagonal().sum()) / (n * (n - 1)))
    return SpectrumStats(
        effective_rank=math.exp(entropy),
        spectral_entropy=entropy,
        isotropy=isotropy,
        mean_cosine=mean_cosine,
        num_samples=n,
        dim=d,
        singular_values=s,
    )


FeatureFn = Callable[[Sequence[object]], torch.Tensor]


def collect_features(feature_fn: FeatureFn, samples: Sequence[object], batch_size: int = 8) -> torch.Tensor:
    """Stack h over ``samples`` in batches: ``feature_fn(batch) -> (b, d)``; returns (n, d) float32 on CPU.

    ``feature_fn`` is typically :func:`jrm_feature_fn` of a checkpoint (h of each edit at ``<|reward|>``).
    """
    chunks = []
    with torch.no_grad():
        for start in range(0, len(samples), batch_size):
            batch = samples[start : start + batch_size]
            feats = feature_fn(batch)
            if feats.ndim != 2 or feats.shape[0] != len(batch):
                raise ValueError(f"feature_fn returned shape {tuple(feats.shape)} for a batch of {len(batch)}")
            chunks.append(feats.detach().float().cpu())
    if not chunks:
        raise ValueError("no samples to collect features from")
    return torch.cat(chunks)


def jrm_feature_fn(model: Any) -> FeatureFn:
    """h at ``<|reward|>`` for a batch of :class:`~reward.jrm.pairs.LoadedPair` (their preferred edits) or of
    ``(source, edited, instruction)`` triples, from one scoring forward of a :class:`reward.jrm.model.JRM`
    (with the paper prompts, an edit's two rows' states concatenated: (b, 2H))."""

    def features(batch: Sequence[object]) -> torch.Tensor:
        triples = [
            (s.source, s.preferred, s.pair.instruction) if isinstance(s, LoadedPair) else tuple(s)  # type: ignore[arg-type]
            for s in batch
        ]
        sources, edits, instructions = (list(x) for x in zip(*triples))
        was_training = model.training
        model.eval()
        try:
            return model.forward(model.scoring_inputs(sources, edits, instructions)).h
        finally:
            model.train(was_training)

    return features


def compare_checkpoints(
    checkpoints: Mapping[str, str | Path], samples: Sequence[object], out_dir: str | Path, batch_size: int = 8
) -> dict[str, SpectrumStats]:
    """Load each JRM checkpoint (name -> directory), collect h over the same ``samples``, write the report."""
    from reward.jrm.model import JRM

    stats = {}
    for name, path in checkpoints.items():
        model = JRM.from_pretrained(path)
        stats[name] = spectrum_stats(collect_features(jrm_feature_fn(model), samples, batch_size))
    write_report(stats, out_dir)
    return stats


def plot_spectra(stats: Mapping[str, SpectrumStats], out_png: str | Path, *, title: str = "Spectrum of h") -> Path:
    """One panel per checkpoint, side by side: normalised singular values s_i / s_1 (log scale) vs index i,
    annotated with effective rank and isotropy; plus a shared overlay panel. Written atomically as PNG."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(stats)
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(4.2 * (len(names) + 1), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        st = stats[name]
        s = (st.singular_values / st.singular_values[0]).clamp_min(1e-12).numpy()
        ax.semilogy(range(1, len(s) + 1), s, marker=".", linewidth=1)
        ax.set_title(f"{name}\neff. rank {st.effective_rank:.2f}, isotropy {st.isotropy:.2e}", fontsize=9)
        ax.set_xlabel("index i")
        ax.set_ylabel("s_i / s_1")
        ax.grid(True, alpha=0.3)
    overlay = axes[0][-1]
    for name in names:
        st = stats[name]
        s = (st.singular_values / st.singular_values[0]).clamp_min(1e-12).numpy()
        overlay.semilogy(range(1, len(s) + 1), s, label=f"{name} ({st.effective_rank:.1f})", linewidth=1)
    overlay.set_title("overlay (effective rank)", fontsize=9)
    overlay.set_xlabel("index i")
    overlay.legend(fontsize=8)
    overlay.grid(True, alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    out_png = Path(out_png)
    atomic_write_bytes(out_png, buffer.getvalue())
    return out_png


def write_report(stats: Mapping[str, SpectrumStats], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``spectra.json`` (all statistics) and ``spectra.png`` (the side-by-side plot) into ``out_dir``."""
    out_dir = Path(out_dir)
    json_path = out_dir / "spectra.json"
    atomic_write_json(json_path, {name: st.to_json() for name, st in stats.items()})
    return json_path, plot_spectra(stats, out_dir / "spectra.png")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m reward.jrm.analysis --checkpoint alpha0=DIR --checkpoint jrm=DIR --pairs F --out DIR``.

    h is collected for both edits of the first ``--max-pairs`` pairs of ``--pairs``; prints the statistics
    and writes ``spectra.json`` and ``spectra.png``.
    """
    import argparse

    from reward.jrm.data import load_images, load_preference_pairs

    parser = argparse.ArgumentParser(description="Spectrum of h for several JRM checkpoints.")
    parser.add_argument("--checkpoint", action="append", required=True, help="name=dir (repeat)")
    parser.add_argument("--pairs", required=True, help="preference pairs (EditReward-Data layout)")
    parser.add_argument("--image-root", default=None)
    parser.add_argument("--max-pairs", type=int, default=512)
    parser.add_argument("--max-pixels", type=int, default=200_704)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    checkpoints = {}
    for item in args.checkpoint:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            parser.error(f"--checkpoint must be name=dir, got {item!r}")
        checkpoints[name] = path
    pairs, report = load_preference_pairs(args.pairs, args.image_root, on_error="skip", image_check="exists")
    print(report.summary())
    samples = []
    for pair in pairs[: args.max_pairs]:
        loaded = load_images(pair, args.max_pixels)
        samples += [(loaded.source, loaded.preferred, pair.instruction), (loaded.source, loaded.rejected, pair.instruction)]
    stats = compare_checkpoints(checkpoints, samples, args.out, args.batch_size)
    for name, st in stats.items():
        print(
            f"{name}: n={st.num_samples} d={st.dim} effective_rank={st.effective_rank:.2f} "
            f"entropy={st.spectral_entropy:.3f} isotropy={st.isotropy:.3e} mean_cosine={st.mean_cosine:.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
