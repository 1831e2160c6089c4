"""The alpha sweep of the paper's Fig. 4: train JRM at several alpha, tabulate held-out pair accuracy per
dimension and the effective rank of h for each.

Every alpha is its own stage-1 run (:func:`reward.jrm.train.train_jrm`, a Ray Train job) from the same config,
differing only in ``alpha``, ``output_dir`` (``<out>/alpha_<alpha>``) and the wandb run name; the runs go one
after another on one local Ray cluster (or the running one). Each final checkpoint is then measured on the run's
own held-out split (the same for every alpha: the split depends on the data and ``seed`` only):

- pair accuracy per dimension and overall (:func:`reward.jrm.evaluation.pairwise_accuracy`, the trainer's rule);
- the spectrum of h over both edits of the first ``spectrum_pairs`` held-out pairs
  (:func:`reward.jrm.analysis.spectrum_stats`: effective rank, spectral entropy, isotropy).

Written to ``<out>``: ``sweep.json`` (rows, the objective, the checkpoints), ``sweep.md`` (the table) and
``sweep.png`` (accuracy per dimension and effective rank against alpha).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from editrl.config import ConfigError, to_yaml
from editrl.io import atomic_write_bytes, atomic_write_json
from reward.jrm.train_config import JRMTrainConfig

#: Accuracy keys of :func:`reward.jrm.evaluation.pairwise_accuracy` shown in the table, in order.
ACCURACY_KEYS = ("instruction_following", "visual_quality", "overall")


def alpha_name(alpha: float) -> str:
    """``0.7`` -> ``"0.7"``, ``0.0`` -> ``"0"`` (directory names and labels)."""
    return f"{alpha:g}"


def sweep_configs(cfg: JRMTrainConfig, alphas: Sequence[float], out_dir: str | Path) -> list[JRMTrainConfig]:
    """One training config per alpha: ``cfg`` with that alpha, its own output directory and wandb run name."""
    if not alphas:
        raise ConfigError("alphas: give at least one alpha")
    if len({float(a) for a in alphas}) != len(alphas):
        raise ConfigError(f"alphas: duplicates in {list(alphas)}")
    configs = []
    for alpha in alphas:
        if not 0.0 <= float(alpha) <= 1.0:
            raise ConfigError(f"alphas: each alpha must be in [0, 1], got {alpha}")
        name = alpha_name(float(alpha))
        run_name = f"{cfg.wandb_run_name or 'jrm'}-alpha-{name}"
        configs.append(replace(cfg, alpha=float(alpha), output_dir=str(Path(out_dir) / f"alpha_{name}"), wandb_run_name=run_name))
    return configs


@dataclass
class SweepRow:
    """One alpha's results.

    accuracy: ``instruction_following`` / ``visual_quality`` / ``overall`` -> held-out pair accuracy (NaN if
              no pair counted; null in ``sweep.json``, "n/a" in the table); counted: the same keys -> pairs counted.
    """

    alpha: float
    checkpoint: str
    accuracy: dict[str, float]
    counted: dict[str, int]
    effective_rank: float
    spectral_entropy: float
    isotropy: float
    spectrum_samples: int
    train_metrics: dict[str, float] = field(default_factory=dict)


def measure_checkpoint(alpha: float, checkpoint: str | Path, cfg: JRMTrainConfig, spectrum_pairs: int) -> SweepRow:
    """Held-out pair accuracy and the spectrum of h of one final checkpoint (on ``cfg``'s held-out split)."""
    from reward.jrm.analysis import collect_features, jrm_feature_fn, spectrum_stats
    from reward.jrm.data import load_images
    from reward.jrm.evaluation import pairwise_accuracy
    from reward.jrm.model import JRM
    from reward.jrm.train_data import load_training_data

    _, held, _ = load_training_data(cfg.data, cfg.seed)
    if not held:
        raise ConfigError("data: the alpha sweep needs held-out pairs (held_out_pairs or held_out_fraction > 0)")
    loaded = [load_images(p, cfg.data.max_pixels) for p in held]
    model = JRM.from_pretrained(checkpoint)
    metrics = pairwise_accuracy(model, loaded, cfg.eval_batch_size)
    samples = [(p.source, edit, p.pair.instruction) for p in loaded[:spectrum_pairs] for edit in (p.preferred, p.rejected)]
    stats = spectrum_stats(collect_features(jrm_feature_fn(model), samples, cfg.eval_batch_size))
    return SweepRow(
        alpha=float(alpha),
        checkpoint=str(checkpoint),
        accuracy={k: float(metrics.get(f"acc/{k}", math.nan)) for k in ACCURACY_KEYS},
        counted={k: int(metrics.get(f"n/{k}", 0)) for k in ACCURACY_KEYS},
        effective_rank=stats.effective_rank,
        spectral_entropy=stats.spectral_entropy,
        isotropy=stats.isotropy,
        spectrum_samples=stats.num_samples,
    )


def run_alpha_sweep(
    cfg: JRMTrainConfig, alphas: Sequence[float], out_dir: str | Path, *, spectrum_pairs: int = 256
) -> list[SweepRow]:
    """Train one JRM per alpha (Ray Train, one run after another), measure each, write the report; the rows."""
    import ray

    from reward.jrm.train import REPO_ROOT, train_jrm

    if spectrum_pairs < 1:
        raise ConfigError(f"spectrum_pairs: must be >= 1, got {spectrum_pairs}")
    configs = sweep_configs(cfg, alphas, out_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "config.json", {"alphas": [c.alpha for c in configs], "yaml": to_yaml(cfg)})
    started = not ray.is_initialized()
    if started:  # one cluster for every run (train_jrm joins a running one)
        cpus = math.ceil(cfg.num_workers * cfg.resources_per_worker_cpu) + 1
        ray.init(include_dashboard=False, num_cpus=max(2, cpus), runtime_env={"env_vars": {"PYTHONPATH": str(REPO_ROOT)}})
    try:
        results = [(c, train_jrm(c)) for c in configs]
    finally:
        if started:
            ray.shutdown()
    rows = []
    for run_cfg, result in results:
        row = measure_checkpoint(run_cfg.alpha, result.checkpoint_dir, run_cfg, spectrum_pairs)
        row.train_metrics = dict(result.metrics)
        rows.append(row)
    write_sweep_report(rows, out, objective={"rank_loss": cfg.rank_loss, "lm_reduction": cfg.lm_reduction})
    return rows


def _fmt_accuracy(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def sweep_table(rows: Sequence[SweepRow]) -> str:
    """The markdown table: alpha, accuracy per dimension and overall, effective rank, isotropy."""
    header = ["alpha", "acc IF", "acc VQ", "acc overall", "effective rank of h", "spectral entropy", "isotropy", "h samples"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for r in sorted(rows, key=lambda r: r.alpha):
        cells = [alpha_name(r.alpha), *(_fmt_accuracy(r.accuracy[k]) for k in ACCURACY_KEYS),
                 f"{r.effective_rank:.2f}", f"{r.spectral_entropy:.3f}", f"{r.isotropy:.2e}", str(r.spectrum_samples)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_sweep(rows: Sequence[SweepRow], out_png: str | Path) -> Path:
    """Two panels against alpha: held-out pair accuracy per dimension (and overall), effective rank of h."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(rows, key=lambda r: r.alpha)
    alphas = [r.alpha for r in rows]
    fig, (acc_ax, rank_ax) = plt.subplots(1, 2, figsize=(9.0, 3.6))
    for key, label in zip(ACCURACY_KEYS, ("instruction following", "visual quality", "overall"), strict=True):
        acc_ax.plot(alphas, [r.accuracy[key] for r in rows], marker="o", label=label)
    acc_ax.set_xlabel("alpha")
    acc_ax.set_ylabel("held-out pair accuracy")
    acc_ax.legend(fontsize=8)
    acc_ax.grid(True, alpha=0.3)
    rank_ax.plot(alphas, [r.effective_rank for r in rows], marker="o", color="tab:purple")
    rank_ax.set_xlabel("alpha")
    rank_ax.set_ylabel("effective rank of h")
    rank_ax.grid(True, alpha=0.3)
    fig.suptitle("JRM alpha sweep")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(Path(out_png), buffer.getvalue())
    return Path(out_png)


def _json_ready(value: Any) -> Any:
    """NaN (a dimension with nothing counted) -> None, recursively: JSON has no NaN."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def write_sweep_report(rows: Sequence[SweepRow], out_dir: str | Path, objective: dict[str, Any]) -> dict[str, Path]:
    """``sweep.json``, ``sweep.md`` and ``sweep.png`` in ``out_dir``."""
    out = Path(out_dir)
    paths = {"json": out / "sweep.json", "markdown": out / "sweep.md", "plot": out / "sweep.png"}
    table = [_json_ready(asdict(r)) for r in sorted(rows, key=lambda r: r.alpha)]
    atomic_write_json(paths["json"], {"objective": objective, "rows": table})
    text = (
        "# JRM alpha sweep (Fig. 4)\n\n"
        f"Ranking loss `{objective['rank_loss']}`, LM loss `{objective['lm_reduction']}`. Held-out pair accuracy per "
        "dimension (ties on a dimension are not counted) and the spectrum of h over both edits of held-out pairs.\n\n"
        + sweep_table(rows)
        + "\n\n![sweep](sweep.png)\n"
    )
    atomic_write_bytes(paths["markdown"], text.encode())
    plot_sweep(rows, paths["plot"])
    return paths
