"""JRM: a Qwen3-VL backbone, a learnable ``<|reward|>`` token, an fp32 reward head, and the backbone's LM head.

Sequence (DESIGN.md section 1): a user turn ``[source image, edited image, evaluation prompt]``, then the
assistant turn opening with ``<|reward|>``; in training the rationale follows it and is supervised by the LM
head. The hidden state at ``<|reward|>`` never sees the rationale (causal attention), so scoring is one forward
pass whose input ends at ``<|reward|>``.

Rows per edit (:mod:`reward.jrm.prompts`): with the ``paper`` prompts an edit is one row per dimension (IF and
VQ, appendix C), scored in one batch; dimension d is read from row d's ``<|reward|>`` state, and row d's
rationale is dimension d's JSON. With the ``compact`` prompt an edit is a single joint row. ``h`` is the
concatenation of an edit's rows' ``<|reward|>`` states in row order ((B, R*H)).

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
from reward.jrm.prompts import (
    COMPACT,
    PAPER,
    PROMPT_STYLES,
    RATIONALE_DIMENSIONS,
    REWARD_TOKEN_INITS,
    check_prompt_style,
    row_dimensions,
    row_prompts,
)
from reward.jrm.rationale import (
    Rationale,
    RationaleError,
    format_rationale,
    parse_joint_rationale,
    parse_rationale,
)
from reward.qwen_vl_inputs import VLBatch, build_vl_batch, source_edit_sample

REWARD_TOKEN = "<|reward|>"
GLOBAL_TOKEN = "<|global|>"
END_OF_TURN = "<|im_end|>"
CONFIG_NAME = "jrm_config.json"
HEAD_NAME = "reward_head.safetensors"
#: Paper's image budget: 200,704 pixels (256 merged tokens of 28x28) per image.
PAPER_MAX_PIXELS = 200_704
COMBINE_MODES = ("mean", "sum", "min")
#: The project's former single joint prompt; checkpoints trained with it cannot be used any more.
RETIRED_PROMPT = "full"


def require_prompt(trained_with: str, requested: str | None, where: str | Path) -> None:
    """Refuse to run a JRM with a prompt other than the one it was trained with (``requested`` None: its own)."""
    if requested is not None and requested != trained_with:
        raise ConfigError(
            f"prompt: the JRM at {where} was trained with the {trained_with!r} prompt and refuses to score with "
            f"{requested!r} (the prompt is part of its training distribution); set prompt={trained_with} or null"
        )
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


def check_combine(combine: str, dimensions: Sequence[str]) -> None:
    """Raise :func:`combine_dimensions`'s ValueError if ``combine`` cannot combine ``dimensions``."""
    combine_dimensions(torch.zeros(1, len(dimensions)), list(dimensions), combine)


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
    batch_size:       edits per forward in ``score`` (each edit is one row per dimension with the paper prompts).
    prompt:           the evaluation prompt style of ``reward.jrm.prompts``: "paper" (appendix C, one row per
                      dimension) or "compact" (one joint row, for tiny from-scratch models).
    reward_token_init: the embedding a newly added ``<|reward|>`` starts from: "mean" (the mean of the backbone's
                      embeddings, transformers' resizing) or "answer_start" (a copy of the token that opens the
                      assistant's answer, so the head first reads the state where the backbone would begin to
                      answer; a tiny pretrained base compares its images there and not at a mean-initialised
                      token: linear probe of edit vs unchanged source 0.84 against 0.63, issue 13).
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
    prompt: str = PAPER
    reward_token_init: str = "mean"

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
        if self.reward_token_init not in REWARD_TOKEN_INITS:
            raise ConfigError(f"reward_token_init: must be one of {REWARD_TOKEN_INITS}, got {self.reward_token_init!r}")
        try:
            check_prompt_style(self.prompt, self.dimensions)
        except ValueError as exc:
            raise ConfigError(f"prompt: {exc}") from None
        try:
            check_combine(self.combine, self.dimensions)
        except ValueError as exc:
            raise ConfigError(f"combine: {exc}") from None

    @classmethod
    def from_json(cls, path: Path) -> JRMConfig:
        """Read ``jrm_config.json`` strictly: unknown keys are an error naming them and the file; so is a
        prompt this version does not have (a file without ``prompt`` predates the key: the retired "full")."""
        raw = json.loads(path.read_text())
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known - {"format"})
        if unknown:
            raise ConfigError(f"{path}: unknown JRM config keys {unknown}")
        trained_with = raw.get("prompt", RETIRED_PROMPT)
        if trained_with not in PROMPT_STYLES:
            raise ConfigError(
                f"{path}: this JRM was trained with the evaluation prompt {trained_with!r}, which this version does "
                f"not have (it has {list(PROMPT_STYLES)}); a JRM scores only with the prompt it was trained with"
            )
        raw = {**LEGACY_TRAINING_KEYS, **raw}  # written before these keys existed: how it was trained then
        cfg = cls(**{k: v for k, v in raw.items() if k in known})
        cfg.validate()
        return cfg


@dataclass
class JRMOutput:
    """One forward over B edits (B*R rows, R rows per edit: 2 with the paper prompts, 1 with the compact one).

    h:         (B, R*H) last-layer hidden states at each row's ``<|reward|>``, concatenated in row order
               (backbone dtype).
    scores:    HeadOutput with (B, D) fp32 ``mu`` and ``log_sigma`` (dimension d from the edit's row d, or
               all from its one row).
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
    or the reason parsing failed, and the discriminative scores of the same forward.

    With the ``paper`` prompts each dimension is explained by its own row: ``texts`` holds each row's text
    (``{"IF": ..., "VQ": ...}``), ``text`` their concatenation, ``rationales`` those that parsed and ``error``
    the failures (per dimension, ``"; "``-joined). With one joint row, ``texts`` is empty.
    """

    text: str
    rationales: dict[str, Rationale] | None
    error: str | None
    mu: dict[str, float]
    texts: dict[str, str] = field(default_factory=dict)


def tiny_jrm_config(prompt: str = COMPACT) -> JRMConfig:
    """The default config of a tiny random JRM (tests, toy world): small head, tiny image budget, compact prompt."""
    from reward.jrm.tiny import TINY_JRM_MAX_PIXELS, TINY_JRM_MIN_PIXELS

    return JRMConfig(
        head_mlp_size=64, min_pixels=TINY_JRM_MIN_PIXELS, max_pixels=TINY_JRM_MAX_PIXELS, max_region_index=7,
        prompt=prompt,
    )


def own_row_columns(per_row: torch.Tensor, rows_per_edit: int) -> torch.Tensor:
    """(B*R, D) head outputs of edit-major rows, R == D -> (B, D): dimension d of edit i from row i*R + d."""
    b_r, d = per_row.shape
    if rows_per_edit != d:
        raise ValueError(f"one row per dimension needs {d} rows per edit, got {rows_per_edit}")
    return torch.diagonal(per_row.reshape(b_r // d, d, d), dim1=1, dim2=2)


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
        if REWARD_TOKEN in missing and self.config.reward_token_init == "answer_start":
            embeddings = self.backbone.get_input_embeddings().weight
            with torch.no_grad():
                embeddings[self.tokenizer.convert_tokens_to_ids(REWARD_TOKEN)] = embeddings[self.answer_start_token_id()]

    def answer_start_token_id(self) -> int:
        """The last token of the chat template's generation prompt (Qwen: the newline after ``assistant``)."""
        text = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": "x"}], tokenize=False, add_generation_prompt=True
        )
        return int(self.tokenizer(text, add_special_tokens=False)["input_ids"][-1])

    @property
    def row_dimensions(self) -> tuple[str | None, ...]:
        """The dimension each of an edit's rows is prompted for (``paper``: one per dimension; else one None)."""
        return row_dimensions(self.config.prompt, self.dimensions)

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
        from reward.jrm.tiny import build_tiny_backbone

        cfg = config or tiny_jrm_config()
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
        cls,
        path: str | Path,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        prompt: str | None = None,
    ) -> JRM:
        """Load a directory written by :meth:`save_pretrained`; every weight must match by name and shape.

        prompt: the prompt style the caller means to score with; a checkpoint trained with another refuses
                (ConfigError). None: the checkpoint's own (recorded in ``jrm_config.json``).
        """
        root = require_local_dir(path, "JRM checkpoint")
        for needed in (CONFIG_NAME, HEAD_NAME, "backbone", "processor"):
            if not (root / needed).exists():
                raise FileNotFoundError(f"JRM checkpoint {root} lacks {needed}")
        config = JRMConfig.from_json(root / CONFIG_NAME)
        require_prompt(config.prompt, prompt, root)
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
        """Tokenized batch of B edits as B*R rows (R = ``len(self.row_dimensions)``, edit-major: edit i's rows are
        i*R .. i*R+R-1): chat ``[source, edit, row prompt]`` + ``<|reward|>`` (+ rationale + end-of-turn).

        ``rationales``: per edit, the joint rationale JSON (:func:`reward.jrm.rationale.format_joint_rationale`)
        or None; with the ``paper`` prompts each row is followed by its own dimension's part of it (a row whose
        dimension the rationale lacks gets none). ``continuation_mask`` marks exactly the rationale tokens and
        the closing ``<|im_end|>``.
        """
        if not len(sources) == len(edits) == len(instructions):
            raise ValueError(
                f"sources, edits and instructions differ in length: {len(sources)}, {len(edits)}, {len(instructions)}"
            )
        rationales = list(rationales) if rationales is not None else [None] * len(sources)
        samples = [
            source_edit_sample(source, edit, prompt, suffix=REWARD_TOKEN, continuation=continuation)
            for source, edit, instruction, rationale in zip(sources, edits, instructions, rationales)
            for prompt, continuation in zip(
                row_prompts(self.config.prompt, self.dimensions, instruction), self._row_continuations(rationale)
            )
        ]
        return build_vl_batch(self.tokenizer, self.image_processor, samples, padding_side=padding_side)

    def _row_continuations(self, rationale: str | None) -> list[str | None]:
        """The text after ``<|reward|>`` in each of an edit's rows: the joint rationale (one joint row), or each
        dimension's own rationale JSON (``paper``); None where there is none."""
        dims = self.row_dimensions
        if rationale is None:
            return [None] * len(dims)
        if dims == (None,):
            return [rationale + END_OF_TURN]
        parsed = parse_joint_rationale(rationale)
        return [
            format_rationale(parsed[RATIONALE_DIMENSIONS[d]]) + END_OF_TURN if RATIONALE_DIMENSIONS[d] in parsed else None
            for d in dims
            if d is not None
        ]

    def reward_positions(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B,) index of the single ``<|reward|>`` token in each row; anything else is an error."""
        is_reward = input_ids == self.reward_token_id
        counts = is_reward.sum(dim=1)
        if not bool((counts == 1).all()):
            raise ValueError(f"every sequence needs exactly one {REWARD_TOKEN}; counts per row: {counts.tolist()}")
        return is_reward.int().argmax(dim=1)

    def forward(self, batch: VLBatch, with_lm: bool = False) -> JRMOutput:
        """One backbone pass over B*R rows (:meth:`build_inputs`); the head reads each row's ``<|reward|>`` state
        and dimension d of an edit comes from its row d (one joint row: all dimensions from it); the LM head (if
        asked) reads the rationale positions of every row."""
        dtype = self.backbone.get_input_embeddings().weight.dtype
        batch = batch.to(self.device, dtype=dtype)
        outputs = self.backbone.model(**batch.model_inputs(), use_cache=False)
        hidden = outputs.last_hidden_state  # (B*R, L, H)
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        row_h = hidden[rows, self.reward_positions(batch.input_ids)]  # (B*R, H)
        per_row = self.head(row_h)  # (B*R, D)
        n_rows = len(self.row_dimensions)
        if row_h.shape[0] % n_rows:
            raise ValueError(f"{row_h.shape[0]} rows is not a whole number of edits of {n_rows} rows each")
        h = row_h.reshape(row_h.shape[0] // n_rows, -1)  # (B, R*H)
        scores = per_row
        if n_rows > 1:
            scores = HeadOutput(own_row_columns(per_row.mu, n_rows), own_row_columns(per_row.log_sigma, n_rows))
        if not with_lm:
            return JRMOutput(h=h, scores=scores)
        selected, targets = select_lm_targets(hidden, batch.input_ids, batch.continuation_mask)
        return JRMOutput(h=h, scores=scores, lm_logits=self.backbone.lm_head(selected).float(), lm_targets=targets)

    def _parse_explanation(self, texts: Sequence[str], mu: dict[str, float]) -> Explanation:
        """One edit's generated row texts -> :class:`Explanation` (joint JSON, or one JSON per dimension row)."""
        max_regions = self.config.max_region_index + 1
        if self.row_dimensions == (None,):
            try:
                return Explanation(texts[0], parse_joint_rationale(texts[0], max_regions), None, mu)
            except RationaleError as exc:
                return Explanation(texts[0], None, str(exc), mu)
        parsed: dict[str, Rationale] = {}
        errors: list[str] = []
        per_dim: dict[str, str] = {}
        for dim, text in zip(self.row_dimensions, texts):
            key = RATIONALE_DIMENSIONS[str(dim)]
            per_dim[key] = text
            try:
                parsed[key] = parse_rationale(text, key, max_regions)
            except RationaleError as exc:
                errors.append(f"{key}: {exc}")
        return Explanation("\n".join(texts), parsed or None, "; ".join(errors) or None, mu, per_dim)

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
                texts = [text.split(END_OF_TURN)[0].replace(self.tokenizer.pad_token, "") for text in texts]
                n_rows = len(self.row_dimensions)
                for edit in range(len(texts) // n_rows):
                    scores = dict(zip(self.dimensions, mu[edit].tolist()))
                    results.append(self._parse_explanation(texts[edit * n_rows : (edit + 1) * n_rows], scores))
        finally:
            self.train(was_training)
        return results
