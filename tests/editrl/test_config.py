"""Structured config loading: presets over a base, overrides, and errors that name the key."""

from dataclasses import dataclass, field

import pytest

from editrl.config import ConfigError, load_config


@dataclass
class Inner:
    lr: float = 1e-3
    steps: int = 10

    def validate(self) -> None:
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")


@dataclass
class Outer:
    name: str = "base"
    inner: Inner = field(default_factory=Inner)


def test_defaults_then_yaml_chain_then_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text("name: from_base\ninner:\n  steps: 20\n")
    (tmp_path / "preset.yaml").write_text("base: base.yaml\ninner:\n  lr: 0.5\n")
    cfg = load_config(Outer, tmp_path / "preset.yaml", ["inner.steps=7"])
    assert isinstance(cfg, Outer) and isinstance(cfg.inner, Inner)
    assert (cfg.name, cfg.inner.lr, cfg.inner.steps) == ("from_base", 0.5, 7)


def test_unknown_key_is_named(tmp_path):
    (tmp_path / "bad.yaml").write_text("inner:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="learning_rate"):
        load_config(Outer, tmp_path / "bad.yaml")


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match="inner.steps"):
        load_config(Outer, None, ["inner.steps=many"])


def test_validate_error_carries_key_path():
    with pytest.raises(ConfigError, match=r"inner\.lr must be > 0"):
        load_config(Outer, None, ["inner.lr=-1"])


def test_malformed_override_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="key=value"):
        load_config(Outer, None, ["inner.lr"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(Outer, tmp_path / "nope.yaml")


def test_base_loop_is_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="loops"):
        load_config(Outer, tmp_path / "a.yaml")


@dataclass
class WithList:
    items: list[Inner] = field(default_factory=lambda: [Inner(), Inner()])
    scale: float = 1.0


def test_list_entries_are_validated_with_their_index():
    with pytest.raises(ConfigError, match=r"^items\.1\.lr must be > 0"):
        load_config(WithList, None, ["items=[{lr: 0.1}, {lr: -1.0}]"])


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_floats_are_rejected_by_key(value):
    with pytest.raises(ConfigError, match=r"^inner\.lr: must be a finite number"):
        load_config(Outer, None, [f"inner.lr={value}"])
    with pytest.raises(ConfigError, match=r"^items\.0\.lr: must be a finite number"):
        load_config(WithList, None, [f"items=[{{lr: {value}}}]"])
