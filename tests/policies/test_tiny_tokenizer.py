"""The locally built tiny Qwen tokenizer: deterministic, Qwen's special tokens, chat template, round trips."""

from transformers import AutoTokenizer

from editrl.tiny_tokenizer import QWEN_SPECIAL_TOKENS, build_tiny_qwen_tokenizer


def test_deterministic_and_special_tokens_are_single_ids():
    first, second = build_tiny_qwen_tokenizer(("<|reward|>",)), build_tiny_qwen_tokenizer(("<|reward|>",))
    assert first.get_vocab() == second.get_vocab()
    for token in (*QWEN_SPECIAL_TOKENS, "<|reward|>"):
        ids = first(token, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and first.convert_ids_to_tokens(ids[0]) == token
    assert first.pad_token == "<|endoftext|>" and first.eos_token == "<|im_end|>"
    text = "Edit: make the 🚗 red, ünïcödé"
    assert first.decode(first(text)["input_ids"]) == text


def test_chat_template_places_image_slot_and_roles(tmp_path):
    tok = build_tiny_qwen_tokenizer()
    messages = [
        {"role": "system", "content": "Sys prompt."},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Make it red."}]},
    ]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nSys prompt.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Make it red.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    no_system = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert no_system.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")
    tok.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded(text)["input_ids"] == tok(text)["input_ids"]
    assert reloaded.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == text


def test_world_words_become_single_tokens_and_decode_back():
    from world.tasks import INSTRUCTION_WORDS, make_tasks

    plain, worded = build_tiny_qwen_tokenizer(), build_tiny_qwen_tokenizer(words=INSTRUCTION_WORDS)
    assert len(plain.tokenize(" cyan triangle")) > 2  # the plain BPE fragments them
    for word in INSTRUCTION_WORDS:
        assert worded.tokenize(f" {word}") == [f"Ġ{word}"]
    for task in make_tasks("pretrain", 12, 32):
        ids = worded(task.instruction)["input_ids"]
        assert worded.decode(ids) == task.instruction
        # every word after the first is one token
        assert len(worded.tokenize(task.instruction)) <= len(plain.tokenize(task.instruction.split(" ", 1)[0])) + task.instruction.count(" ")


def test_without_words_the_tokenizer_is_unchanged():
    assert build_tiny_qwen_tokenizer(words=()).get_vocab() == build_tiny_qwen_tokenizer().get_vocab()
