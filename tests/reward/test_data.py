"""Preference-pair loading: each bad-data case raises naming the record, or is skipped and counted."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from reward.jrm.data import PairBatchSampler, PairDataError, load_images, load_preference_pairs, split_pairs


def _record(i, **over):
    rec = {
        "id": f"r{i}",
        "prompt": "make the ball red",
        "path_src": f"{i}/src.png",
        "path1": f"{i}/a.png",
        "path2": f"{i}/b.png",
        "model1": "m_a",
        "model1_dim1_score": 4,
        "model1_dim2_score": 3,
        "model1_overall_score": 7,
        "model2_dim1_score": 2,
        "model2_dim2_score": 3,
        "model2_overall_score": 5,
        "tie_case": False,
        "confidence": None,
        "rationale1": '{"reasoning": "good"}',
    }
    rec.update(over)
    return rec


@pytest.fixture
def image_root(tmp_path):
    for i in range(4):
        (tmp_path / str(i)).mkdir()
        for name, colour in (("src", (0, 0, 255)), ("a", (255, 0, 0)), ("b", (0, 255, 0))):
            Image.new("RGB", (40, 20), colour).save(tmp_path / str(i) / f"{name}.png")
    (tmp_path / "3" / "a.png").write_bytes(b"not a png at all")
    return tmp_path


def _write_jsonl(path, lines):
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


BAD_CASES = [
    ("malformed_json", '{"id": "r9", "prompt": '),
    ("missing_column", {k: v for k, v in _record(0).items() if k != "model2_dim2_score"}),
    ("score_out_of_range", _record(0, model1_dim1_score=5)),
    ("bad_score", _record(0, model2_dim2_score=float("nan"))),
    ("same_image", _record(0, path2="0/a.png")),
    ("missing_image", _record(0, path2="0/nope.png")),
    ("corrupt_image", _record(3)),
    ("preferred_scored_lower", _record(0, model1_overall_score=3)),
]


@pytest.mark.parametrize(("reason", "bad"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_record_raises_naming_line_and_reason_or_is_skipped(tmp_path, image_root, reason, bad):
    path = _write_jsonl(tmp_path / "pairs.jsonl", [_record(1), bad, _record(2)])
    with pytest.raises(PairDataError) as err:
        load_preference_pairs(path, image_root)
    assert err.value.reason == reason
    assert "pairs.jsonl:2" in str(err.value)
    pairs, report = load_preference_pairs(path, image_root, on_error="skip")
    assert [p.record_id for p in pairs] == ["r1", "r2"]
    assert report.skipped == {reason: 1} and report.total == 3 and report.loaded == 2
    assert "pairs.jsonl:2" in report.examples[0]


def test_good_record_fields_metadata_and_rationales(tmp_path, image_root):
    path = _write_jsonl(tmp_path / "pairs.jsonl", [_record(0), _record(1, tie_case=True, id=None)])
    (a, b), report = load_preference_pairs(path, image_root)
    assert report.loaded == 2 and report.skipped == {}
    assert a.preferred == image_root / "0" / "a.png" and a.rejected == image_root / "0" / "b.png"
    assert (a.scores_preferred.instruction_following, a.scores_rejected.instruction_following) == (4.0, 2.0)
    assert a.metadata == {"model1": "m_a"} and a.rationales == {"preferred": '{"reasoning": "good"}'}
    assert not a.tie and b.tie and b.record_id == "line2"


def test_parquet_matches_jsonl(tmp_path, image_root):
    records = [_record(0), _record(1), _record(2, model1_dim2_score=0)]
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "pairs.parquet")
    pairs, report = load_preference_pairs(tmp_path / "pairs.parquet", image_root, on_error="skip")
    assert [p.record_id for p in pairs] == ["r0", "r1"] and report.skipped == {"score_out_of_range": 1}


def test_load_images_rgb_within_budget_and_corrupt_names_file(tmp_path, image_root):
    path = _write_jsonl(tmp_path / "pairs.jsonl", [_record(0), _record(3)])
    (pair, bad), _ = load_preference_pairs(path, image_root, image_check="exists")
    loaded = load_images(pair, max_pixels=200)
    assert loaded.preferred.mode == "RGB" and loaded.preferred.getpixel((0, 0)) == (255, 0, 0)
    assert loaded.source.width * loaded.source.height <= 200 and loaded.source.size == (20, 10)
    with pytest.raises(PairDataError, match=r"record r3: image cannot be decoded: .*3/a\.png"):
        load_images(bad)


def test_sampler_is_seeded_disjoint_within_epoch_and_resumes_exactly():
    sampler = PairBatchSampler(num_items=10, global_batch_size=3, seed=7)
    first_epoch = [sampler.next_batch() for _ in range(3)]
    flat = [i for b in first_epoch for i in b]
    assert len(set(flat)) == 9 and sampler.batches_per_epoch == 3
    state = sampler.state_dict()
    rest = [sampler.next_batch() for _ in range(4)]
    resumed = PairBatchSampler(num_items=10, global_batch_size=3, seed=7)
    resumed.load_state_dict(state)
    assert [resumed.next_batch() for _ in range(4)] == rest
    assert rest[0] != first_epoch[0] or rest[1] != first_epoch[1]
    assert PairBatchSampler.shard([5, 6, 7, 8, 9], rank=1, world_size=2) == [6, 8]


def test_split_is_deterministic_and_keeps_sources_together(tmp_path, image_root):
    path = _write_jsonl(tmp_path / "pairs.jsonl", [_record(i % 3, id=f"r{i}") for i in range(9)])
    pairs, _ = load_preference_pairs(path, image_root)
    train, held = split_pairs(pairs, 0.3, seed=1)
    train2, held2 = split_pairs(list(reversed(pairs)), 0.3, seed=1)
    assert len(held) == 3 and {p.record_id for p in held} == {p.record_id for p in held2}
    assert len({p.source for p in held}) == 1 and not {p.source for p in train} & {p.source for p in held}
    assert len(train) == 6


def test_json_list_as_in_editreward_train_json(tmp_path, image_root):
    path = tmp_path / "train.json"
    path.write_text(json.dumps([_record(0), "not an object", _record(1, confidence=0.8)]))
    with pytest.raises(PairDataError, match=r"train\.json\[1\].*malformed"):
        load_preference_pairs(path, image_root)
    pairs, report = load_preference_pairs(path, image_root, on_error="skip")
    assert [p.record_id for p in pairs] == ["r0", "r1"] and pairs[1].confidence == 0.8
    assert report.skipped == {"malformed_json": 1}


def test_pair_data_error_survives_pickling():
    """Ray re-raises worker errors in the driver by pickling them; reason and message must come back intact."""
    import pickle

    original = PairDataError("missing_image", "record r7: image 7/a.png not found")
    restored = pickle.loads(pickle.dumps(original))
    assert type(restored) is PairDataError
    assert restored.reason == "missing_image"
    assert str(restored) == "record r7: image 7/a.png not found"


def test_images_leaving_the_root_are_refused_unless_allowed(tmp_path, image_root):
    path = _write_jsonl(tmp_path / "pairs.jsonl", [_record(1), _record(0, path2="../outside/b.png"), _record(2)])
    (tmp_path.parent / "outside").mkdir(exist_ok=True)
    Image.new("RGB", (8, 8)).save(tmp_path.parent / "outside" / "b.png")
    with pytest.raises(PairDataError) as err:
        load_preference_pairs(path, image_root)
    assert err.value.reason == "path_outside_root" and "pairs.jsonl:2" in str(err.value)
    pairs, report = load_preference_pairs(path, image_root, on_error="skip")
    assert [p.record_id for p in pairs] == ["r1", "r2"] and report.skipped == {"path_outside_root": 1}
    pairs, _ = load_preference_pairs(path, image_root, allow_outside=True)
    assert len(pairs) == 3


def test_a_decompression_bomb_is_skipped_and_counted_not_a_crash(tmp_path, image_root, monkeypatch):
    Image.new("RGB", (64, 64)).save(image_root / "2" / "b.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64*64 > 2 * 1000: a bomb; the 40x20 images are not
    path = _write_jsonl(tmp_path / "pairs.jsonl", [_record(1), _record(2), _record(0)])
    pairs, report = load_preference_pairs(path, image_root, on_error="skip", decode_workers=2)
    assert [p.record_id for p in pairs] == ["r1", "r0"]
    assert report.skipped == {"corrupt_image": 1} and "decompression bomb" in report.examples[0]
    assert "pairs.jsonl:2" in report.examples[0]
