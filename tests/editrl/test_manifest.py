"""Checkpoint manifests catch missing, truncated and altered files, naming them."""

import hashlib
import json

import pytest

from editrl.manifest import MANIFEST_NAME, DamagedCheckpointError, verify_manifest, write_manifest


@pytest.fixture
def ckpt(tmp_path):
    d = tmp_path / "step_00000003"
    (d / "sub").mkdir(parents=True)
    (d / "adapter.safetensors").write_bytes(b"\x01" * 1000)
    (d / "sub" / "optimizer.pt").write_bytes(b"opt")
    write_manifest(d)
    return d


def test_manifest_records_size_and_sha256(ckpt):
    entries = json.loads((ckpt / MANIFEST_NAME).read_text())["files"]
    assert entries["sub/optimizer.pt"] == {"size": 3, "sha256": hashlib.sha256(b"opt").hexdigest()}
    assert set(entries) == {"adapter.safetensors", "sub/optimizer.pt"}
    verify_manifest(ckpt)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "sub" / "optimizer.pt").unlink(), "sub/optimizer.pt is missing"),
        (lambda d: (d / "adapter.safetensors").write_bytes(b"\x01" * 10), "adapter.safetensors has 10 bytes"),
        (lambda d: (d / "adapter.safetensors").write_bytes(b"\x02" * 1000), "adapter.safetensors does not match"),
        (lambda d: (d / MANIFEST_NAME).unlink(), "no manifest.json"),
        (lambda d: (d / MANIFEST_NAME).write_text("{"), "unreadable manifest"),
    ],
)
def test_each_kind_of_damage_is_named(ckpt, damage, message):
    damage(ckpt)
    with pytest.raises(DamagedCheckpointError, match=message):
        verify_manifest(ckpt)
