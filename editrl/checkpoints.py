"""Step-numbered checkpoint directories, shared by the RL and JRM trainers.

Layout: ``<root>/step_<8-digit step>/`` (e.g. ``checkpoints/step_00000012``). A checkpoint is written under a
hidden temporary name (``.step_00000012.tmp``) and renamed into place in one step
(:func:`editrl.io.atomic_replace_dir`), so a reader never sees a half-written one even if the writer is
killed at any instant. What goes inside is the caller's business; ``marker`` names a file every complete
checkpoint of that caller holds (e.g. ``state.json``), and directories without it are not listed.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from editrl.io import atomic_replace_dir

STEP_PREFIX = "step_"
STEP_DIGITS = 8
_STEP_NAME = re.compile(rf"{STEP_PREFIX}(\d+)")


def step_dir_name(step: int) -> str:
    """``"step_<step, zero-padded to 8 digits>"``, e.g. 12 -> ``"step_00000012"``."""
    if step < 0:
        raise ValueError(f"a checkpoint step must be >= 0, got {step}")
    return f"{STEP_PREFIX}{step:0{STEP_DIGITS}d}"


def write_dir_atomically(final: str | Path, fill: Callable[[Path], None]) -> Path:
    """Create ``final`` as a whole: ``fill(tmp)`` writes into ``.<name>.tmp`` beside it, which then replaces it.

    A leftover temporary directory of an earlier crashed write is removed first; if ``fill`` raises, the
    temporary directory is removed and ``final`` (old or absent) is left as it was.
    """
    final = Path(final)
    tmp = final.with_name(f".{final.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        fill(tmp)
        atomic_replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


@dataclass(frozen=True)
class StepCheckpoints:
    """The checkpoints of one run under ``root``.

    root:   the directory holding ``step_<N>`` directories (created on the first write).
    marker: a file name every complete checkpoint holds; directories without it are ignored.
    """

    root: Path
    marker: str

    def path(self, step: int) -> Path:
        """Where the checkpoint of ``step`` lives (whether or not it exists)."""
        return Path(self.root) / step_dir_name(step)

    def paths(self) -> list[Path]:
        """Complete checkpoints, oldest (lowest step) first."""
        return [path for _, path in self._complete()]

    def steps(self) -> list[int]:
        """The steps of :meth:`paths`, ascending."""
        return [step for step, _ in self._complete()]

    def _complete(self) -> list[tuple[int, Path]]:
        root = Path(self.root)
        if not root.is_dir():
            return []
        found = []
        for path in root.iterdir():
            match = _STEP_NAME.fullmatch(path.name)
            if match and path.is_dir() and (path / self.marker).is_file():
                found.append((int(match.group(1)), path))
        return sorted(found)

    def latest(self) -> Path | None:
        """The newest complete checkpoint (what ``resume: auto`` continues from), or None."""
        found = self.paths()
        return found[-1] if found else None

    def write(self, step: int, fill: Callable[[Path], None]) -> Path:
        """Write the checkpoint of ``step`` atomically (``fill(tmp_dir)`` writes the files, ``marker`` among them)."""
        Path(self.root).mkdir(parents=True, exist_ok=True)
        return write_dir_atomically(self.path(step), fill)

    def prune(self, keep_last: int) -> list[Path]:
        """Delete all but the ``keep_last`` newest checkpoints; returns the deleted paths."""
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {keep_last}")
        old = self.paths()[:-keep_last]
        for path in old:
            shutil.rmtree(path, ignore_errors=True)
        return old
