"""The interfaces editing policies offer: ODE edits for evaluation, and what Flow-GRPO's sampler and learner need.

:class:`EditingPolicy` is all evaluation (eval hooks, benchmark CLIs) asks of a policy. :class:`RLPolicy` adds
what ``rl/`` uses: SDE sampling with per-step log-probs, re-scoring of chosen steps, the trainable parameters,
and the adapter state with its version. ``rl/`` talks to a policy only through :class:`RLPolicy` and builds one
from a config through :mod:`policies.registry`; OmniGen2 (:class:`policies.omnigen2.OmniGen2EditPipeline`) is
the built-in implementation.

The adapter version has one owner, the policy: ``adapter_state()`` returns the adapter tensors together with
their version, ``load_adapter_state`` sets both, and every rollout records the version that sampled it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from PIL import Image

from policies.rollout import Rollout, StepLogProbs
from policies.settings import SamplingSettings

#: One generator, one per sample (each sample then independent of the batch), or None (global RNG).
Generators = torch.Generator | Sequence[torch.Generator] | None


@dataclass
class AdapterState:
    """The trainable adapter's weights and their version (what a learner sends to samplers, and resumes from).

    tensors: adapter parameter name -> tensor (detached CPU copies, the policy's dtype).
    version: number of optimizer rounds these weights are the result of (0 = the initial adapter).
    """

    tensors: dict[str, torch.Tensor]
    version: int


@runtime_checkable
class EditingPolicy(Protocol):
    """Edits images by instruction. Used by eval hooks and the benchmark CLIs."""

    def edit(
        self,
        sources: Sequence[Image.Image],
        instructions: Sequence[str],
        *,
        seed: int = 0,
        settings: SamplingSettings | None = None,
    ) -> list[Image.Image]:
        """Return one edited image per (source, instruction), sampled with the ODE (no SDE noise).

        ``settings``: None = the policy's defaults (``sampling``); its ``noise_level`` is ignored (always the
        ODE). A policy without sampling knobs may accept only ``settings=None``.
        """
        ...


@runtime_checkable
class RLPolicy(EditingPolicy, Protocol):
    """A policy Flow-GRPO can train: the sampler calls ``sample_with_logprob``, the learner ``logprob``.

    sampling:        the default :class:`SamplingSettings` (set from the config by the policy's builder); what
                     ``sample_with_logprob`` and ``edit`` use when given ``settings=None``.
    adapter_version: version of the adapter weights now loaded (recorded in every rollout). Set by
                     ``load_adapter_state``; the learner increments it after each optimizer round.
    device:          where the trainable parameters live (the learner moves its targets there).
    """

    sampling: SamplingSettings
    adapter_version: int

    @property
    def device(self) -> torch.device: ...

    def sample_with_logprob(
        self,
        sources: Sequence[Image.Image | Sequence[Image.Image]],
        instructions: Sequence[str],
        settings: SamplingSettings | None = None,
        *,
        generator: Generators = None,
        progress: bool = False,
    ) -> Rollout:
        """Sample B SDE trajectories of T steps (``settings.noise_level`` > 0), tensors on CPU.

        Returns a :class:`Rollout`: latents (B, T+1, C, H, W), log_probs (B, T) of every transition, timesteps
        (T+1,), the conditions to re-run any step, images (B, 3, H_px, W_px) in [0, 1], the settings used, and
        ``adapter_version``. ``sources[i]`` is one image or a list of reference images for ``instructions[i]``.
        """
        ...

    def logprob(self, rollout: Rollout, step_indices: torch.Tensor, *, use_adapter: bool = True) -> StepLogProbs:
        """Re-score the stored transitions x_i -> x_{i+1} at ``step_indices`` (B, K) int64 of ``rollout``.

        Under the current weights (``use_adapter=False``: the reference policy, adapter off), with the
        settings the rollout was sampled with; differentiable w.r.t. ``trainable_parameters()`` when grad is
        enabled. Returns log_prob (B, K), mean (B, K, C, H, W), std / sigma / dt (B, K), on ``device``.
        """
        ...

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """The parameters the learner optimises (the adapter's)."""
        ...

    def adapter_state(self) -> AdapterState:
        """Detached CPU copies of the adapter tensors, with ``adapter_version``."""
        ...

    def load_adapter_state(self, state: AdapterState) -> None:
        """Set the adapter tensors (strict: same names and shapes, finite values) and ``adapter_version``."""
        ...
