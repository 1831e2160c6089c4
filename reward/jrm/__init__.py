"""JRM: the Joint Reward Model (Qwen3-VL backbone, <|reward|> token, reward head + language head)."""

from reward.jrm.head import HeadOutput, RewardHead
from reward.jrm.loss import hpsv3_rank_loss, rank_loss, rationale_lm_loss, uncertainty_rank_loss
from reward.jrm.model import JRM, Explanation, JRMConfig, JRMOutput
from reward.jrm.objective import LossBreakdown, compute_loss
from reward.jrm.rationale import (
    Rationale,
    RationaleError,
    Region,
    format_joint_rationale,
    parse_joint_rationale,
    parse_rationale,
)

__all__ = [
    "JRM",
    "Explanation",
    "HeadOutput",
    "JRMConfig",
    "JRMOutput",
    "LossBreakdown",
    "Rationale",
    "RationaleError",
    "Region",
    "RewardHead",
    "compute_loss",
    "format_joint_rationale",
    "hpsv3_rank_loss",
    "parse_joint_rationale",
    "parse_rationale",
    "rank_loss",
    "rationale_lm_loss",
    "uncertainty_rank_loss",
]
