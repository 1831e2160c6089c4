#!/usr/bin/env bash
# `make bench-gpu` on a lent GPU machine, in parts that each fit one call: `core` (sampler, learner, reward,
# projection, JRM training step, co-located sampler + reward) or `families` (FLUX.1 Kontext, Qwen-Image-Edit,
# each in its own process so a lost CUDA context in one keeps the other), or `all`. Reports and logs go to
# $OUT (default runs/bench). Packages the GPU image lacks (diffusers, omegaconf; the project's transformers
# and peft) come from wheels in .whl/ when present (README, "Real-size benchmark on a GPU"). Every phase has
# its own limit and each process one more; each JSON is rewritten after every phase, so a lease that ends
# early still returns the phases that finished.
set -uo pipefail
PART=${1:-all}
OUT=${OUT:-runs/bench}
PHASE_SECONDS=${BENCH_PHASE_SECONDS:-200}
FAMILY_SECONDS=${BENCH_FAMILY_SECONDS:-150}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
  if ! python3 -c "import transformers, diffusers, peft, omegaconf" 2>"$OUT/import_error.txt"; then
    echo "carried transformers/peft do not import here; using the image's own" >&2
    rm -rf /tmp/site/transformers* /tmp/site/peft*
  fi
fi
python3 -c "import torch, transformers, diffusers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'diffusers', diffusers.__version__, 'peft', peft.__version__)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
export PYTHONUNBUFFERED=1

bench() {  # bench <total seconds> <json name> <phases...>
  local total=$1 name=$2
  shift 2
  timeout $((total + 30)) python3 -m bench.real_scale --scale real --device cuda --phases "$@" \
    --phase-timeout "$PHASE_SECONDS" --family-timeout "$FAMILY_SECONDS" --total-timeout "$total" \
    --inputs "$OUT/real_scale.json" --out "$OUT/$name" 2>&1 | tee -a "$OUT/real_scale.log"
}

if [ "$PART" = core ] || [ "$PART" = all ]; then
  bench "${BENCH_CORE_SECONDS:-480}" real_scale.json sampler learner reward projection jrm_train colocated
fi
if [ "$PART" = families ] || [ "$PART" = all ]; then
  bench "$FAMILY_SECONDS" real_scale_flux_kontext.json family_flux_kontext
  bench "$FAMILY_SECONDS" real_scale_qwen_image_edit.json family_qwen_image_edit
fi
