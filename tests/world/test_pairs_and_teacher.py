import json

import numpy as np

from reward.jrm.annotate import annotate_pairs, attach_rationales
from reward.jrm.data import load_images, load_preference_pairs
from world.corruptions import Candidate, noise
from world.pairs import FACTS_COLUMN, write_preference_pairs
from world.tasks import make_tasks
from world.teacher import RuleTeacher


def test_pairs_round_trip_through_the_editreward_loader(tmp_path):
    tasks = make_tasks("pairs", 6, size=32)
    report = write_preference_pairs(tasks, tmp_path, seed=0, pairs_per_task=4)
    pairs, load_report = load_preference_pairs(report.path)
    assert load_report.loaded == report.n_records == len(pairs) > 0
    for pair in pairs:
        s1, s2 = pair.scores_preferred, pair.scores_rejected
        assert s1.overall >= s2.overall
        assert s1.overall == s1.instruction_following + s1.visual_quality
        assert pair.tie == (s1.overall == s2.overall)
        facts = pair.metadata[FACTS_COLUMN]
        assert facts["path1"]["instruction_following"] == s1.instruction_following
        assert facts["path2"]["visual_quality"] == s2.visual_quality
    loaded = load_images(pairs[0])
    assert loaded.source.size == (32, 32)


def test_extra_candidates_are_paired_first(tmp_path):
    tasks = make_tasks("pairs", 4, size=32)
    extra = {t.task_id: [Candidate("policy", noise(t.target_image, 0.3, np.random.default_rng(0))), Candidate("policy", t.source_image)] for t in tasks}
    report = write_preference_pairs(tasks, tmp_path, seed=0, pairs_per_task=3, tie_fraction=0.0, extra_candidates=extra, extra_pairs_per_task=1)
    pairs, _ = load_preference_pairs(report.path)
    assert len(pairs) == 12
    for task in tasks:
        kinds = [p.metadata["edit_kinds"] for p in pairs if p.record_id.startswith(task.task_id)]
        # noisy target (IF 4, VQ 1) vs no-op (IF 1, VQ 4) tie on overall, so the policy pair mixes in a built-in edit
        assert sum("policy" in k.values() for k in kinds) >= 1


def test_rule_teacher_answers_pass_validation_through_annotate_pairs(tmp_path):
    report = write_preference_pairs(make_tasks("pairs", 5, size=32), tmp_path, seed=1, pairs_per_task=3)
    pairs, _ = load_preference_pairs(report.path)
    out = tmp_path / "annotations.jsonl"
    summary = annotate_pairs(pairs, RuleTeacher(), out, max_retries=0, progress=False)
    assert summary.written_ok == 2 * len(pairs) and summary.written_rejected == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    for row in rows:
        regions = row["IF"]["edit_region"]
        assert regions and all(0 <= v <= 1000 for r in regions for v in r["bbox_2d"])
        assert "<|global|>" in row["IF"]["reasoning"] and "<|bbox_0|>" in row["IF"]["reasoning"]
    with_text, missing = attach_rationales(pairs, out)
    assert missing == 0 and all(set(p.rationales) == {"preferred", "rejected"} for p in with_text)
    again = annotate_pairs(pairs, RuleTeacher(), out, max_retries=0, progress=False)
    assert again.written_ok == 0 and again.already_done == 2 * len(pairs)


def test_rule_teacher_justifies_the_assigned_score(tmp_path):
    report = write_preference_pairs(make_tasks("pairs", 4, size=32), tmp_path, seed=2, pairs_per_task=3)
    pairs, _ = load_preference_pairs(report.path)
    out = tmp_path / "a.jsonl"
    annotate_pairs(pairs, RuleTeacher(), out, max_retries=0, progress=False)
    by_key = {json.loads(line)["key"]: json.loads(line) for line in out.read_text().splitlines()}
    for pair in pairs:
        row = by_key[f"{pair.record_id}/path2"]
        if pair.scores_rejected.instruction_following == 1:
            assert "not carried out" in row["IF"]["reasoning"]
        if pair.scores_rejected.visual_quality == 4:
            assert "clean" in row["VQ"]["reasoning"]
