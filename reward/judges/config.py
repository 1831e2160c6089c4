"""Which judge to build: ``kind`` selects the backend from the judge registry, each backend keeps its own settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from editrl.config import ConfigError
from editrl.registry import Registry
from reward.judges.base import Judge
from reward.judges.local_vlm import LocalVLMJudge, LocalVLMJudgeConfig
from reward.judges.openai_compatible import OpenAICompatibleJudge, OpenAIJudgeConfig


@dataclass
class JudgeConfig:
    """``kind``: ``openai`` (any OpenAI-compatible endpoint; GPT-4.1 by default) or ``local`` (transformers)."""

    kind: str = "openai"
    openai: OpenAIJudgeConfig = field(default_factory=OpenAIJudgeConfig)
    local: LocalVLMJudgeConfig = field(default_factory=LocalVLMJudgeConfig)

    def validate(self) -> None:
        default_judge_registry().require(self.kind)
        if self.kind == "local" and self.local.model_dir is None:
            raise ConfigError("local.model_dir must be set when kind is 'local'")


JudgeFactory = Callable[[JudgeConfig], Judge]


def default_judge_registry() -> Registry[JudgeFactory]:
    """A fresh registry of the built-in judge backends."""
    return Registry(
        "judge",
        {
            "openai": lambda cfg: OpenAICompatibleJudge(cfg.openai),
            "local": lambda cfg: LocalVLMJudge.from_pretrained(cfg.local),
        },
    )


def build_judge(cfg: JudgeConfig, registry: Registry[JudgeFactory] | None = None) -> Judge:
    """The configured judge (the openai backend reads its key from the environment here)."""
    return (registry or default_judge_registry()).get(cfg.kind)(cfg)
