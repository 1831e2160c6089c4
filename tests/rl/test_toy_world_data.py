"""The toy preset on a fresh clone: it builds the world data it names when missing (``world_data``), reuses it
as it is on the next run, and runs through ``ray job submit``; a real preset still fails naming the key."""

import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rl.checkpoint import latest_checkpoint
from tests.rl.helpers import REPO, TOY, write_toy_instructions
from tests.rl.test_job_submit import _ray, ray_head  # noqa: F401 (the Ray head fixture, on 127.0.0.1)

LAUNCH = REPO / "launch" / "flow_grpo_jrm.py"
ENV = {
    **os.environ, "RAY_USAGE_STATS_ENABLED": "0", "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
}
QUIET = ["logging.wandb=false", "logging.progress_bar=false"]
SMALL_WORLD = ["world_data.n_instructions=4", "world_data.n_pair_tasks=4", "world_data.pairs_per_task=2"]
SHORT_STAGE1 = [
    "jrm.max_steps=1", "jrm.eval_every_steps=1", "jrm.checkpoint_every_steps=1", "jrm.wandb_mode=disabled",
    "jrm.progress_bar=false",
]


def files_of(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``directory``: relative path -> (bytes, mtime in ns)."""
    return {str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns) for p in directory.rglob("*") if p.is_file()}


def summary_of(stdout: str) -> dict:
    return json.loads(stdout[stdout.index('{\n  "output_dir"'):stdout.rindex("}") + 1])


@pytest.mark.slow
def test_the_toy_preset_builds_its_missing_world_data_then_reuses_it(tmp_path):
    world = tmp_path / "world"  # empty: nothing has been built here
    data = [
        f"data.train_path={world / 'instructions.jsonl'}", f"jrm.data.train_pairs={world / 'pairs.jsonl'}",
        f"jrm.data.rationales={world / 'annotations.jsonl'}",
    ]

    def run(name: str) -> subprocess.CompletedProcess:
        args = [
            sys.executable, str(LAUNCH), "--config", str(TOY), "train_jrm=true", *data, *SMALL_WORLD, *SHORT_STAGE1,
            f"jrm.output_dir={tmp_path / name / 'jrm'}", f"output_dir={tmp_path / name / 'rl'}", "grpo.num_steps=1",
            *QUIET,
        ]
        proc = subprocess.run(args, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-4000:]
        assert summary_of(proc.stdout)["steps_completed"] == 1
        assert latest_checkpoint(tmp_path / name / "rl").name == "step_00000001"
        assert (tmp_path / name / "jrm" / "final").is_dir()  # stage 1 trained on the built pairs and rationales
        return proc

    first = run("first")
    for key, file, n_lines in (("data.train_path", "instructions.jsonl", 4), ("jrm.data.train_pairs", "pairs.jsonl", 8),
                               ("jrm.data.rationales", "annotations.jsonl", 16)):
        assert f"world data: {key}={world / file} is missing; building it" in first.stderr
        assert len((world / file).read_text().splitlines()) == n_lines
    assert "exists; using it as it is" not in first.stderr
    built = files_of(world)
    assert len(built) > 3 + 4  # the JSONL files and the images they name

    second = run("second")
    assert "is missing; building it" not in second.stderr
    assert second.stderr.count("exists; using it as it is (not rebuilt)") == 3
    assert files_of(world) == built  # byte-identical and not rewritten (same mtimes)


@pytest.mark.parametrize(
    ("preset", "overrides", "message"),
    [
        pytest.param(
            "omnigen2_jrm_32gpu.yaml",
            ["policy.checkpoint=null", "policy.tiny=true", "jrm.model.backbone=null", "jrm.model.tiny=true"],
            "config error: data.train_path: instruction file not found: {tmp}/world/instructions.jsonl",
            id="real-preset-instructions",
        ),
        pytest.param(
            "omnigen2_jrm_32gpu.yaml",
            ["policy.checkpoint=null", "policy.tiny=true", "jrm.model.backbone=null", "jrm.model.tiny=true",
             "data.train_path={tmp}/given/instructions.jsonl"],
            "config error: jrm.data.train_pairs: preference-pair file not found: '{tmp}/world/pairs.jsonl'",
            id="real-preset-pairs",
        ),
        pytest.param(
            "toy.yaml", ["world_data.build_if_missing=false"],
            "config error: data.train_path: instruction file not found: {tmp}/world/instructions.jsonl",
            id="toy-preset-building-off",
        ),
    ],
)
def test_missing_data_without_world_data_is_an_error_naming_the_key(tmp_path, preset, overrides, message):
    write_toy_instructions(tmp_path / "given", 2)
    args = [
        sys.executable, str(LAUNCH), "--config", str(REPO / "configs" / preset),
        f"data.train_path={tmp_path}/world/instructions.jsonl", f"jrm.data.train_pairs={tmp_path}/world/pairs.jsonl",
        f"jrm.output_dir={tmp_path}/jrm", f"output_dir={tmp_path}/run", *(o.format(tmp=tmp_path) for o in overrides),
    ]
    proc = subprocess.run(args, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert message.format(tmp=tmp_path) in proc.stderr
    assert "world data:" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["given"]  # nothing built, nothing started
    assert "Started a local Ray instance" not in proc.stderr + proc.stdout


def fresh_clone(destination: Path) -> Path:
    """The files a clone of this checkout would hold (tracked, plus new files git does not ignore)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    for rel in filter(None, listed):
        if (REPO / rel).is_file():
            (destination / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, destination / rel)
    return destination


@pytest.mark.slow
def test_ray_job_submit_runs_the_toy_preset_from_a_fresh_clone(tmp_path, ray_head):  # noqa: F811
    address, _, env = ray_head
    clone = fresh_clone(tmp_path / "clone")
    assert (clone / "configs" / "toy.yaml").is_file() and not (clone / "runs").exists()
    out = tmp_path / "run"
    submission_id = f"editrl-fresh-{secrets.token_hex(4)}"
    runtime_env = {"env_vars": {"WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}}
    submit = _ray(
        env, "job", "submit", "--address", address, "--submission-id", submission_id, "--working-dir", str(clone),
        "--runtime-env-json", json.dumps(runtime_env), "--",
        # the preset's own data paths (relative: inside the job's copy of the clone), a short run
        sys.executable, "launch/flow_grpo_jrm.py", "--config", "configs/toy.yaml", "world_data.n_instructions=4",
        f"output_dir={out}", "grpo.num_steps=1", *QUIET,
        timeout=420,
    )
    logs = _ray(env, "job", "logs", "--address", address, submission_id).stdout
    assert submit.returncode == 0, submit.stdout[-3000:] + submit.stderr[-3000:] + logs[-3000:]
    assert "world data: data.train_path=runs/toy/world/instructions.jsonl is missing; building it" in logs
    assert "world data: wrote data.train_path=runs/toy/world/instructions.jsonl" in logs
    assert summary_of(logs)["steps_completed"] == 1
    assert latest_checkpoint(out).name == "step_00000001"
    assert not (clone / "runs").exists()  # built in the job's copy of the working directory
