# The two commands of the README: `make demo` and `make test`. Both set everything up from nothing.
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export WANDB_MODE ?= offline
export TOKENIZERS_PARALLELISM := false
export RAY_USAGE_STATS_ENABLED := 0
# CPU wheel of torch that lies on this machine's disk; GPU users install their CUDA torch first (README).
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup demo demo-full test lint bench bench-gpu world-bases clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

lint: setup
	$(PY) -m ruff check .

test: setup lint
	$(PY) -m pytest -q tests

demo: setup
	$(PY) -m launch.demo --config configs/demo.yaml $(ARGS)

# `make demo` plus the alpha = 0 RL arm (the paper's ablation) and the oracle-reward diagnostic, in runs/demo_full/.
demo-full: setup
	$(PY) -m launch.demo --config configs/demo_full.yaml $(ARGS)

# The toy world's pretrained bases (policy + VLM backbone) in data/world_bases/ (README: "Pretrained toy bases").
# ARGS: key=value overrides of configs/world_bases.yaml, or --size reduced for a check in well under a minute.
world-bases: setup
	$(PY) -m world.bases.build --out data/world_bases --size full --jobs 2 $(ARGS)

bench: setup
	$(PY) -m bench.run_all

# Real sizes, random weights, one GPU (install the CUDA torch first); JSON in runs/bench/real_scale.json.
# Phases: OmniGen2's sampler, learner, reward, jrm_train, colocated, projection, then the diffusers families
# family_flux_kontext (FLUX.1 Kontext 12B) and family_qwen_image_edit (Qwen-Image-Edit 20B): s/sample and
# learner peak memory each; pick some with ARGS="--phases family_flux_kontext family_qwen_image_edit".
# `make test` runs the same code at --scale tiny on the CPU (tests/bench/test_real_scale.py).
bench-gpu: setup
	$(PY) -m bench.real_scale --scale real --device cuda $(ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
