"""VLM judges (GPT-4.1 over an OpenAI-compatible endpoint, or a local transformers VLM) behind one interface.

The policy benchmarks (GEdit-Bench's VIEScore, ImgEdit-Bench) ask a judge for a few integer scores per edit.
A malformed or missing answer is retried and then recorded as a failure, never scored as zero.
:class:`reward.judges.reward_model.VIEScoreJudgeReward` wraps a judge as a reward model so that judges can be
compared with JRM on the reward benchmarks.
"""

from reward.judges.base import Judge, JudgeAnswer, JudgeRequest
from reward.judges.parsing import MalformedAnswerError, ScoreFormat

__all__ = ["Judge", "JudgeAnswer", "JudgeRequest", "MalformedAnswerError", "ScoreFormat"]
