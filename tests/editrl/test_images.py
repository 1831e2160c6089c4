"""Image decoding errors, load-time checks and data-root containment."""

import pytest
from PIL import Image

from editrl.images import (
    ImageDecodeError,
    PathOutsideRootError,
    decode_rgb,
    find_undecodable,
    resolve_inside,
)


def _png(path, size=(8, 8), colour=(200, 10, 10)):
    Image.new("RGB", size, colour).save(path)
    return path


def test_decodes_to_rgb(tmp_path):
    Image.new("L", (4, 3), 7).save(tmp_path / "grey.png")
    img = decode_rgb(tmp_path / "grey.png")
    assert img.mode == "RGB" and img.size == (4, 3) and img.getpixel((0, 0)) == (7, 7, 7)


def test_truncated_png_is_a_named_corrupt_image(tmp_path):
    data = _png(tmp_path / "ok.png", size=(64, 64)).read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageDecodeError, match="cut.png") as err:
        decode_rgb(tmp_path / "cut.png")
    assert err.value.reason == "corrupt_image"


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(ImageDecodeError) as err:
        decode_rgb(tmp_path / "nope.png")
    assert err.value.reason == "missing_image"
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ImageDecodeError) as err:
        decode_rgb(tmp_path / "text.png")
    assert err.value.reason == "corrupt_image"


def test_decompression_bomb_becomes_a_decode_error(tmp_path, monkeypatch):
    path = _png(tmp_path / "big.png", size=(64, 64))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 64*64 > 2 * 100: Pillow raises DecompressionBombError
    with pytest.raises(ImageDecodeError, match="decompression bomb") as err:
        decode_rgb(path)
    assert err.value.reason == "corrupt_image"


def test_find_undecodable_reports_only_the_bad_files(tmp_path):
    good = _png(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    failures = find_undecodable([good, tmp_path / "bad.png", tmp_path / "gone.png", good], workers=2)
    assert set(failures) == {tmp_path / "bad.png", tmp_path / "gone.png"}
    assert failures[tmp_path / "gone.png"].reason == "missing_image"


def test_paths_must_stay_inside_their_root(tmp_path):
    root = tmp_path / "data"
    (root / "imgs").mkdir(parents=True)
    assert resolve_inside(root, "imgs/a.png") == root / "imgs" / "a.png"
    for escape in ("../secret.png", "imgs/../../secret.png", str(tmp_path / "abs.png")):
        with pytest.raises(PathOutsideRootError, match="leaves the data root"):
            resolve_inside(root, escape)
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(PathOutsideRootError):
        resolve_inside(root, "link/x.png")
    assert resolve_inside(root, "../ok.png", allow_outside=True) == root / "../ok.png"
