"""The demo's report: ``report.md`` around the metrics, with PNG plots under ``plots/``.

Every alpha, metric key and claim threshold comes from the config (``jrm_alphas``, ``rl_reward_alpha``,
``claims``), so the prose describes the run that was made.
"""

from __future__ import annotations

from pathlib import Path

from editrl.jsonl import read_jsonl
from reward.jrm.analysis import plot_spectra
from reward.jrm.train import TrainResult
from reward.metrics import PAIR_CASES
from rl.controller import RunResult
from world.demo.config import DemoConfig, alpha_key
from world.demo.heldout import RLEvaluation
from world.demo.metrics import jrm_key
from world.demo.outcome import AblationArm, DemoOutcome, DiagnosticRewardRun
from world.demo.plots import markdown_table, plot_curves, plot_sample_grid, write_markdown
from world.render import to_pil
from world.stats import PairedDifference


def _jrm_curves(result: TrainResult) -> dict[str, tuple[list[float], list[float]]]:
    log = Path(result.checkpoint_dir).parent / "train_log.jsonl"
    rows = read_jsonl(log)
    return {
        "total": ([r["step"] for r in rows], [r["train/loss"] for r in rows]),
        "rank": ([r["step"] for r in rows], [r["train/rank_loss"] for r in rows]),
        "lm": ([r["step"] for r in rows], [r["train/lm_loss"] for r in rows]),
    }


def score_table(evaluation: RLEvaluation, combine: str) -> str:
    """Per RL step: held-out oracle IF, VQ, edit success and, when scored, the JRM's reward and agreement."""
    headers = ["RL step", "IF", "VQ", "edit success"]
    rows = [
        [step, float(r.instruction_following.mean()), float(r.visual_quality.mean()), float(r.edit_success.mean())]
        for step, r in zip(evaluation.steps, evaluation.results)
    ]
    if evaluation.rewards:
        headers += ["JRM reward", "JRM-oracle agreement"]
        for row, reward, agree in zip(rows, evaluation.rewards, evaluation.agreement(combine)):
            row += [float(reward.mean()), agree]
    return markdown_table(headers, [tuple(r) for r in rows])


def _group_agreement_text(cfg: DemoConfig, evaluation: RLEvaluation, n_heldout: int) -> str:
    if not evaluation.group_agreement:
        return ""
    before, after = evaluation.group_agreement[0], evaluation.group_agreement[-1]
    return (
        f"\n\nWithin-task JRM-oracle agreement ({cfg.eval.group_size} edits of each of the first "
        f"{min(cfg.eval.group_tasks, n_heldout)} held-out tasks, compared within the task as GRPO compares a group's "
        f"samples): before RL {before:.3f}, after {after:.3f}."
    )


#: diagnostic run name -> (report heading, what the run is, in a sentence ending where its numbers follow)
_DIAGNOSTIC_TEXT = {
    "oracle_reward": (
        "Diagnostic: RL with the oracle as the reward",
        "The same RL run with the world's oracle as the reward (same policy, settings and combine), i.e. what a "
        "perfect reward model would give:",
    ),
    "null_reward": (
        "Diagnostic: RL with a null reward (what the updates alone do)",
        "The same RL run with a reward blind to the edit (`reward.kind=noise`: a hash of its pixels, same policy, "
        "seeds and settings), i.e. how far the updates move the policy without any signal:",
    ),
}


def _diagnostic_sections(diagnostics: dict[str, DiagnosticRewardRun], combine: str) -> list[tuple[str, str]]:
    """Report sections of the optional diagnostic reward runs (``oracle_reward_rl``, ``null_reward_rl``)."""
    sections = []
    for name, run in diagnostics.items():
        heading, intro = _DIAGNOSTIC_TEXT[name]
        d_if, d_vq = run.deltas["oracle_if"], run.deltas["oracle_vq"]
        g_if, g_vq = run.gain_vs_main["oracle_if"], run.gain_vs_main["oracle_vq"]
        text = (
            f"{intro} IF {d_if.mean:+.3f} [{d_if.low:+.3f}, {d_if.high:+.3f}], VQ {d_vq.mean:+.3f} "
            f"[{d_vq.low:+.3f}, {d_vq.high:+.3f}]. The JRM run's gain minus this run's, paired over the held-out "
            f"tasks: IF {g_if.mean:+.3f} [{g_if.low:+.3f}, {g_if.high:+.3f}], VQ {g_vq.mean:+.3f} "
            f"[{g_vq.low:+.3f}, {g_vq.high:+.3f}].\n\n"
        )
        sections.append((heading, text + score_table(run.evaluation, combine)))
    return sections


def rl_arms(cfg: DemoConfig, outcome: DemoOutcome) -> list[tuple[str, RunResult, RLEvaluation]]:
    """(label, RL run, its held-out evaluation) of the main run and of each ablation arm, labelled by the alpha
    of the JRM that was their reward (``"alpha=0.7"``, ``"alpha=0"``); one run alone has the label ``""``."""
    arms = [(cfg.rl_reward_alpha, outcome.rl, outcome.evaluation)]
    arms += [(alpha, arm.rl, arm.evaluation) for alpha, arm in outcome.ablation_arms.items()]
    if len(arms) == 1:
        return [("", outcome.rl, outcome.evaluation)]
    return [(f"alpha={alpha_key(alpha)}", rl, evaluation) for alpha, rl, evaluation in arms]


def _labelled(name: str, label: str) -> str:
    return f"{name} ({label})" if label else name


def _interval(diff: PairedDifference) -> str:
    return f"{diff.mean:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}]"


def _arm_row(alpha: float, rl: RunResult, evaluation: RLEvaluation, deltas: dict[str, PairedDifference], combine: str) -> tuple:
    agreement = evaluation.agreement(combine) if evaluation.rewards else [float("nan")]
    return (
        alpha_key(alpha), rl.steps_completed, float(evaluation.before.instruction_following.mean()),
        float(evaluation.after.instruction_following.mean()), _interval(deltas["oracle_if"]), _interval(deltas["oracle_vq"]),
        _interval(deltas["oracle_edit_success"]), f"{agreement[0]:.3f} -> {agreement[-1]:.3f}",
    )


def comparison_text(cfg: DemoConfig, arm: AblationArm, main_deltas: dict[str, PairedDifference]) -> str:
    """One sentence on the main run's held-out IF gain against the arm's, said whichever way it falls."""
    main, other = alpha_key(cfg.rl_reward_alpha), alpha_key(arm.alpha)
    d_if, d_vq = arm.gain_vs_main["oracle_if"], arm.gain_vs_main["oracle_vq"]
    if d_if.low > 0:
        verdict = f"the alpha = {main} reward gave the larger IF gain (the interval excludes 0)"
    elif d_if.high < 0:
        verdict = f"the alpha = {other} reward gave the larger IF gain (the interval excludes 0)"
    else:
        verdict = "the two rewards' IF gains are not distinguishable at this size (the interval includes 0)"
    return (
        f"RL with the alpha = {main} JRM as the reward moved held-out oracle IF by {main_deltas['oracle_if'].mean:+.3f}, "
        f"with the alpha = {other} JRM by {arm.deltas['oracle_if'].mean:+.3f}: the difference of the gains is "
        f"{_interval(d_if)} (paired bootstrap over the same {d_if.n} held-out tasks; VQ {_interval(d_vq)}), so {verdict}."
    )


def _ablation_section(cfg: DemoConfig, outcome: DemoOutcome) -> list[tuple[str, str]]:
    """Report section of the ablation arms (``ablation_rl_alphas``) beside the main run."""
    if not outcome.ablation_arms:
        return []
    combine = cfg.rl.reward.combine
    rows = [_arm_row(cfg.rl_reward_alpha, outcome.rl, outcome.evaluation, outcome.deltas, combine)]
    rows += [_arm_row(a, arm.rl, arm.evaluation, arm.deltas, combine) for a, arm in outcome.ablation_arms.items()]
    table = markdown_table(
        ["JRM alpha of the RL reward", "RL rounds", "IF before", "IF after", "IF gain [95% CI]", "VQ gain [95% CI]",
         "edit success gain [95% CI]", "JRM-oracle agreement before -> after"], rows,
    )
    text = (
        "The paper's ablation: the same RL run (policy base, seeds, settings) with each JRM as the reward, evaluated "
        "on the same held-out tasks from the same pretrained edits. Each arm's agreement is its own JRM's.\n\n"
        + table + "\n\n" + "\n\n".join(comparison_text(cfg, arm, outcome.deltas) for arm in outcome.ablation_arms.values())
    )
    for alpha, arm in outcome.ablation_arms.items():
        text += f"\n\nPer RL step, JRM alpha = {alpha_key(alpha)} as the reward:\n\n" + score_table(arm.evaluation, combine)
    others = " vs ".join(f"alpha = {alpha_key(a)}" for a in outcome.ablation_arms)
    return [(f"RL reward: JRM alpha = {alpha_key(cfg.rl_reward_alpha)} vs {others} (ablation)", text)]


def baselines_text(cfg: DemoConfig) -> str:
    """``"the alpha = 0 baseline"`` for the JRMs other than the RL reward's ("" when there are none)."""
    others = [f"alpha = {alpha_key(a)}" for a in cfg.jrm_alphas if a != cfg.rl_reward_alpha]
    if not others:
        return ""
    return f"the {', '.join(others)} baseline{'s' if len(others) > 1 else ''}"


def claims(cfg: DemoConfig, deltas: dict[str, PairedDifference], metrics: dict[str, float]) -> list[tuple[str, str, bool]]:
    """(claim, measured, holds) for each of ``cfg.claims``' thresholds; ``deltas`` as :func:`world.demo.heldout.score_deltas` gives."""
    c = cfg.claims
    d_if, d_vq = deltas["oracle_if"], deltas["oracle_vq"]
    pair_acc = metrics[f"{jrm_key(cfg.rl_reward_alpha)}.pair_acc"]
    return [
        (f"RL raises held-out oracle IF by >= {c.min_if_gain:g}", f"{d_if.mean:+.3f} [{d_if.low:+.3f}, {d_if.high:+.3f}]", d_if.mean >= c.min_if_gain),
        (f"RL lowers held-out oracle VQ by <= {c.max_vq_drop:g}", f"{d_vq.mean:+.3f} [{d_vq.low:+.3f}, {d_vq.high:+.3f}]", d_vq.mean >= -c.max_vq_drop),
        (f"JRM (alpha={alpha_key(cfg.rl_reward_alpha)}) held-out pair accuracy >= {c.min_pair_acc:g}", f"{pair_acc:.3f}", pair_acc >= c.min_pair_acc),
    ]


def write_plots(cfg: DemoConfig, out: Path, outcome: DemoOutcome) -> None:
    """``plots/*.png``: RL reward, held-out oracle scores over RL (each RL run's, with the ablation arms), JRM and
    pretraining losses, spectra, samples (after RL: a column per run)."""
    plots, evaluation, pretrain, arms = out / "plots", outcome.evaluation, outcome.pretrain, rl_arms(cfg, outcome)

    def reward_curves(keys: tuple[str, ...]) -> dict[str, tuple[list[int], list[float]]]:
        return {
            _labelled(key, label): ([s.step + 1 for s in rl.summaries], [s.reward_mean.get(key, float("nan")) for s in rl.summaries])
            for label, rl, _ in arms for key in keys
        }

    plot_curves(plots / "rl_reward.png", {
        "JRM reward (mean over the round's samples)": reward_curves(("reward",)),
        "JRM per-dimension mean": reward_curves(("instruction_following", "visual_quality")),
    }, xlabel="RL step")

    def score_curves(attrs: dict[str, str]) -> dict[str, tuple[list[int], list[float]]]:
        return {
            _labelled(name, label): (ev.steps, [float(getattr(r, attr).mean()) for r in ev.results])
            for label, _, ev in arms for name, attr in attrs.items()
        }

    plot_curves(plots / "oracle_over_rl.png", {
        "held-out oracle score (1-4)": score_curves({"IF": "instruction_following", "VQ": "visual_quality"}),
        "held-out edit success (fraction of changed pixels right)": score_curves({"edit success": "edit_success"}),
        **({
            "JRM reward of the same held-out edits": {
                _labelled("JRM", label): (ev.steps, [float(r.mean()) for r in ev.rewards]) for label, _, ev in arms
            },
            "JRM-oracle pairwise agreement (0.5 = chance)": {
                _labelled("agreement", label): (ev.steps, ev.agreement(cfg.rl.reward.combine)) for label, _, ev in arms
            },
        } if all(ev.rewards for _, _, ev in arms) else {}),
    }, xlabel="RL step")
    plot_curves(plots / "jrm_loss.png", {
        f"JRM alpha={alpha_key(a)}": _jrm_curves(result) for a, result in outcome.jrm.items()
    }, xlabel="optimizer step")
    if pretrain.vae_losses or pretrain.flow_losses:  # a policy base brings no losses (its build recorded them)
        plot_curves(plots / "pretrain_loss.png", {
            "autoencoder (MSE + KL)": {"loss": (list(range(1, len(pretrain.vae_losses) + 1)), pretrain.vae_losses)},
            "flow matching (velocity MSE)": {"loss": (list(range(1, len(pretrain.flow_losses) + 1)), pretrain.flow_losses)},
        }, xlabel="optimizer step")
    plot_spectra({f"alpha={alpha_key(a)}": s for a, s in outcome.spectra.items()}, plots / "jrm_spectra.png", title="Singular spectrum of h (held-out edits)")
    rows = []
    for i, task in enumerate(outcome.heldout[: cfg.eval.n_grid_rows]):
        b = evaluation.before
        after = ", ".join(f"{r.instruction_following[i]}" for r in (ev.after for _, _, ev in arms))
        after_vq = ", ".join(f"{r.visual_quality[i]}" for r in (ev.after for _, _, ev in arms))
        caption = f"{task.instruction}\nIF {b.instruction_following[i]}->{after}, VQ {b.visual_quality[i]}->{after_vq}"
        rows.append((caption, [to_pil(task.source_image), b.images[i], *(ev.after.images[i] for _, _, ev in arms), to_pil(task.target_image)]))
    after_titles = [_labelled("after RL", label) for label, _, _ in arms]
    plot_sample_grid(plots / "samples.png", rows, ["source", "before RL", *after_titles, "target"])


RANK_LOSS_TEXT = {
    "hpsv3": "E[-log sigmoid(z)], as HPSv3's and EditReward's released trainers",
    "paper": "-log E[sigmoid(z)], the JRM paper's Eq. 4-5",
}
LM_REDUCTION_TEXT = {"token_mean": "mean over rationale tokens", "sequence_sum": "Eq. 6: sum per rationale, mean over rationales"}


def write_report(cfg: DemoConfig, out: Path, metrics: dict[str, float], outcome: DemoOutcome) -> Path:
    """The plots and ``report.md`` (claims, held-out scores, RL reward, JRMs, diagnostic, pretraining, times)."""
    write_plots(cfg, out, outcome)
    evaluation, pairs, spectra, n_heldout = outcome.evaluation, outcome.pairs, outcome.spectra, len(outcome.heldout)
    reward_alpha, baselines = alpha_key(cfg.rl_reward_alpha), baselines_text(cfg)
    jrm_rows = [
        (alpha_key(a), metrics[f"{jrm_key(a)}.pair_acc"],
         metrics.get(f"{jrm_key(a)}.pair_acc_instruction_following", float("nan")),
         metrics.get(f"{jrm_key(a)}.pair_acc_visual_quality", float("nan")),
         spectra[a].effective_rank, spectra[a].isotropy)
        for a in outcome.jrm
    ]
    case_rows = [
        (alpha_key(a), *(f"{metrics.get(f'{jrm_key(a)}.pair_acc_overall_{case}', float('nan')):.3f} "
                         f"({outcome.jrm[a].metrics.get(f'eval/n/overall_{case}', 0):.0f})" for case in PAIR_CASES))
        for a in outcome.jrm
    ]
    kinds = sorted(pairs.train.kind_counts.items(), key=lambda kv: -kv[1])[:12]
    ablation_plot_text = (
        " (each RL run's reward is its own JRM's, so the curves' levels do not compare across runs)" if outcome.ablation_arms else ""
    )
    ablation_text = "".join(
        f" and, as the paper's ablation, the same RL run with the alpha = {alpha_key(a)} JRM as the reward" for a in outcome.ablation_arms
    )
    sections = [
        ("What this is", (
            "The toy world's end-to-end run of the method at CPU scale: a tiny OmniGen2-class policy pretrained "
            "with flow matching, JRM trained on oracle-scored preference pairs with RuleTeacher rationales "
            f"(alpha = {reward_alpha}){f' and {baselines}' if baselines else ''}, then Flow-GRPO with JRM as the reward on a local Ray "
            f"cluster{ablation_text}. Every number is measured against the oracle on held-out tasks (a seed range no training "
            f"stage uses; n = {n_heldout}), with 95% paired-bootstrap intervals over tasks. Seed {cfg.seed}; "
            f"wall time {metrics['wall_seconds']:.0f} s."
        )),
        ("Claims, as measured", markdown_table(["claim", "measured", "holds"], [(c, m, "yes" if ok else "no") for c, m, ok in claims(cfg, outcome.deltas, metrics)])),
        ("Policy on held-out tasks (oracle, 1-4)", score_table(evaluation, cfg.rl.reward.combine)
         + "\n\nJRM reward and JRM-oracle agreement: the RL reward model's score of the same held-out edits, and the "
           "share of edit pairs the oracle orders that the JRM orders the same way (0.5 = chance). A rising JRM "
           "reward with falling oracle scores or agreement is reward hacking."
         + _group_agreement_text(cfg, evaluation, n_heldout)
         + "\n\n![oracle over RL](plots/oracle_over_rl.png)\n\n![samples](plots/samples.png)"),
        (f"RL reward (JRM alpha = {reward_alpha})", f"{outcome.rl.steps_completed} rounds{ablation_plot_text}. ![reward](plots/rl_reward.png)"),
        *_ablation_section(cfg, outcome),
        (f"JRM: alpha = {reward_alpha}{f' vs {baselines}' if baselines else ''}", markdown_table(
            ["alpha", "held-out pair acc (overall)", "acc IF", "acc VQ", "effective rank of h", "isotropy"], jrm_rows)
         + f"\n\nTraining objective: ranking loss `{cfg.jrm.rank_loss}` ({RANK_LOSS_TEXT[cfg.jrm.rank_loss]}), "
           f"LM loss `{cfg.jrm.lm_reduction}` ({LM_REDUCTION_TEXT[cfg.jrm.lm_reduction]})."
         + f"\n\nHeld-out pairs: {pairs.held_out.n_records} ({pairs.held_out.n_ties} ties, excluded from the overall "
           f"accuracy). Train pairs: {pairs.train.n_records}; rationales: {pairs.annotation.written_ok} edits annotated, "
           f"{pairs.annotation.written_rejected} rejected."
         + "\n\nOverall accuracy by how the oracle's scores of a pair differ (IF only, VQ only, both the same way, "
           "or opposed):\n\n" + markdown_table(["alpha", *(f"{case} (n)" for case in PAIR_CASES)], case_rows)
         + "\n\n![JRM loss](plots/jrm_loss.png)\n\n![spectra](plots/jrm_spectra.png)"),
        *_diagnostic_sections(outcome.diagnostics, cfg.rl.reward.combine),
        ("Pretraining", (
            "What the autoencoder leaves of a perfect edit: the held-out tasks' exact targets, encoded and decoded "
            f"by the policy's VAE, score IF {metrics['policy.autoencoder_roundtrip_if']:.3f} and VQ "
            f"{metrics['policy.autoencoder_roundtrip_vq']:.3f} (a reference, not a strict bound: the policy's "
            "latents need not be ones the encoder produces)."
            + (f" The policy and every JRM start from the pretrained bases in `{cfg.bases}` (policy base and VLM "
               "backbone, built by `make world-bases`; their training figures are in its `build_info.json`)."
               if cfg.bases is not None else "\n\n![pretrain](plots/pretrain_loss.png)")
        )),
        ("Train pair kinds (most frequent)", markdown_table(["preferred>rejected", "count"], kinds)),
        ("Stage times (s)", markdown_table(["stage", "seconds"], [(k, v) for k, v in metrics.items() if k.startswith("time.")])),
    ]
    return write_markdown(out / "report.md", "editrl demo report", sections)
