"""The one map from config dtype names to torch dtypes."""

from __future__ import annotations

import torch

from editrl.config import ConfigError

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def check_dtype_name(name: str, key: str = "dtype") -> None:
    """Raise a :class:`ConfigError` naming ``key`` unless ``name`` is a known dtype name."""
    if name not in DTYPES:
        raise ConfigError(f"{key}: must be one of {sorted(DTYPES)}, got {name!r}")


def torch_dtype(name: str | torch.dtype) -> torch.dtype:
    """The torch dtype a config name stands for (a torch dtype passes through)."""
    if isinstance(name, torch.dtype):
        return name
    check_dtype_name(name)
    return DTYPES[name]
