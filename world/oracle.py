"""The oracle: scores any edited image against its task on the paper's 1-4 scales, with the facts it used.

Instruction following (IF) compares the edit with the target inside the changed pixels and with the (equal)
target/source on every other object and the background. Both images are low-passed with a 3x3 box first,
so blur and pixel noise do not count as instruction errors; those are visual-quality errors.

Visual quality (VQ) snaps every pixel to the world's palette (the renderer only ever produces palette
colours); a pixel far from every palette colour is a defect (blur, noise, artifacts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from world.render import from_pil, mask_bbox, shape_mask
from world.scene import PALETTE
from world.tasks import EditTask

#: Colour distance (RGB Euclidean / sqrt(3), in [0, 1]) below which two low-passed pixels count as equal.
MATCH_TOLERANCE = 0.2
#: Distance to the nearest palette colour above which a pixel counts as a defect.
DEFECT_TOLERANCE = 0.15
#: (minimum edit success, minimum worst-context preservation) for IF 4 and IF 3.
IF_THRESHOLDS = {4: (0.85, 0.85), 3: (0.6, 0.6)}
#: Maximum defect fraction over the whole image for VQ 4, 3, 2 (anything above is 1).
VQ_THRESHOLDS = {4: 0.01, 3: 0.05, 2: 0.15}
#: Maximum defect fraction within the band around colour edges for VQ 4, 3, 2 (blur shows up here).
VQ_EDGE_THRESHOLDS = {4: 0.1, 3: 0.3, 2: 0.6}
#: Context regions smaller than this many pixels are not judged (too few pixels to be meaningful).
MIN_CONTEXT_PIXELS = 4

_PALETTE_NAMES = tuple(PALETTE)
_PALETTE_RGB = np.asarray([PALETTE[n] for n in _PALETTE_NAMES], dtype=np.float32)


@dataclass
class OracleScore:
    """Integer 1-4 scores and the JSON-serialisable facts behind them (see :func:`score_edit`)."""

    instruction_following: int
    visual_quality: int
    facts: dict[str, Any]


def box_blur3(image: np.ndarray) -> np.ndarray:
    """(H, W, C) -> (H, W, C) mean over each pixel's 3x3 neighbourhood (edges replicated)."""
    padded = np.pad(image, ((1, 1), (1, 1), (0, 0)), mode="edge")
    h, w = image.shape[:2]
    return sum(padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)) / 9.0


def colour_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(..., 3), (..., 3) -> (...) RGB Euclidean distance scaled to [0, 1]."""
    return np.sqrt(np.sum((a - b) ** 2, axis=-1) / 3.0)


def nearest_palette(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) -> ((H, W) index of the nearest palette colour, (H, W) distance to it)."""
    distances = colour_distance(image[..., None, :], _PALETTE_RGB)
    index = distances.argmin(axis=-1)
    return index, np.take_along_axis(distances, index[..., None], axis=-1)[..., 0]


def _dominant_colour(image: np.ndarray, mask: np.ndarray) -> str:
    """Palette name most pixels of ``image`` in ``mask`` are nearest to."""
    index, _ = nearest_palette(image[mask])
    return _PALETTE_NAMES[int(np.bincount(index, minlength=len(_PALETTE_NAMES)).argmax())]


def _context_regions(task: EditTask) -> list[tuple[str, np.ndarray]]:
    """(label, mask) of every object the instruction does not touch, and of the untouched background."""
    changed = task.changed_mask
    regions: list[tuple[str, np.ndarray]] = []
    covered = np.zeros_like(changed)
    for shape in task.source.shapes:
        mask = shape_mask(shape, task.size)
        covered |= mask
        if shape in task.target.shapes and not (mask & changed).any():
            regions.append((shape.name, mask))
    for shape in task.target.shapes:
        covered |= shape_mask(shape, task.size)
    background = ~covered & ~changed
    if background.any():
        regions.append(("background", background))
    return [(label, mask) for label, mask in regions if mask.sum() >= MIN_CONTEXT_PIXELS]


def instruction_following_score(edit_success: float, attempted: float, worst_preservation: float) -> int:
    """1-4 IF from the fraction of changed pixels done right, changed at all, and the worst kept region.

    A wrong change of the right region (attempted, the rest kept) earns 2; a scrambled image earns 1.
    """
    for score in (4, 3):
        min_success, min_kept = IF_THRESHOLDS[score]
        if edit_success >= min_success and worst_preservation >= min_kept:
            return score
    if edit_success >= 0.3 or (attempted >= 0.5 and worst_preservation >= 0.5):
        return 2
    return 1


def visual_quality_score(defect_fraction: float, edge_defect_fraction: float) -> int:
    """1-4 VQ: the worse of the grades for defects over the image (noise, artifacts) and along edges (blur)."""

    def grade(value: float, thresholds: dict[int, float]) -> int:
        return next((score for score in (4, 3, 2) if value <= thresholds[score]), 1)

    return min(grade(defect_fraction, VQ_THRESHOLDS), grade(edge_defect_fraction, VQ_EDGE_THRESHOLDS))


def score_edit(task: EditTask, edited: Image.Image | np.ndarray) -> OracleScore:
    """Score one edited image (PIL, or (H, W, 3) float in [0, 1]; resized to the task size) against ``task``.

    Facts: ``regions`` (id, label, role "edit"/"context", pixel ``bbox`` [ymin, xmin, ymax, xmax) and the
    fractions ``done`` and ``changed`` or ``preserved``, ``observed`` colour), ``edit_success``, ``attempted``,
    ``worst_preservation`` and ``worst_context``, ``defect_fraction``, ``edge_defect_share`` (share of the
    defects that lie near colour edges), ``edge_defect_fraction`` (defective share of the edge band),
    ``mean_residual``, the image ``size`` and both scores.
    """
    image = from_pil(edited, task.size) if isinstance(edited, Image.Image) else np.asarray(edited, dtype=np.float32)
    if image.shape != (task.size, task.size, 3):
        raise ValueError(f"task {task.task_id}: edited image has shape {image.shape}, expected {(task.size, task.size, 3)}")
    if not np.isfinite(image).all():
        raise ValueError(f"task {task.task_id}: edited image contains NaN or inf")
    low, low_target, low_source = box_blur3(image), box_blur3(task.target_image), box_blur3(task.source_image)
    to_target, to_source = colour_distance(low, low_target), colour_distance(low, low_source)
    done = (to_target < MATCH_TOLERANCE) & (to_target < to_source)
    changed_from_source = to_source >= MATCH_TOLERANCE
    kept = to_target < MATCH_TOLERANCE
    changed = task.changed_mask

    regions: list[dict[str, Any]] = []
    for region in task.edit_regions:
        mask = region.mask & changed if (region.mask & changed).any() else region.mask
        regions.append({
            "id": len(regions),
            "label": region.label,
            "role": "edit",
            "bbox": list(region.bbox),
            "done": float(done[mask].mean()),
            "changed": float(changed_from_source[mask].mean()),
            "observed": _dominant_colour(image, region.mask),
        })
    worst_preservation, worst_context = 1.0, ""
    for label, mask in _context_regions(task):
        preserved = float(kept[mask].mean())
        regions.append({
            "id": len(regions),
            "label": label,
            "role": "context",
            "bbox": list(mask_bbox(mask)),
            "preserved": preserved,
            "observed": _dominant_colour(image, mask),
        })
        if preserved < worst_preservation:
            worst_preservation, worst_context = preserved, label

    edit_success = float(done[changed].mean())
    attempted = float(changed_from_source[changed].mean())
    if_score = instruction_following_score(edit_success, attempted, worst_preservation)

    snapped, residual = nearest_palette(image)
    defects = residual > DEFECT_TOLERANCE
    edges = np.zeros_like(defects)
    edges[:, 1:] |= snapped[:, 1:] != snapped[:, :-1]
    edges[1:, :] |= snapped[1:, :] != snapped[:-1, :]
    near_edges = box_blur3(edges[..., None].astype(np.float32))[..., 0] > 0
    defect_fraction = float(defects.mean())
    edge_share = float((defects & near_edges).sum() / defects.sum()) if defects.any() else 0.0
    edge_defect_fraction = float(defects[near_edges].mean()) if near_edges.any() else 0.0
    vq_score = visual_quality_score(defect_fraction, edge_defect_fraction)

    facts = {
        "size": task.size,
        "edit_type": task.edit_type,
        "regions": regions,
        "edit_success": edit_success,
        "attempted": attempted,
        "worst_preservation": worst_preservation,
        "worst_context": worst_context,
        "defect_fraction": defect_fraction,
        "edge_defect_share": edge_share,
        "edge_defect_fraction": edge_defect_fraction,
        "mean_residual": float(residual.mean()),
        "instruction_following": if_score,
        "visual_quality": vq_score,
    }
    return OracleScore(if_score, vq_score, facts)
