"""Input checks and OmniGen2's reference-image preprocessing."""

import numpy as np
import pytest
import torch
from PIL import Image

from policies.omnigen2.image_processing import (
    normalize_edit_inputs,
    preprocess_reference,
    reference_size,
    to_rgb8,
)


def test_reference_size_follows_omnigen2_rules():
    # no upscaling; floor to 16: 1000x500 -> 992x496
    assert reference_size(1000, 500, max_pixels=1024 * 1024, max_side_length=1024) == (992, 496)
    # long side capped at 512: ratio 0.512 -> 512x256
    assert reference_size(1000, 500, max_pixels=1024 * 1024, max_side_length=512) == (512, 256)
    # pixel cap: 2000x2000 with max 512*512 pixels -> ratio 0.256 -> 512x512
    assert reference_size(2000, 2000, max_pixels=512 * 512, max_side_length=4096) == (512, 512)
    # too small: short side 10 is upscaled to 16 (ratio 1.6) -> 16x32
    assert reference_size(10, 20, max_pixels=1024 * 1024, max_side_length=1024) == (16, 32)


def test_non_rgb_and_16_bit_inputs_become_8_bit_rgb():
    assert to_rgb8(Image.new("L", (2, 2), 7)).getpixel((0, 0)) == (7, 7, 7)
    transparent = Image.new("RGBA", (2, 2), (10, 20, 30, 0))
    assert to_rgb8(transparent).getpixel((0, 0)) == (255, 255, 255)
    opaque = Image.new("RGBA", (2, 2), (10, 20, 30, 255))
    assert to_rgb8(opaque).getpixel((0, 0)) == (10, 20, 30)
    palette = Image.new("RGB", (2, 2), (0, 128, 255)).convert("P")
    assert to_rgb8(palette).mode == "RGB"
    assert to_rgb8(Image.new("CMYK", (2, 2), (0, 0, 0, 0))).getpixel((0, 0)) == (255, 255, 255)
    sixteen = Image.fromarray(np.array([[65535, 0]], dtype=np.uint16))
    assert sixteen.mode.startswith("I;16")
    assert [to_rgb8(sixteen).getpixel((x, 0)) for x in range(2)] == [(255, 255, 255), (0, 0, 0)]
    wide = Image.fromarray(np.array([[65535, 257 * 100]], dtype=np.int32))
    assert wide.mode == "I"
    assert to_rgb8(wide).getpixel((1, 0)) == (100, 100, 100)
    assert to_rgb8(Image.fromarray(np.array([[0.5]], dtype=np.float32))).getpixel((0, 0)) == (128, 128, 128)


def test_preprocess_gives_aligned_normalised_tensor():
    pixels = preprocess_reference(Image.new("LA", (70, 37), (255, 255)), max_pixels=10**6, max_side_length=1024)
    assert pixels.shape == (3, 32, 64)
    assert torch.allclose(pixels, torch.ones_like(pixels))


def test_bad_inputs_raise_clear_errors():
    image = Image.new("RGB", (16, 16))
    with pytest.raises(ValueError, match="sample 1: 6 reference images"):
        normalize_edit_inputs([image, [image] * 6], ["a", "b"])
    with pytest.raises(ValueError, match="sample 0: the instruction is empty"):
        normalize_edit_inputs([image], ["   "])
    with pytest.raises(ValueError, match="2 sources for 1 instructions"):
        normalize_edit_inputs([image, image], ["a"])
    with pytest.raises(ValueError, match="sample 0: no reference image"):
        normalize_edit_inputs([[]], ["a"])
    refs, texts = normalize_edit_inputs([image, [image, image]], [" a ", "b"])
    assert [len(r) for r in refs] == [1, 2] and texts == ["a", "b"]
