"""JRM: a Qwen3-VL backbone, a learnable ``<|reward|>`` token, an fp32 reward head, and the backbone's LM head.

Sequence (DESIGN.md section 1): a user turn ``[source image, edited image, evaluation prompt]``, then the
assistant turn opening with ``<|reward|>``; in training the rationale (joint JSON) follows it and is supervised
by the LM head. ``h`` is the last-layer hidden state at ``<|reward|>``; by causal attention it never sees the
rationale, so scoring is one forward pass whose input ends at ``<|reward|>``.

Checkpoint layout (``save_pretrained``)::

    jrm_config.json          JRMConfig (alpha, region tags K, dimensions, head size, pixel budget, combine)
    backbone/                Qwen3-VL in the transformers layout (config.json + safetensors)
    processor/               tokenizer (with the added special tokens) + image processor
    reward_head.safetensors  the reward head
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from safetensors.torch import load_file
from torch import nn
from tqdm import tqdm
from transformers import AutoTokenizer, Qwen3VLForConditionalGeneration
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from editrl.config import ConfigError
from editrl.io import atomic_replace_dir, atomic_save_safetensors, atomic_write_json, require_local_dir
from reward.base import DEFAULT_DIMENSIONS, RewardScores
from reward.jrm.head import HeadOutput, RewardHead
from reward.jrm.loss import LM_REDUCTIONS, RANK_LOSSES, select_lm_targets
from reward.jrm.prompts import EVALUATION_PROMPTS, evaluation_prompt
from reward.jrm.rationale import Rationale, RationaleError, parse_joint_rationale
from reward.qwen_vl_inputs import VLBatch, build_vl_batch, source_edit_sample

REWARD_TOKEN = "<|reward|>"
GLOBAL_TOKEN = "<|global|>"
END_OF_TURN = "<|im_end|>"
CONFIG_NAME = "jrm_config.json"
HEAD_NAME = "reward_head.safetensors"
#: Paper's image budget: 200,704 pixels (256 merged tokens of 28x28) per image.
PAPER_MAX_PIXELS = 200_704
COMBINE_MODES = ("mean", "sum", "min")
#: What a ``jrm_config.json`` without the training-objective keys was trained with (the only objective then).
LEGACY_TRAINING_KEYS = {"rank_loss": "paper", "lm_reduction": "token_mean"}


def region_tokens(max_region_index: int) -> list[str]:
    """``<|bbox_0|> ... <|bbox_K|>``."""
    return [f"<|bbox_{k}|>" for k in range(max_region_index + 1)]


def combine_dimensions(mu: torch.Tensor, dimensions: Sequence[str], combine: str) -> torch.Tensor:
    """(B, D) per-dimension means -> (B,) reward: ``"mean"``, ``"sum"``, ``"min"``, or one dimension's name.

    ``"min"`` scores an edit by its weakest dimension (as VIEScore's SC takes the min of its sub-scores): a
    clean no-op cannot buy reward with visual quality it did not have to earn.
    """
    if combine == "mean":
        return mu.mean(dim=1)
    if combine == "sum":
        return mu.sum(dim=1)
    if combine == "min":
        return mu.min(dim=1).values
    if combine in dimensions:
        return mu[:, list(dimensions).index(combine)]
    raise ValueError(f"combine must be one of {COMBINE_MODES} or a dimension in {tuple(dimensions)}, got {combine!r}")


@dataclass
class JRMConfig:
    """What defines a JRM beyond its backbone; saved as ``jrm_config.json``.

    alpha:            weight of the LM loss, ``L = (1-alpha) L_rank + alpha L_LM`` (0 = discriminative baseline).
    rank_loss / lm_reduction: the ranking objective and LM-loss reduction this JRM was trained with
                      (``reward.jrm.loss``; set by training like ``alpha``). A checkpoint written before these keys
                      existed was trained with ``paper`` / ``token_mean`` and reads as such.
    max_region_index: K of the region tags ``<|bbox_0|> ... <|bbox_K|>``.
    dimensions:       names of the head's output dimensions, in order.
    head_mlp_size / head_dropout: reward head MLP.
    min_pixels / max_pixels: per-image pixel budget of the image processor (paper: 200,704).
    combine:          how ``score`` turns per-dimension means into the scalar reward.
    batch_size:       edits per forward in ``score``.
    prompt:           the evaluation prompt, a key of ``reward.jrm.prompts.EVALUATION_PROMPTS`` ("full": the
                      paper-style prompt; "compact": a one-line prompt for tiny from-scratch models).
    """

    alpha: float = 0.7
    rank_loss: str = "hpsv3"
    lm_reduction: str = "token_mean"
    max_region_index: int = 15
    dimensions: list[str] = field(default_factory=lambda: list(DEFAULT_DIMENSIONS))
    head_mlp_size: int = 1024
    head_dropout: float = 0.0
    min_pixels: int = 3136
    max_pixels: int = PAPER_MAX_PIXELS
    combine: str = "mean"
    batch_size: int = 8
    prompt: str = "full"

    def validate(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"alpha: must be in [0, 1], got {self.alpha}")
        if self.rank_loss not in RANK_LOSSES:
            raise ConfigError(f"rank_loss: must be one of {RANK_LOSSES}, got {self.rank_loss!r}")
        if self.lm_reduction not in LM_REDUCTIONS:
            raise ConfigError(f"lm_reduction: must be one of {LM_REDUCTIONS}, got {self.lm_reduction!r}")
        if self.max_region_index < 0:
            raise ConfigError(f"max_region_index: must be >= 0, got {self.max_region_index}")
        if not self.dimensions or len(set(self.dimensions)) != len(self.dimensions):
            raise ConfigError(f"dimensions: must be non-empty and distinct, got {list(self.dimensions)}")
        if not 0 < self.min_pixels <= self.max_pixels:
            raise ConfigError(f"min_pixels/max_pixels: need 0 < min <= max, got {self.min_pixels}, {self.max_pixels}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size: must be >= 1, got {self.batch_size}")
        if self.prompt not in EVALUATION_PROMPTS:
            raise ConfigError(f"prompt: must be one of {sorted(EVALUATION_PROMPTS)}, got {self.prompt!r}")
        try:
            combine_dimensions(torch.zeros(1, len(self.dimensions)), list(self.dimensions), self.combine)
        except ValueError as exc:
            raise ConfigError(f"combine: {exc}") from None

    @classmethod
    def from_json(cls, path: Path) -> JRMConfig:
        """Read ``jrm_config.json`` strictly: unknown keys are an error naming them and the file."""
        raw = json.loads(path.read_text())
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known - {"format"})
        if unknown:
            raise ConfigError(f"{path}: unknown JRM config keys {unknown}")
        raw = {**LEGACY_TRAINING_KEYS, **raw}  # written before these keys existed: how it was trained then
        cfg = cls(**{k: v for k, v in raw.items() if k in known})
        cfg.validate()
        return cfg


@dataclass
class JRMOutput:
    """One forward over B sequences.

    h:         (B, H) last-layer hidden state at ``<|reward|>`` (backbone dtype).
    scores:    HeadOutput with (B, D) fp32 ``mu`` and ``log_sigma``.
    lm_logits: (N, V) fp32 LM logits at the N positions that predict a rationale token (None without LM).
    lm_targets:(N,) the rationale token ids they predict (None without LM).
    """

    h: torch.Tensor
    scores: HeadOutput
    lm_logits: torch.Tensor | None = None
    lm_targets: torch.Tensor | None = None


@dataclass
class Explanation:
    """A generated rationale for one edit: the raw text, the parsed rationales (``{"IF": ..., "VQ": ...}``)
    or the reason parsing failed, and the discriminative scores of the same forward."""

    text: str
    rationales: dict[str, Rationale] | None
    error: str | None
    mu: dict[str, float]


class JRM(nn.Module):
    """Joint Reward Model; implements :class:`reward.base.RewardModel`."""

    def __init__(
        self,
        backbone: Qwen3VLForConditionalGeneration,
        tokenizer: Any,
        image_processor: Qwen2VLImageProcessorPil,
        config: JRMConfig,
        head: RewardHead | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.dimensions: tuple[str, ...] = tuple(config.dimensions)
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.image_processor.size = {"shortest_edge": config.min_pixels, "longest_edge": config.max_pixels}
        with torch.random.fork_rng(devices=[]):  # new token rows and a new head depend on `seed` only
            torch.manual_seed(seed)
            self._add_special_tokens()
            if head is None:
                head = RewardHead(
                    backbone.config.text_config.hidden_size, len(self.dimensions), config.head_mlp_size, config.head_dropout
                )
        self.reward_token_id = int(tokenizer.convert_tokens_to_ids(REWARD_TOKEN))
        self.head = head.to(device=self.device, dtype=torch.float32)

    # construction and persistence -------------------------------------------------------------------------

    def _add_special_tokens(self) -> None:
        """Add ``<|reward|>``, ``<|global|>``, ``<|bbox_0..K|>`` (if absent) and grow the embeddings if needed."""
        wanted = [REWARD_TOKEN, GLOBAL_TOKEN, *region_tokens(self.config.max_region_index)]
        vocab = self.tokenizer.get_vocab()
        missing = [t for t in wanted if t not in vocab]
        if missing:
            self.tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
        rows = self.backbone.get_input_embeddings().weight.shape[0]
        if len(self.tokenizer) > rows:
            self.backbone.resize_token_embeddings(len(self.tokenizer), mean_resizing=True)

    @property
    def device(self) -> torch.device:
        return self.backbone.get_input_embeddings().weight.device

    @classmethod
    def build_tiny(
        cls,
        seed: int = 0,
        config: JRMConfig | None = None,
        hidden_size: int = 32,
        num_layers: int = 2,
        vision_hidden_size: int = 32,
        vision_depth: int = 2,
    ) -> JRM:
        """A tiny random JRM (local tokenizer, tiny Qwen3-VL), deterministic in ``seed``."""
        from reward.jrm.tiny import TINY_JRM_MAX_PIXELS, TINY_JRM_MIN_PIXELS, build_tiny_backbone

        cfg = config or JRMConfig(
            head_mlp_size=64, min_pixels=TINY_JRM_MIN_PIXELS, max_pixels=TINY_JRM_MAX_PIXELS, max_region_index=7
        )
        backbone, parts = build_tiny_backbone(
            seed=seed,
            hidden_size=hidden_size,
            num_layers=num_layers,
            vision_hidden_size=vision_hidden_size,
            vision_depth=vision_depth,
        )
        return cls(backbone, parts.tokenizer, parts.image_processor, cfg, seed=seed)

    @classmethod
    def from_backbone(
        cls,
        qwen3_vl_dir: str | Path,
        config: JRMConfig | None = None,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        seed: int = 0,
    ) -> JRM:
        """Start a JRM from a local Qwen3-VL checkpoint (e.g. Qwen3-VL-8B-Instruct) with a fresh head."""
        path = require_local_dir(qwen3_vl_dir, "Qwen3-VL checkpoint")
        backbone = Qwen3VLForConditionalGeneration.from_pretrained(path, dtype=dtype).to(device)
        tokenizer = AutoTokenizer.from_pretrained(path)
        image_processor = Qwen2VLImageProcessorPil.from_pretrained(path)
        return cls(backbone, tokenizer, image_processor, config or JRMConfig(), seed=seed)

    @classmethod
    def from_pretrained(
        cls, path: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
    ) -> JRM:
        """Load a directory written by :meth:`save_pretrained`; every weight must match by name and shape."""
        root = require_local_dir(path, "JRM checkpoint")
        for needed in (CONFIG_NAME, HEAD_NAME, "backbone", "processor"):
            if not (root / needed).exists():
                raise FileNotFoundError(f"JRM checkpoint {root} lacks {needed}")
        config = JRMConfig.from_json(root / CONFIG_NAME)
        backbone, info = Qwen3VLForConditionalGeneration.from_pretrained(
            root / "backbone", dtype=dtype, output_loading_info=True
        )
        problems = {k: v for k, v in info.items() if k != "error_msgs" and v} | (
            {"error_msgs": info["error_msgs"]} if info.get("error_msgs") else {}
        )
        if problems:
            raise ValueError(f"JRM backbone in {root / 'backbone'} does not match its config: {problems}")
        tokenizer = AutoTokenizer.from_pretrained(root / "processor")
        image_processor = Qwen2VLImageProcessorPil.from_pretrained(root / "processor")
        head = RewardHead(
            backbone.config.text_config.hidden_size, len(config.dimensions), config.head_mlp_size, config.head_dropout
        )
        head.load_state_dict(load_file(root / HEAD_NAME), strict=True)
        model = cls(backbone.to(device), tokenizer, image_processor, config, head=head)
        if len(tokenizer) > backbone.get_input_embeddings().weight.shape[0]:
            raise ValueError(f"{root}: tokenizer has more tokens than the backbone's embedding rows")
        return model

    def save_pretrained(self, path: str | Path) -> None:
        """Write the checkpoint atomically (a crash leaves the previous one); refuses non-finite weights."""
        for name, tensor in self.state_dict().items():
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise ValueError(f"refusing to save JRM: parameter {name!r} has non-finite values")
        final = Path(path)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
        self.backbone.save_pretrained(tmp / "backbone", safe_serialization=True)
        self.tokenizer.save_pretrained(tmp / "processor")
        self.image_processor.save_pretrained(tmp / "processor")
        atomic_save_safetensors(tmp / HEAD_NAME, self.head.state_dict())
        atomic_write_json(tmp / CONFIG_NAME, {"format": "editrl.jrm/1", **dataclasses.asdict(self.config)})
        atomic_replace_dir(tmp, final)

    def enable_gradient_checkpointing(self) -> None:
        """Non-reentrant activation checkpointing in the backbone (vision and language towers)."""
        self.backbone.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        self.backbone.config.use_cache = False

    # inputs and forward -------------------------------------------------------------------------------------

    def build_inputs(
        self,
        sources: Sequence[Image.Image],
        edits: Sequence[Image.Image],
        instructions: Sequence[str],
        rationales: Sequence[str | None] | None = None,
        padding_side: str = "right",
    ) -> VLBatch:
        """Tokenized batch: chat ``[source, edit, evaluation prompt]`` + ``<|reward|>`` (+ rationale + end-of-turn).

        ``continuation_mask`` marks exactly the rationale tokens and the closing ``<|im_end|>``.
        """
        if not len(sources) == len(edits) == len(instructions):
            raise ValueError(
                f"sources, edits and instructions differ in length: {len(sources)}, {len(edits)}, {len(instructions)}"
            )
        rationales = list(rationales) if rationales is not None else [None] * len(sources)
        samples = [
            source_edit_sample(
                source,
                edit,
                evaluation_prompt(instruction, self.config.prompt),
                suffix=REWARD_TOKEN,
                continuation=None if rationale is None else rationale + END_OF_TURN,
            )
            for source, edit, instruction, rationale in zip(sources, edits, instructions, rationales)
        ]
        return build_vl_batch(self.tokenizer, self.image_processor, samples, padding_side=padding_side)

    def reward_positions(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B,) index of the single ``<|reward|>`` token in each row; anything else is an error."""
        is_reward = input_ids == self.reward_token_id
        counts = is_reward.sum(dim=1)
        if not bool((counts == 1).all()):
            raise ValueError(f"every sequence needs exactly one {REWARD_TOKEN}; counts per row: {counts.tolist()}")
        return is_reward.int().argmax(dim=1)

    def forward(self, batch: VLBatch, with_lm: bool = False) -> JRMOutput:
        """One backbone pass; the head reads h at ``<|reward|>``, the LM head (if asked) the rationale positions."""
        dtype = self.backbone.get_input_embeddings().weight.dtype
        batch = batch.to(self.device, dtype=dtype)
        outputs = self.backbone.model(**batch.model_inputs(), use_cache=False)
        hidden = outputs.last_hidden_state  # (B, L, H)
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        h = hidden[rows, self.reward_positions(batch.input_ids)]
        scores = self.head(h)
        if not with_lm:
            return JRMOutput(h=h, scores=scores)
        selected, targets = select_lm_targets(hidden, batch.input_ids, batch.continuation_mask)
        return JRMOutput(h=h, scores=scores, lm_logits=self.backbone.lm_head(selected).float(), lm_targets=targets)

    # RewardModel API ------------------------------------------------------------------------------------

    def scoring_inputs(
        self, sources: Sequence[Image.Image], edits: Sequence[Image.Image], instructions: Sequence[str]
    ) -> VLBatch:
        """Left-padded inputs that end at ``<|reward|>`` in every row (nothing after it is ever run)."""
        batch = self.build_inputs(sources, edits, instructions, padding_side="left")
        if not bool((batch.input_ids[:, -1] == self.reward_token_id).all()):
            raise RuntimeError(f"scoring inputs must end at {REWARD_TOKEN}")
        return batch

    @torch.no_grad()
    def score(
        self, sources: Sequence[Image.Image], edits: Sequence[Image.Image], instructions: Sequence[str]
    ) -> RewardScores:
        """Score B edits: batched forwards that stop at ``<|reward|>`` (no generation). Non-finite -> error."""
        was_training = self.training
        self.eval()
        try:
            mus, sigmas = [], []
            step = self.config.batch_size
            for start in range(0, len(sources), step):
                sl = slice(start, start + step)
                out = self.forward(self.scoring_inputs(sources[sl], edits[sl], instructions[sl]))
                mus.append(out.scores.mu.cpu())
                sigmas.append(out.scores.sigma.cpu())
        finally:
            self.train(was_training)
        if not mus:
            empty = torch.zeros(0, len(self.dimensions))
            return RewardScores(empty, empty.clone(), torch.zeros(0), self.dimensions)
        mu, sigma = torch.cat(mus), torch.cat(sigmas)
        bad = (~torch.isfinite(mu).all(dim=1) | ~torch.isfinite(sigma).all(dim=1)).nonzero().flatten().tolist()
        if bad:
            raise FloatingPointError(f"JRM produced non-finite scores for batch items {bad}")
        return RewardScores(mu, sigma, combine_dimensions(mu, self.dimensions, self.config.combine), self.dimensions)

    @torch.no_grad()
    def explain(
        self,
        sources: Sequence[Image.Image],
        edits: Sequence[Image.Image],
        instructions: Sequence[str],
        *,
        max_new_tokens: int = 512,
        min_new_tokens: int = 0,
    ) -> list[Explanation]:
        """Generate the rationale that follows ``<|reward|>`` (greedy) and parse its joint JSON.

        A rationale that fails to parse is returned with ``error`` set rather than raised (diagnostics).
        """
        was_training = self.training
        self.eval()
        results: list[Explanation] = []
        try:
            step = self.config.batch_size
            for start in tqdm(range(0, len(sources), step), desc="explain", disable=len(sources) <= step):
                sl = slice(start, start + step)
                batch = self.scoring_inputs(sources[sl], edits[sl], instructions[sl])
                mu = self.forward(batch).scores.mu.cpu()
                batch = batch.to(self.device, dtype=self.backbone.get_input_embeddings().weight.dtype)
                generated = self.backbone.generate(
                    **batch.model_inputs(),
                    max_new_tokens=max_new_tokens,
                    min_new_tokens=min_new_tokens,
                    do_sample=False,
                    pad_token_id=self.tokenizer.pad_token_id,
                    eos_token_id=self.tokenizer.convert_tokens_to_ids(END_OF_TURN),
                )
                texts = self.tokenizer.batch_decode(generated[:, batch.input_ids.shape[1] :], skip_special_tokens=False)
                for row, text in enumerate(texts):
                    text = text.split(END_OF_TURN)[0].replace(self.tokenizer.pad_token, "")
                    try:
                        parsed, error = parse_joint_rationale(text, self.config.max_region_index + 1), None
                    except RationaleError as exc:
                        parsed, error = None, str(exc)
                    results.append(Explanation(text, parsed, error, dict(zip(self.dimensions, mu[row].tolist()))))
        finally:
            self.train(was_training)
        return results
