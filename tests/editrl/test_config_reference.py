"""The config reference is read off the schema: every leaf key, its type and default."""

from dataclasses import dataclass, field

from editrl.config_reference import iter_keys, reference_markdown, sections_help


@dataclass
class Optim:
    """Optimizer settings."""

    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])


@dataclass
class Run:
    """A run."""

    name: str | None = None
    optim: Optim = field(default_factory=Optim)


def test_every_leaf_key_with_type_and_default():
    assert [k[:3] for k in iter_keys(Run)] == [
        ("name", "str | None", "None"),
        ("optim.lr", "float", "0.001"),
        ("optim.betas", "list[float]", "[0.9, 0.95]"),
    ]


def test_sections_help_lists_sections_and_points_to_the_reference():
    text = sections_help(Run, reference="docs/ref.md")
    assert "optim.*" in text and "Optimizer settings." in text
    assert "name" in text and text.endswith("docs/ref.md")


def test_markdown_escapes_pipes_in_types():
    md = reference_markdown(Run, "Run keys")
    assert md.startswith("# Run keys\n") and "| `name` | `str \\| None` | `None` |" in md
