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

3-D PCA with Procrustes alignment (the paper's Fig. 6): each model's centred h is projected on its own top three
principal directions, the coordinates divided by the set's RMS distance to its centroid over all d dimensions
(``sqrt(sum(s^2) / n)``, so a set whose variance sits in few directions fills the cube and one spread over many
looks small, and models of different scale are comparable); then every model's coordinates are rotated onto the
first model's by orthogonal Procrustes (the orthogonal R minimising ``||X R - Y||_F``, the PCA signs being
arbitrary a reflection is allowed), so the plots share an orientation. The residual ``||X R - Y||^2 / ||Y||^2``
is reported as the disparity.

The paper reports effective rank 46.86 for the alpha=0 baseline vs 91.77 for JRM (alpha=0.7); it collects h
on the policy's outputs (``launch/evaluate.py analyze`` does so on a GEdit run's edits), not on training pairs.
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


def pca_coordinates(h: torch.Tensor, k: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """(coords (n, k), explained variance ratio (k,)) of h (n, d), float64.

    coords: the centred h projected on its top-k principal directions, divided by ``sqrt(sum(s^2) / n)`` (the
    RMS distance of the samples to their centroid in all d dimensions); component j's sign is chosen so that its
    largest-magnitude coordinate is positive. Fewer than k directions (n - 1 or d < k): zero columns.
    """
    h = h.detach().to(torch.float64)
    if h.ndim != 2 or h.shape[0] < 2:
        raise ValueError(f"need an (n, d) matrix with n >= 2, got shape {tuple(h.shape)}")
    if not torch.isfinite(h).all():
        raise ValueError("representations contain NaN or inf")
    n = h.shape[0]
    u, s, _ = torch.linalg.svd(h - h.mean(dim=0, keepdim=True), full_matrices=False)
    total = (s**2).sum()
    if total <= 0:
        raise ValueError("all representations are identical: the centred spectrum is zero")
    m = min(k, s.shape[0])
    coords = torch.zeros(n, k, dtype=torch.float64)
    coords[:, :m] = u[:, :m] * s[:m] / torch.sqrt(total / n)
    for j in range(m):
        if coords[coords[:, j].abs().argmax(), j] < 0:
            coords[:, j] = -coords[:, j]
    ratio = torch.zeros(k, dtype=torch.float64)
    ratio[:m] = s[:m] ** 2 / total
    return coords, ratio


def procrustes_align(
    x: torch.Tensor, target: torch.Tensor, allow_reflection: bool = True
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Orthogonal Procrustes: (R (k, k), x_c @ R (n, k), disparity) with R the orthogonal matrix minimising
    ``||x_c R - y_c||_F`` for the column-centred x and target (Schoenemann: R = U V^T from the SVD
    ``x_c^T y_c = U S V^T``; without reflections, the last singular direction is flipped when det < 0).
    disparity: ``||x_c R - y_c||^2 / ||y_c||^2``. No scaling: a smaller set stays smaller."""
    if x.shape != target.shape or x.ndim != 2:
        raise ValueError(f"x and target must be (n, k) of the same shape, got {tuple(x.shape)} and {tuple(target.shape)}")
    x = x.detach().to(torch.float64)
    y = target.detach().to(torch.float64)
    xc, yc = x - x.mean(dim=0, keepdim=True), y - y.mean(dim=0, keepdim=True)
    u, _, vh = torch.linalg.svd(xc.T @ yc)
    rotation = u @ vh
    if not allow_reflection and torch.linalg.det(rotation) < 0:
        u = u.clone()
        u[:, -1] = -u[:, -1]
        rotation = u @ vh
    aligned = xc @ rotation
    denom = float((yc**2).sum())
    disparity = float(((aligned - yc) ** 2).sum()) / denom if denom > 0 else float("nan")
    return rotation, aligned, disparity


@dataclass
class PCAEmbedding:
    """One model's 3-D PCA of h, rotated onto the reference model's (identity and disparity 0 for the reference).

    coords: (n, 3) float64; explained_variance_ratio: (3,) of the model's own components; rotation: (3, 3).
    """

    coords: torch.Tensor
    explained_variance_ratio: torch.Tensor
    rotation: torch.Tensor
    disparity: float
    reference: str

    def to_json(self) -> dict[str, Any]:
        return {
            "coords": self.coords.tolist(),
            "explained_variance_ratio": self.explained_variance_ratio.tolist(),
            "rotation": self.rotation.tolist(),
            "disparity": self.disparity,
            "reference": self.reference,
        }


def aligned_pca(features: Mapping[str, torch.Tensor], reference: str | None = None, allow_reflection: bool = True) -> dict[str, PCAEmbedding]:
    """3-D PCA of each model's h (same samples, same order), every model rotated onto ``reference`` (default:
    the first) by :func:`procrustes_align`."""
    if not features:
        raise ValueError("no features")
    names = list(features)
    reference = reference or names[0]
    if reference not in features:
        raise ValueError(f"reference {reference!r} is not one of {names}")
    sizes = {name: h.shape[0] for name, h in features.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"every model needs h of the same samples; sample counts: {sizes}")
    pcs = {name: pca_coordinates(h) for name, h in features.items()}
    ref_coords = pcs[reference][0]
    out = {}
    for name, (coords, ratio) in pcs.items():
        if name == reference:
            out[name] = PCAEmbedding(coords, ratio, torch.eye(3, dtype=torch.float64), 0.0, reference)
            continue
        rotation, aligned, disparity = procrustes_align(coords, ref_coords, allow_reflection)
        out[name] = PCAEmbedding(aligned, ratio, rotation, disparity, reference)
    return out


def plot_pca(
    embeddings: Mapping[str, PCAEmbedding], out_png: str | Path, labels: Sequence[str] | None = None,
    *, title: str = "3-D PCA of h (Procrustes-aligned)",
) -> Path:
    """One 3-D scatter per model on shared axes, coloured by ``labels`` (e.g. the GEdit task group). PNG, atomic."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(embeddings)
    limit = max(float(e.coords.abs().max()) for e in embeddings.values()) or 1.0
    groups = sorted(set(labels)) if labels is not None else [None]
    cmap = plt.get_cmap("tab20")
    fig = plt.figure(figsize=(4.6 * len(names), 4.4))
    for i, name in enumerate(names):
        emb = embeddings[name]
        ax = fig.add_subplot(1, len(names), i + 1, projection="3d")
        xyz = emb.coords.numpy()
        for g_index, group in enumerate(groups):
            mask = [True] * len(xyz) if group is None else [lab == group for lab in labels]  # type: ignore[union-attr]
            pts = xyz[mask]
            ax.scatter(pts[:, 0], pts[:, 1], pts[:, 2], s=8, color=cmap(g_index % 20), label=group)
        ax.set_xlim(-limit, limit)
        ax.set_ylim(-limit, limit)
        ax.set_zlim(-limit, limit)
        ratio = ", ".join(f"{r:.2f}" for r in emb.explained_variance_ratio.tolist())
        extra = "" if name == emb.reference else f", disparity {emb.disparity:.2f}"
        ax.set_title(f"{name}\nvar. ratio {ratio}{extra}", fontsize=8)
    if labels is not None and len(groups) <= 20:
        fig.legend(*fig.axes[0].get_legend_handles_labels(), fontsize=6, loc="lower center", ncol=min(6, len(groups)))
    fig.suptitle(title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    out_png = Path(out_png)
    atomic_write_bytes(out_png, buffer.getvalue())
    return out_png


def summary_lines(stats: Mapping[str, SpectrumStats]) -> list[str]:
    """One line per model: n, d, effective rank, spectral entropy, isotropy, mean cosine."""
    return [
        f"{name}: n={st.num_samples} d={st.dim} effective_rank={st.effective_rank:.2f} "
        f"entropy={st.spectral_entropy:.3f} isotropy={st.isotropy:.3e} mean_cosine={st.mean_cosine:.3f}"
        for name, st in stats.items()
    ]


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
    checkpoints: Mapping[str, str | Path],
    samples: Sequence[object],
    out_dir: str | Path,
    batch_size: int = 8,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    labels: Sequence[str] | None = None,
    settings: Mapping[str, Any] | None = None,
) -> dict[str, SpectrumStats]:
    """Load each JRM checkpoint (name -> directory) on ``device`` in ``dtype`` (e.g. bfloat16 on a GPU), one at a
    time, collect h over the same ``samples``, and write the report (spectra, and the aligned 3-D PCA with the
    first checkpoint as the reference). Statistics are computed in float64 whatever ``dtype``."""
    from reward.jrm.model import JRM

    stats, features = {}, {}
    for name, path in checkpoints.items():
        model = JRM.from_pretrained(path, device=device, dtype=dtype)
        features[name] = collect_features(jrm_feature_fn(model), samples, batch_size)
        stats[name] = spectrum_stats(features[name])
        del model
        if torch.device(device).type == "cuda":
            torch.cuda.empty_cache()
    extra = dict(settings or {})
    extra.update(device=str(device), dtype=str(dtype).removeprefix("torch."), checkpoints={k: str(v) for k, v in checkpoints.items()})
    write_report(stats, out_dir, pca=aligned_pca(features), labels=labels, settings=extra)
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


def write_report(
    stats: Mapping[str, SpectrumStats],
    out_dir: str | Path,
    *,
    pca: Mapping[str, PCAEmbedding] | None = None,
    labels: Sequence[str] | None = None,
    settings: Mapping[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write ``spectra.json`` (all statistics) and ``spectra.png`` (the side-by-side plot) into ``out_dir``; with
    ``pca``, also ``pca.json`` (aligned coordinates, variance ratios, rotations, disparities, ``labels``) and
    ``pca.png``; with ``settings``, ``analysis.json`` (the settings and every model's summary statistics)."""
    out_dir = Path(out_dir)
    json_path = out_dir / "spectra.json"
    atomic_write_json(json_path, {name: st.to_json() for name, st in stats.items()})
    if pca is not None:
        atomic_write_json(out_dir / "pca.json", {"labels": list(labels) if labels is not None else None,
                                                 "models": {name: e.to_json() for name, e in pca.items()}})
        plot_pca(pca, out_dir / "pca.png", labels)
    if settings is not None:
        summary = {name: {k: v for k, v in st.to_json().items() if k != "singular_values"} for name, st in stats.items()}
        atomic_write_json(out_dir / "analysis.json", {"settings": dict(settings), "models": summary})
    return json_path, plot_spectra(stats, out_dir / "spectra.png")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m reward.jrm.analysis --checkpoint alpha0=DIR --checkpoint jrm=DIR --pairs F --out DIR``.

    h is collected for both edits of the first ``--max-pairs`` pairs of ``--pairs`` (a diagnostic on preference
    data; the paper's analysis runs on policy outputs: ``launch/evaluate.py analyze``); prints the statistics
    and writes the report of :func:`write_report`.
    """
    import argparse

    from editrl.dtypes import torch_dtype
    from reward.jrm.data import load_images, load_preference_pairs

    parser = argparse.ArgumentParser(description="Spectrum of h for several JRM checkpoints.")
    parser.add_argument("--checkpoint", action="append", required=True, help="name=dir (repeat)")
    parser.add_argument("--pairs", required=True, help="preference pairs (EditReward-Data layout)")
    parser.add_argument("--image-root", default=None)
    parser.add_argument("--max-pairs", type=int, default=512)
    parser.add_argument("--max-pixels", type=int, default=200_704)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", help="e.g. bfloat16 (statistics are computed in float64)")
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
    stats = compare_checkpoints(
        checkpoints, samples, args.out, args.batch_size, device=args.device, dtype=torch_dtype(args.dtype),
        settings={"pairs": args.pairs, "max_pairs": args.max_pairs},
    )
    print("\n".join(summary_lines(stats)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
