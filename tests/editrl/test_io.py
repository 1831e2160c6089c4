"""Atomic writes: content round-trips, failures leave the old file, non-finite tensors are refused."""

import json

import pytest
import torch
from safetensors.torch import load_file

from editrl.io import atomic_replace_dir, atomic_save_safetensors, atomic_write_bytes, atomic_write_json


def test_json_roundtrip_and_nan_refused(tmp_path):
    path = tmp_path / "sub" / "m.json"
    atomic_write_json(path, {"b": 1, "a": [1.5]})
    assert json.loads(path.read_text()) == {"a": [1.5], "b": 1}
    with pytest.raises(ValueError):
        atomic_write_json(path, {"a": float("nan")})
    assert json.loads(path.read_text()) == {"a": [1.5], "b": 1}
    assert [p.name for p in path.parent.iterdir()] == ["m.json"]


def test_failed_write_keeps_previous_file(tmp_path):
    path = tmp_path / "x.bin"
    atomic_write_bytes(path, b"old")

    with pytest.raises(TypeError):
        atomic_write_bytes(path, object())  # type: ignore[arg-type]
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.bin"]


def test_safetensors_roundtrip_and_nonfinite_refused(tmp_path):
    path = tmp_path / "w.safetensors"
    tensors = {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.tensor([1, 2])}
    atomic_save_safetensors(path, tensors, metadata={"step": "3"})
    loaded = load_file(path)
    assert torch.equal(loaded["a"], tensors["a"]) and torch.equal(loaded["b"], tensors["b"])
    with pytest.raises(ValueError, match="'a'"):
        atomic_save_safetensors(path, {"a": torch.tensor([float("inf")])})
    assert torch.equal(load_file(path)["a"], tensors["a"])


def test_replace_dir(tmp_path):
    final = tmp_path / "ckpt"
    final.mkdir()
    (final / "v").write_text("1")
    tmp = tmp_path / "ckpt.tmp"
    tmp.mkdir()
    (tmp / "v").write_text("2")
    atomic_replace_dir(tmp, final)
    assert (final / "v").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
