"""EditReward (TIGER-AI-Lab), reproduced: a Qwen2.5-VL (or Qwen3-VL) backbone with two MLP heads read at ``<|Reward|>``.

Published architecture (``ranknet_multi_head``, ``output_dim=2``, ``pooling_strategy="mean"``):

- the prompt of dimension k (k=1 instruction following, k=2 visual quality) ends with a fixed suffix that
  contains the added special token ``<|Reward|>``; images: source then edited, both at 200,704 pixels;
- head k is ``Linear(H, 1024) -> ReLU -> Dropout(0.05) -> Linear(1024, 16) -> ReLU -> Linear(16, 2)`` in fp32
  on the last hidden state at ``<|Reward|>``, giving ``[mu, log_sigma]``;
- two passes (one per prompt/head); the published score averages the two heads' outputs.

Positions: the official model embeds the tokens, scatters the vision tower's image features into the image
token positions itself, and calls the backbone with ``inputs_embeds`` and the attention mask only (no ``input_ids``,
no image grids). A Qwen2.5-VL-family backbone (Qwen2.5-VL, MiMo-VL; ``model_type == "qwen2_5_vl"``) then
cannot build its 3-D M-RoPE image positions and gives every token, image tokens included, plain 1-D positions
``cumsum(attention_mask) - 1`` on all three rotary axes; the released checkpoints were trained that way, so
:func:`plain_positions` reproduces it. A Qwen3-VL backbone is called with its usual inputs (its M-RoPE
positions match the official model's).

Weights use the published state-dict names (``model.visual.*``, ``model.language_model.*``, ``lm_head.weight``,
``rm_heads.head_{0,1}.{0,3,5}.{weight,bias}``) and load strictly: every key must be used and every parameter
filled. Pre-4.52 transformers names (``visual.*``, ``model.layers.*``) are renamed first. The files: safetensors
(``model.safetensors`` or a sharded index) first; otherwise ``model.pth``, what the official save code writes
(a state dict, possibly under a ``"model"`` key), read only with ``torch.load(weights_only=True)``, which
refuses anything but tensors and plain containers.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from safetensors.torch import load_file
from torch import nn
from transformers import (
    AutoConfig,
    AutoTokenizer,
    PretrainedConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen3VLForConditionalGeneration,
)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from editrl.io import atomic_replace_dir, atomic_save_safetensors, atomic_write_json, require_local_dir
from reward.base import DEFAULT_DIMENSIONS, RewardScores
from reward.qwen_vl_inputs import build_vl_batch, source_edit_sample

EDITREWARD_TOKEN = "<|Reward|>"
EDITREWARD_PIXELS = 200_704
HEAD_HIDDEN = 1024
HEAD_BOTTLENECK = 16
HEAD_DROPOUT = 0.05
WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
#: The official trainer's single-file save: ``torch.save({"model": state_dict, ...})`` or a bare state dict.
TORCH_WEIGHTS_NAME = "model.pth"
#: Backbones the official model runs with plain 1-D positions (see the module docstring).
PLAIN_POSITION_BACKBONES = ("qwen2_5_vl",)
#: Written by ``save_pretrained`` (per-image pixel budget); released checkpoints lack it -> 200,704.
SETTINGS_NAME = "editrl_editreward.json"
BACKBONES: dict[str, type[nn.Module]] = {
    "qwen2_5_vl": Qwen2_5_VLForConditionalGeneration,
    "qwen3_vl": Qwen3VLForConditionalGeneration,
}

# The two evaluation prompts and the suffix the released checkpoints were trained with (EditReward's
# dataset/prompts.py and data collator); the text must match them for the published weights to score as
# published, so it is reproduced exactly.
_IF_PROMPT = """
You are tasked with evaluating an edited image **in comparison with the original source image** based on **Instruction Following & Semantic Fidelity**, and assigning a score from 1 to 4, with 1 being the worst and 4 being the best.  
This dimension focuses on how accurately, completely, and exclusively the model executed the given text instruction.

**Inputs Provided:**  
- Source Image (before editing)  
- Edited Image (after applying the instruction)  
- Text Instruction  

**Sub-Dimensions to Evaluate:**

- **Semantic Accuracy:**  
  Assess whether the edited content accurately captures the semantics of the instruction. The edited result should precisely match the intended meaning. For example, if the instruction is "replace apples with oranges," the object must clearly be oranges, not other fruits.

- **Completeness of Editing:**  
  Check whether **all parts** of the instruction are fully executed. For multi-step edits (e.g., "replace a red car with a blue bicycle"), both the color change and the object replacement must be done without omissions.

- **Exclusivity of Edit (No Over-Editing):**  
  Ensure that only the requested parts are changed. The rest of the image (as seen in the source) should remain unaltered. For example, if the instruction only involves replacing an object, the background, lighting, and unrelated objects should not be unnecessarily modified.

**Scoring Criteria:**
- **4 (Very Good):** Perfectly accurate, complete, and exclusive execution of the instruction.  
- **3 (Relatively Good):** Largely correct, but with minor omissions or slight over-editing.  
- **2 (Relatively Poor):** Major misinterpretation, incomplete edits, or noticeable unintended changes.  
- **1 (Very Poor):** Instruction ignored or completely wrong execution.

Text instruction - {text_prompt}
"""  # noqa: W291

_VQ_PROMPT = """
You are tasked with evaluating an edited image **in comparison with the original source image** based on **Visual Quality & Realism**, and assigning a score from 1 to 4, with 1 being the worst and 4 being the best.  
This dimension focuses on how realistic, artifact-free, and aesthetically appealing the edited image is, while remaining consistent with the source image.

**Inputs Provided:**  
- Source Image (before editing)  
- Edited Image (after applying the instruction)  
- Text Instruction  

**Sub-Dimensions to Evaluate:**

- **Plausibility & Physical Consistency:**  
  Check whether the edit aligns with the laws of physics and the scene context. Lighting, shadows, reflections, perspective, size, and interactions with the environment should all appear natural compared to the source image.

- **Artifact-Free Quality:**  
  Look for technical flaws such as blur, distortions, pixel misalignment, unnatural textures, or seams around edited regions. High-quality results should be free from such visible artifacts.

- **Aesthetic Quality:**  
  Evaluate the overall harmony and visual appeal. The image should look natural, balanced, and pleasant. Colors, composition, and atmosphere should enhance the image rather than degrade it.

**Scoring Criteria:**
- **4 (Very Good):** Perfectly realistic, artifact-free, seamless, and aesthetically pleasing.  
- **3 (Relatively Good):** Mostly realistic and clean, with only minor flaws that do not significantly distract.  
- **2 (Relatively Poor):** Noticeable physical inconsistencies or visible artifacts that make the edit unnatural.  
- **1 (Very Poor):** Severe artifacts, incoherent composition, or visually unusable result.

Text instruction - {text_prompt}
"""  # noqa: W291

_SUFFIX = """
Please provide the overall ratings of this image: <|Reward|>

END
"""

#: Prompt of each head, in head order (head_0 = instruction following, head_1 = visual quality).
EDITREWARD_PROMPTS: tuple[str, ...] = (_IF_PROMPT, _VQ_PROMPT)


def editreward_head(hidden_size: int) -> nn.Sequential:
    """One published head: Linear(H,1024)-ReLU-Dropout-Linear(1024,16)-ReLU-Linear(16,2); Linears at 0, 3, 5."""
    return nn.Sequential(
        nn.Linear(hidden_size, HEAD_HIDDEN),
        nn.ReLU(),
        nn.Dropout(HEAD_DROPOUT),
        nn.Linear(HEAD_HIDDEN, HEAD_BOTTLENECK),
        nn.ReLU(),
        nn.Linear(HEAD_BOTTLENECK, 2),
    )


def rename_legacy_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map pre-4.52 transformers names (``visual.*``, ``model.layers.*``) to the current nesting."""
    renamed = {}
    for key, value in state_dict.items():
        if key.startswith("visual."):
            key = "model." + key
        elif re.match(r"model\.(layers|embed_tokens|norm)\.", key):
            key = "model.language_model." + key[len("model.") :]
        renamed[key] = value
    return renamed


def _read_torch_weights(path: Path) -> dict[str, torch.Tensor]:
    """``model.pth`` via ``torch.load(weights_only=True)``; the state dict itself or under a ``"model"`` key."""
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # an unsafe pickle (any object but tensors and containers) raises UnpicklingError
        raise ValueError(f"{path}: not loadable with torch.load(weights_only=True): {str(exc).splitlines()[0]}") from None
    if isinstance(raw, dict) and isinstance(raw.get("model"), dict):
        raw = raw["model"]
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{path}: expected a state dict (or one under a 'model' key), got {type(raw).__name__}")
    bad = sorted(str(k) for k, v in raw.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor))
    if bad:
        raise ValueError(f"{path}: entries that are not named tensors: {bad[:8]}")
    return dict(raw)


def _read_weights(root: Path) -> dict[str, torch.Tensor]:
    """All tensors of a single-file or sharded safetensors checkpoint, else of ``model.pth``."""
    if (root / WEIGHTS_NAME).is_file():
        return load_file(root / WEIGHTS_NAME)
    if (root / WEIGHTS_INDEX_NAME).is_file():
        shards = sorted(set(json.loads((root / WEIGHTS_INDEX_NAME).read_text())["weight_map"].values()))
        weights: dict[str, torch.Tensor] = {}
        for shard in shards:
            weights.update(load_file(root / shard))
        return weights
    if (root / TORCH_WEIGHTS_NAME).is_file():
        return _read_torch_weights(root / TORCH_WEIGHTS_NAME)
    raise FileNotFoundError(f"no {WEIGHTS_NAME}, {WEIGHTS_INDEX_NAME} or {TORCH_WEIGHTS_NAME} in {root}")


def plain_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, L) attention mask -> (3, B, L) positions ``cumsum(mask) - 1`` on every rotary axis (0 at padding).

    What a Qwen2.5-VL backbone computes for itself when called with ``inputs_embeds`` and no ``input_ids`` /
    image grids: one running index over the real tokens, image tokens included, the same on the t, h and w axes.
    """
    mask = attention_mask.long()
    positions = (mask.cumsum(dim=-1) - 1).masked_fill(mask == 0, 0)
    return positions[None].expand(3, -1, -1)


class EditRewardModel(nn.Module):
    """EditReward behind :class:`reward.base.RewardModel`: IF from head 0 on prompt 1, VQ from head 1 on prompt 2.

    ``score`` returns per-dimension ``mu`` and ``sigma = exp(log_sigma)``; ``reward`` is the published fused
    score, the mean of the two heads' ``mu``.
    """

    dimensions: tuple[str, ...] = DEFAULT_DIMENSIONS

    def __init__(
        self,
        config: PretrainedConfig,
        tokenizer: Any,
        image_processor: Qwen2VLImageProcessorPil,
        batch_size: int = 8,
        pixels: int = EDITREWARD_PIXELS,
    ) -> None:
        super().__init__()
        if config.model_type not in BACKBONES:
            raise ValueError(f"EditReward backbone must be one of {sorted(BACKBONES)}, got {config.model_type!r}")
        self.model_type = config.model_type
        self.backbone = BACKBONES[config.model_type](config)
        self.rm_heads = nn.ModuleDict({f"head_{i}": editreward_head(config.text_config.hidden_size) for i in range(2)})
        self.rm_heads.float()
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.pixels = pixels
        self.image_processor.size = {"shortest_edge": pixels, "longest_edge": pixels}
        self.batch_size = batch_size
        if EDITREWARD_TOKEN not in tokenizer.get_vocab():
            tokenizer.add_special_tokens({"additional_special_tokens": [EDITREWARD_TOKEN]}, replace_extra_special_tokens=False)
        self.reward_token_id = int(tokenizer.convert_tokens_to_ids(EDITREWARD_TOKEN))
        rows = self.backbone.get_input_embeddings().weight.shape[0]
        if self.reward_token_id >= rows:
            raise ValueError(f"{EDITREWARD_TOKEN} has id {self.reward_token_id} but the backbone has {rows} embedding rows")

    @property
    def device(self) -> torch.device:
        return self.backbone.get_input_embeddings().weight.device

    # published state dict ----------------------------------------------------------------------------------

    def published_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights under the published names (the backbone's own names at top level, plus ``rm_heads.*``)."""
        out = dict(self.backbone.state_dict())
        out.update({f"rm_heads.{k}": v for k, v in self.rm_heads.state_dict().items()})
        return out

    def load_published_state_dict(self, state_dict: dict[str, torch.Tensor], source: str = "state dict") -> None:
        """Strict load of published names (legacy names renamed first); a mismatch names the keys."""
        state_dict = rename_legacy_keys(state_dict)
        heads = {k[len("rm_heads.") :]: v for k, v in state_dict.items() if k.startswith("rm_heads.")}
        body = {k: v for k, v in state_dict.items() if not k.startswith("rm_heads.")}
        expected_body = set(self.backbone.state_dict())
        tied = {"lm_head.weight"} if getattr(self.backbone.config, "tie_word_embeddings", False) else set()
        missing = sorted((expected_body - set(body)) - tied) + sorted(
            f"rm_heads.{k}" for k in set(self.rm_heads.state_dict()) - set(heads)
        )
        unexpected = sorted(set(body) - expected_body) + sorted(
            f"rm_heads.{k}" for k in set(heads) - set(self.rm_heads.state_dict())
        )
        if missing or unexpected:
            raise ValueError(f"EditReward weights in {source} do not match: missing {missing[:8]}, unexpected {unexpected[:8]}")
        self.backbone.load_state_dict(body, strict=not tied)
        self.rm_heads.load_state_dict(heads, strict=True)
        self.rm_heads.float()

    # construction and persistence -----------------------------------------------------------------------

    @classmethod
    def build_tiny(cls, seed: int = 0, backbone: str = "qwen2_5_vl", pixels: int = 64 * 64) -> EditRewardModel:
        """A tiny random EditReward (local tokenizer, tiny Qwen2.5-VL or Qwen3-VL), deterministic in ``seed``."""
        from editrl.tiny_qwen_vl import build_tiny_qwen2_5_vl, build_tiny_qwen3_vl

        builders = {"qwen2_5_vl": build_tiny_qwen2_5_vl, "qwen3_vl": build_tiny_qwen3_vl}
        parts = builders[backbone](extra_special_tokens=(EDITREWARD_TOKEN,))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return cls(parts.config, parts.tokenizer, parts.image_processor, pixels=pixels)

    @classmethod
    def from_pretrained(
        cls,
        checkpoint_dir: str | Path,
        base_model_dir: str | Path | None = None,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int = 8,
    ) -> EditRewardModel:
        """Load EditReward weights (``model.safetensors``, a sharded index, or ``model.pth``) from a local directory.

        The backbone config, tokenizer and image processor come from ``base_model_dir`` (the Qwen-VL model
        EditReward was trained from) or, if absent, from ``checkpoint_dir``. The embedding size is taken
        from the weights (EditReward resized the vocabulary to the tokenizer after adding ``<|Reward|>``).
        """
        root = require_local_dir(checkpoint_dir, "EditReward checkpoint")
        base = require_local_dir(base_model_dir, "Qwen-VL base model") if base_model_dir is not None else root
        weights = rename_legacy_keys(_read_weights(root))
        config = AutoConfig.from_pretrained(base)
        embed = weights.get("model.language_model.embed_tokens.weight")
        if embed is None:
            raise ValueError(f"EditReward weights in {root} lack model.language_model.embed_tokens.weight")
        config.get_text_config().vocab_size = int(embed.shape[0])
        tokenizer = AutoTokenizer.from_pretrained(base)
        image_processor = Qwen2VLImageProcessorPil.from_pretrained(base)
        settings_path = root / SETTINGS_NAME
        pixels = json.loads(settings_path.read_text())["pixels"] if settings_path.is_file() else EDITREWARD_PIXELS
        model = cls(config, tokenizer, image_processor, batch_size=batch_size, pixels=int(pixels))
        model.load_published_state_dict(weights, source=str(root))
        model.backbone.to(device=device, dtype=dtype)
        model.rm_heads.to(device=device)
        return model

    def save_pretrained(self, path: str | Path) -> None:
        """Write config, tokenizer, image processor and ``model.safetensors`` (published names), atomically."""
        final = Path(path)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
        self.backbone.config.save_pretrained(tmp)
        self.tokenizer.save_pretrained(tmp)
        self.image_processor.save_pretrained(tmp)
        state = self.published_state_dict()
        if getattr(self.backbone.config, "tie_word_embeddings", False):
            state.pop("lm_head.weight", None)
        atomic_save_safetensors(tmp / WEIGHTS_NAME, {k: v.clone() for k, v in state.items()})
        atomic_write_json(tmp / SETTINGS_NAME, {"pixels": self.pixels})
        atomic_replace_dir(tmp, final)

    # scoring ----------------------------------------------------------------------------------------------

    def _head_scores(self, head_index: int, sources, edits, instructions) -> torch.Tensor:
        """(B, 2) ``[mu, log_sigma]`` of one head on its own prompt (one backbone pass)."""
        prompt = EDITREWARD_PROMPTS[head_index]
        samples = [
            source_edit_sample(source, edit, prompt.format(text_prompt=instruction) + _SUFFIX)
            for source, edit, instruction in zip(sources, edits, instructions)
        ]
        dtype = self.backbone.get_input_embeddings().weight.dtype
        batch = build_vl_batch(self.tokenizer, self.image_processor, samples, padding_side="right").to(self.device, dtype)
        inputs = batch.model_inputs()
        if self.model_type in PLAIN_POSITION_BACKBONES:
            inputs["position_ids"] = plain_positions(batch.attention_mask)
        hidden = self.backbone.model(**inputs, use_cache=False).last_hidden_state
        is_reward = batch.input_ids == self.reward_token_id
        if not bool((is_reward.sum(dim=1) == 1).all()):
            raise ValueError(f"every EditReward prompt needs exactly one {EDITREWARD_TOKEN}")
        h = hidden[torch.arange(hidden.shape[0], device=hidden.device), is_reward.int().argmax(dim=1)]
        return self.rm_heads[f"head_{head_index}"](h.float())

    @torch.no_grad()
    def score(
        self, sources: Sequence[Image.Image], edits: Sequence[Image.Image], instructions: Sequence[str]
    ) -> RewardScores:
        """Two passes (IF prompt -> head 0, VQ prompt -> head 1); reward = mean of the two means."""
        if not len(sources) == len(edits) == len(instructions):
            raise ValueError("sources, edits and instructions differ in length")
        was_training = self.training
        self.eval()
        try:
            chunks = []
            for start in range(0, len(sources), self.batch_size):
                sl = slice(start, start + self.batch_size)
                per_head = [self._head_scores(i, sources[sl], edits[sl], instructions[sl]) for i in range(2)]
                chunks.append(torch.stack(per_head, dim=1).cpu())  # (b, 2 heads, [mu, log_sigma])
        finally:
            self.train(was_training)
        out = torch.cat(chunks) if chunks else torch.zeros(0, 2, 2)
        mu, sigma = out[..., 0], out[..., 1].exp()
        bad = (~torch.isfinite(mu).all(dim=1) | ~torch.isfinite(sigma).all(dim=1)).nonzero().flatten().tolist()
        if bad:
            raise FloatingPointError(f"EditReward produced non-finite scores for batch items {bad}")
        return RewardScores(mu=mu, sigma=sigma, reward=mu.mean(dim=1), dimensions=self.dimensions)
