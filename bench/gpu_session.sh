#!/usr/bin/env bash
# One lent-GPU session of `make bench-gpu`: the real-size phases under a fixed total time, the report and log in
# $OUT (default runs/bench). Packages the GPU image lacks (diffusers, omegaconf; the project's transformers and
# peft) come from wheels in .whl/ when present (see README "Real-size benchmark on a GPU"). Every phase has its
# own limit, the whole run one more, and the JSON is rewritten after each phase, so a lease that ends early
# still returns the phases that finished.
set -uo pipefail
OUT=${OUT:-runs/bench}
TOTAL=${BENCH_TOTAL_SECONDS:-520}
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
PYTHONUNBUFFERED=1 timeout $((TOTAL + 30)) python3 -m bench.real_scale --scale real --device cuda \
  --phases sampler learner reward projection jrm_train colocated family_flux_kontext family_qwen_image_edit \
  --phase-timeout "${BENCH_PHASE_SECONDS:-110}" --family-timeout "${BENCH_FAMILY_SECONDS:-140}" \
  --total-timeout "$TOTAL" --out "$OUT/real_scale.json" 2>&1 | tee "$OUT/real_scale.log"
