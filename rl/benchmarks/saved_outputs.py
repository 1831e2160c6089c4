"""A previous ``launch/evaluate.py policy --bench gedit`` run read back: every item with its saved edit and its
VIEScore, and the settings that produced them (policy, seed, sampling settings, judging).

What such a run leaves in its output directory (``--out``)::

    gedit.json          the report; ``settings`` records data_dir, language, edits_dir, seed, edit, the policy
    gedit_items.json    one outcome per item: key, group, metrics ({"SC", "PQ", "O"} or null), failure
    edits/<fingerprint>/<group>/<key>.png   the edits (``settings.edits_dir``)

Self-correction (:mod:`rl.benchmarks.self_correct`) and the representation analysis of h work on these
outputs: the same edits the policy was scored on, never training pairs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from rl.benchmarks.base import EditItem
from rl.benchmarks.gedit import load_gedit_bench

REPORT_NAME = "gedit.json"
ITEMS_NAME = "gedit_items.json"


@dataclass
class SavedEdit:
    """One item of a previous run: the benchmark item, the policy's edit (RGB), and its VIEScore metrics
    (None when the judge failed on it in that run)."""

    item: EditItem
    edit: Image.Image
    metrics: dict[str, float] | None


@dataclass
class SavedPolicyOutputs:
    """A previous GEdit run: its directory, its report's settings, its items in the run's order."""

    eval_dir: Path
    settings: dict[str, Any]
    edits: list[SavedEdit]

    @property
    def edit_kwargs(self) -> dict[str, Any]:
        """The sampling settings the edits were made with (as ``EditSettings.as_kwargs`` gave them)."""
        kwargs = dict(self.settings.get("edit") or {})
        if isinstance(kwargs.get("cfg_range"), list):
            kwargs["cfg_range"] = tuple(kwargs["cfg_range"])
        return kwargs

    @property
    def seed(self) -> int:
        return int(self.settings.get("seed", 0))


def _edits_dir(eval_dir: Path, settings: dict[str, Any]) -> Path:
    """The recorded edits directory; if it was recorded relative to another working directory, the same
    fingerprint folder under ``eval_dir/edits``."""
    recorded = settings.get("edits_dir")
    if not recorded:
        raise FileNotFoundError(f"{eval_dir / REPORT_NAME}: settings.edits_dir is missing (not a policy run's report)")
    path = Path(recorded)
    if path.is_dir():
        return path
    local = eval_dir / "edits" / path.name
    if local.is_dir():
        return local
    raise FileNotFoundError(f"the edits of {eval_dir} are neither at {path} nor at {local}")


def load_policy_outputs(eval_dir: str | Path, data_dir: str | Path | None = None) -> SavedPolicyOutputs:
    """Read a GEdit policy run's report, items and edits. ``data_dir``: the GEdit release (default: the one
    recorded in the report). Every judged item must have its edit; an item missing from the release is an error."""
    eval_dir = Path(eval_dir)
    report_path, items_path = eval_dir / REPORT_NAME, eval_dir / ITEMS_NAME
    for path in (report_path, items_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: --from must be the --out of `evaluate.py policy --bench gedit`")
    report = json.loads(report_path.read_text())
    settings = dict(report.get("settings") or {})
    data_dir = data_dir if data_dir is not None else settings.get("data_dir")
    if not data_dir:
        raise FileNotFoundError(f"{report_path}: no data_dir recorded; pass the GEdit release with --data")
    by_key = {item.key: item for item in load_gedit_bench(data_dir, settings.get("language", "en"))}
    edits_dir = _edits_dir(eval_dir, settings)
    outcomes: Sequence[dict[str, Any]] = json.loads(items_path.read_text())
    saved: list[SavedEdit] = []
    for outcome in outcomes:
        key = str(outcome["key"])
        if key not in by_key:
            raise FileNotFoundError(f"{items_path}: item {key!r} is not in the GEdit release at {data_dir}")
        path = edits_dir / str(outcome["group"]) / f"{key}.png"
        if not path.is_file():
            raise FileNotFoundError(f"{items_path}: the edit of item {key!r} is missing ({path})")
        with Image.open(path) as image:
            edit = image.convert("RGB")
        saved.append(SavedEdit(by_key[key], edit, outcome.get("metrics")))
    return SavedPolicyOutputs(eval_dir, settings, saved)
