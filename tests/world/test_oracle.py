import numpy as np

from world.corruptions import artifacts, blur, noise, over_edit
from world.oracle import box_blur3, score_edit
from world.render import render, to_pil
from world.tasks import EDIT_TYPES, build_task


def _tasks():
    return [build_task(seed, 32, edit_type) for edit_type in EDIT_TYPES for seed in range(4)]


def test_box_blur3_matches_hand_computed_values():
    image = np.zeros((3, 3, 1), dtype=np.float32)
    image[1, 1, 0] = 9.0
    out = box_blur3(image)[..., 0]
    assert np.allclose(out, 1.0)  # every 3x3 window (edge-replicated) holds the single 9 exactly once
    image = np.zeros((1, 3, 1), dtype=np.float32)
    image[0, 0, 0] = 9.0  # replicated padding: pixel 0's window sees the 9 six times, pixel 1's three times
    assert np.allclose(box_blur3(image)[0, :, 0], [6.0, 3.0, 0.0])


def test_target_scores_4_4_and_no_op_scores_if_1():
    for task in _tasks():
        perfect = score_edit(task, to_pil(task.target_image))
        assert (perfect.instruction_following, perfect.visual_quality) == (4, 4), task.instruction
        no_op = score_edit(task, task.source_image)
        assert no_op.instruction_following == 1, task.instruction
        assert no_op.visual_quality == 4


def test_noise_lowers_visual_quality_only():
    rng = np.random.default_rng(0)
    for task in _tasks():
        noisy = score_edit(task, noise(task.target_image, 0.15, rng))
        assert noisy.visual_quality <= 2, task.instruction
        assert noisy.instruction_following == 4, task.instruction
        assert noisy.facts["defect_fraction"] > 0.06


def test_blur_and_artifacts_lower_visual_quality():
    rng = np.random.default_rng(1)
    for task in _tasks():
        if task.target.shapes:  # blurring a plain background changes nothing
            assert score_edit(task, blur(task.target_image, 1.2)).visual_quality < 4, task.instruction
        assert score_edit(task, artifacts(task.target_image, rng, n_blocks=8)).visual_quality < 4, task.instruction


def test_over_edit_lowers_instruction_following_and_names_the_region():
    rng = np.random.default_rng(2)
    for task in _tasks():
        scene = over_edit(task, rng)
        if scene is None:
            continue
        score = score_edit(task, render(scene, task.size))
        assert score.instruction_following <= 2, task.instruction
        altered = [r for r in score.facts["regions"] if r["role"] == "context" and r["preserved"] < 0.5]
        assert altered and score.facts["worst_context"] in {r["label"] for r in altered}


def test_facts_have_pixel_bboxes_of_the_edit_regions():
    task = build_task(3, 32, "recolour")
    facts = score_edit(task, task.target_image).facts
    edit = [r for r in facts["regions"] if r["role"] == "edit"]
    assert [r["bbox"] for r in edit] == [list(r.bbox) for r in task.edit_regions]
    ys, xs = np.nonzero(task.changed_mask)
    assert edit[0]["bbox"] == [ys.min(), xs.min(), ys.max() + 1, xs.max() + 1]
