"""Which teacher backend to use (:class:`TeacherConfig`) and building it (:func:`build_teacher`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from editrl.config import ConfigError
from reward.jrm.teachers.base import Teacher
from reward.jrm.teachers.openai_compatible import OpenAICompatibleTeacher
from reward.jrm.teachers.transformers_local import TransformersTeacher


@dataclass
class TeacherConfig:
    """Which teacher to build: ``kind`` "transformers" (``model_dir``) or "openai" (``base_url`` + ``model``)."""

    kind: Literal["transformers", "openai"] = "openai"
    model_dir: str | None = None
    device: str = "cpu"
    dtype: str = "bfloat16"
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = ""
    api_key_env: str | None = "OPENAI_API_KEY"  # null or "": no key (e.g. a local server)
    timeout_s: float = 120.0
    max_new_tokens: int = 1024
    temperature: float = 0.0
    max_concurrency: int = 4

    def validate(self) -> None:
        if self.kind == "transformers" and not self.model_dir:
            raise ConfigError("model_dir: a local model directory is required for kind=transformers")
        if self.kind == "openai" and not self.model:
            raise ConfigError("model: the endpoint's model name is required for kind=openai")
        if self.timeout_s <= 0 or self.max_new_tokens < 1 or self.max_concurrency < 1:
            raise ConfigError("timeout_s, max_new_tokens and max_concurrency must be positive")


def build_teacher(cfg: TeacherConfig) -> Teacher:
    """The configured teacher backend."""
    if cfg.kind == "transformers":
        return TransformersTeacher.from_local_dir(
            cfg.model_dir or "", device=cfg.device, dtype=cfg.dtype,
            max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
        )
    return OpenAICompatibleTeacher(
        cfg.base_url, cfg.model, api_key_env=cfg.api_key_env, timeout_s=cfg.timeout_s,
        max_tokens=cfg.max_new_tokens, temperature=cfg.temperature, max_concurrency=cfg.max_concurrency,
    )
