"""Which judge to build: ``kind`` selects the backend, each backend keeps its own settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from editrl.config import ConfigError
from reward.judges.base import Judge
from reward.judges.local_vlm import LocalVLMJudge, LocalVLMJudgeConfig
from reward.judges.openai_compatible import OpenAICompatibleJudge, OpenAIJudgeConfig


@dataclass
class JudgeConfig:
    """``kind``: ``openai`` (any OpenAI-compatible endpoint; GPT-4.1 by default) or ``local`` (transformers)."""

    kind: Literal["openai", "local"] = "openai"
    openai: OpenAIJudgeConfig = field(default_factory=OpenAIJudgeConfig)
    local: LocalVLMJudgeConfig = field(default_factory=LocalVLMJudgeConfig)

    def validate(self) -> None:
        if self.kind == "local" and self.local.model_dir is None:
            raise ConfigError("local.model_dir must be set when kind is 'local'")


def build_judge(cfg: JudgeConfig) -> Judge:
    """The configured judge (the openai backend reads its key from the environment here)."""
    if cfg.kind == "openai":
        return OpenAICompatibleJudge(cfg.openai)
    return LocalVLMJudge.from_pretrained(cfg.local)
