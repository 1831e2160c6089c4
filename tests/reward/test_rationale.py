"""Rationale JSON parsing and validation (shared with the annotation pipeline)."""

import json

import pytest

from reward.jrm.rationale import (
    RationaleError,
    format_joint_rationale,
    parse_joint_rationale,
    parse_rationale,
)

IF_OK = {
    "edit_region": [{"id": 0, "label": "square", "bbox_2d": [100, 200, 400, 600]}],
    "reasoning": "<|bbox_0|> the square is blue now. <|global|> nothing else changed.",
}


def test_valid_if_vq_and_joint_round_trip():
    rat = parse_rationale("```json\n" + json.dumps(IF_OK) + "\n```", "IF")
    assert rat.regions[0].bbox_2d == (100, 200, 400, 600) and rat.regions[0].label == "square"
    assert parse_rationale('Sure: {"reasoning": "clean"} done', "VQ").reasoning == "clean"
    joint = parse_joint_rationale(json.dumps({"instruction_following": IF_OK, "visual_quality": {"reasoning": "ok"}}))
    text = format_joint_rationale(joint)
    assert parse_joint_rationale(text) == joint
    assert text.index("instruction_following") < text.index("visual_quality")


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda o: o["edit_region"][0].update(bbox_2d=[100, 200, 400, 1001]), "bbox_out_of_range"),
        (lambda o: o["edit_region"][0].update(bbox_2d=[400, 200, 100, 600]), "bbox_degenerate"),
        (lambda o: o.update(reasoning="<|bbox_3|> wrong <|global|> x"), "unknown_bbox_ref"),
        (lambda o: o.update(reasoning="<|bbox_0|> fine"), "missing_global"),
        (lambda o: o["edit_region"].append({"id": 0, "label": "dup", "bbox_2d": [0, 0, 5, 5]}), "bad_region"),
        (lambda o: o.update(reasoning="  "), "missing_reasoning"),
    ],
)
def test_invalid_if_rationales_are_rejected_with_reason(mutate, reason):
    obj = json.loads(json.dumps(IF_OK))
    mutate(obj)
    with pytest.raises(RationaleError) as err:
        parse_rationale(json.dumps(obj), "IF")
    assert err.value.reason == reason


def test_region_ids_bounded_by_available_tags_and_garbage_rejected():
    with pytest.raises(RationaleError, match="too_many_regions"):
        parse_rationale(json.dumps(IF_OK).replace('"id": 0', '"id": 8').replace("bbox_0", "bbox_8"), "IF", max_regions=8)
    with pytest.raises(RationaleError, match="invalid_json"):
        parse_joint_rationale("no json here")
    with pytest.raises(RationaleError, match="unknown keys"):
        parse_joint_rationale('{"overall": {"reasoning": "x"}}')


def test_rationale_error_survives_pickling():
    import pickle

    restored = pickle.loads(pickle.dumps(RationaleError("bbox_out_of_range", "box 1 exceeds 1000")))
    assert restored.reason == "bbox_out_of_range"
    assert str(restored) == "bbox_out_of_range: box 1 exceeds 1000"
