"""A tiny Qwen-style tokenizer built locally (no hub): byte-level BPE + Qwen's special tokens and chat template.

Tests and tiny random-config Qwen-VL models (the OmniGen2 text encoder, the JRM backbone) need a real
tokenizer whose special tokens and chat template behave like Qwen's, without downloading one. The BPE is
trained with the ``tokenizers`` library on a fixed built-in corpus, so the result is the same on every call.
Byte-level BPE means every string encodes (unknown characters fall back to bytes).
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

QWEN_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Qwen2-VL / Qwen2.5-VL chat template: a default system turn, text or typed content lists, image and video
# slots as <|vision_start|><|image_pad|><|vision_end|> (the processor expands <|image_pad|>).
QWEN_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}"
    "{% endif %}"
    "{% endfor %}<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS: tuple[str, ...] = (
    "system user assistant You are a helpful assistant.",
    "You are a helpful assistant that generates high quality images based on user instructions.",
    "Change the color of the car to red. Make the sky blue and add some clouds.",
    "Remove the person on the left. Replace the background with a beach at sunset.",
    "Add a hat to the dog. Turn the photo into a watercolor painting.",
    "Make the image brighter and increase the contrast. Put a cat on the sofa.",
    "Evaluate the edited image. How well does it follow the instruction? Rate the visual quality.",
    "The edit follows the instruction well, but there are visible artifacts near the edges.",
    "The source image shows a red square on a white background; the edit moves it to the right.",
    "instruction following visual quality score reasoning edit region global bbox label",
    '{"edit_region": [{"id": 0, "label": "car", "bbox_2d": [120, 340, 560, 880]}], "reasoning": "ok"}',
    "0 1 2 3 4 5 6 7 8 9 10 100 1000 a b c d e f g h i j k l m n o p q r s t u v w x y z",
    "A B C D E F G H I J K L M N O P Q R S T U V W X Y Z . , ; : ! ? ' \" ( ) [ ] { } - _ / + = * # @ < > |",
    "circle square triangle star red green blue yellow purple orange black white gray small large left right "
    "top bottom center shape color size position background foreground object scene",
)


def build_tiny_qwen_tokenizer(
    extra_special_tokens: Sequence[str] = (), vocab_size: int = 512, words: Sequence[str] = ()
) -> PreTrainedTokenizerFast:
    """Return a deterministic tiny byte-level BPE tokenizer with Qwen's special tokens and VL chat template.

    ``words``: vocabulary that must stay whole (e.g. a toy world's colour, shape and place words): the BPE also
    trains on them (frequent enough to be merged first) and gets room for their merges, so each becomes one
    token after a space; raises if one does not. Without them the 512-entry BPE splits most words into
    fragments that a tiny random text encoder cannot tell apart.

    Special tokens are appended after the BPE vocabulary (as in Qwen): ``<|endoftext|>`` is the pad token,
    ``<|im_end|>`` the EOS. ``extra_special_tokens`` (e.g. ``"<|reward|>"``) are added as further special
    tokens that never split. Padding is on the right.
    """
    duplicated = sorted({t for t in extra_special_tokens if list(extra_special_tokens).count(t) > 1})
    if duplicated:
        raise ValueError(f"extra_special_tokens repeats {duplicated}")
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    words = sorted(set(words))
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size + sum(len(w) for w in words),
        min_frequency=1,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    word_corpus = [" ".join(f" {w}" for w in words)] * 1000 if words else []
    backend.train_from_iterator([*word_corpus, *_CORPUS], trainer=trainer)
    split = [w for w in words if len(backend.encode(f" {w}").tokens) != 1]
    if split:
        raise ValueError(f"the tiny BPE splits {split}; raise vocab_size")
    extras = [t for t in extra_special_tokens if t not in QWEN_SPECIAL_TOKENS]
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        additional_special_tokens=[*QWEN_SPECIAL_TOKENS, *extras],
        chat_template=QWEN_VL_CHAT_TEMPLATE,
        padding_side="right",
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
    )
    return tokenizer
