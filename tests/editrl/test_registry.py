import pytest

from editrl.config import ConfigError
from editrl.registry import Registry


def test_unknown_kind_error_names_key_and_known_kinds():
    registry = Registry("widget", {"a": 1, "b": 2})
    with pytest.raises(ConfigError) as err:
        registry.get("c", key="model.kind")
    message = str(err.value)
    assert message.startswith("model.kind:")
    assert "'c'" in message and "['a', 'b']" in message


def test_extended_copies_and_leaves_original_unchanged():
    base = Registry("widget", {"a": 1})
    more = base.extended(b=2)
    assert more.get("b") == 2 and more.get("a") == 1
    assert "b" not in base and base.names == ("a",)
    assert more.what == "widget"


def test_register_twice_is_an_error_and_decorator_form_registers():
    registry: Registry = Registry("widget")

    @registry.register("f")
    def f() -> int:
        return 3

    assert registry.get("f")() == 3
    with pytest.raises(ValueError, match="already registered"):
        registry.register("f", f)
    with pytest.raises(ValueError, match="already registered"):
        registry.extended(f=f)
