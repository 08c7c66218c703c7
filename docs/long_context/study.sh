#!/bin/bash
# The long-context study of docs/results.md#long-context-study: every command, with its budget.
# Runs go to $OUT (default out/long_context, outside git); finished runs are skipped, so the
# script can be stopped and started again. Then: python3 docs/long_context/summarize.py $OUT
#   docs/long_context/study.sh recall   # associative recall, accuracy against pairs
#   docs/long_context/study.sh text     # GPT on the Python sources at equal training time
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${PG_BIN:-build/polygrad}
OUT=${OUT:-out/long_context}
SEEDS=${SEEDS:-"1 2 3"}
export OPENBLAS_CORETYPE=Haswell OMP_WAIT_POLICY=PASSIVE
done_run() { [ -f "$1/checkpoint.safetensors" ] && grep -q '"eval_s"' "$1/metrics.jsonl"; }

# Runs `$B train recall ARGS` into DIR unless it finished there; two at a time (one thread
# each: two single-threaded processes use this machine's 2 cores better than one with two).
recall_run() {
  local dir=$1
  shift
  done_run "$dir" && return 0
  rm -rf "$dir"
  mkdir -p "$(dirname "$dir")"
  while [ "$(jobs -rp | wc -l)" -ge "${JOBS:-2}" ]; do wait -n; done
  (
    $B train recall "$@" --threads 1 --out "$dir" >"$dir.log" 2>&1 || echo "failed: $dir"
    echo "$dir: $(grep 'recall accuracy' "$dir.log")"
  ) &
}

recall() {
  # One budget for every arm: RECALL_STEPS steps of 64 sequences of T = 64 (4,096 tokens a
  # step), peak learning rate 1e-3 (about 4.5 minutes a run on one core). Attention sits at the
  # accuracy of guessing among the sequence's values (1/pairs) until it forms the lookup; with
  # schedules of 1,000-3,000 steps it had not yet in 15 runs (docs/results.md).
  local steps=${RECALL_STEPS:-5000}
  for pairs in ${RECALL_PAIRS:-4 16}; do
    for seed in $SEEDS; do
      for act in softmax poly:1 poly:2 poly:2,n=visible poly:3 relu2 sigmoid; do
        recall_run "$OUT/recall/T64-kv$pairs/${act//[:,]/_}/seed-$seed" --attn "$act" \
          --context 64 --pairs "$pairs" --vocab 256 --batch 64 --lr 1e-3 --steps "$steps" \
          --seed "$seed"
      done
    done
  done
  wait
}

# Training milliseconds per step of a configuration, from a short run (evaluation excluded).
ms_per_step() {
  local dir="$OUT/text/calibrate-$1-${2//[:,]/_}"
  rm -rf "$dir"
  $B train gpt --data python-stdlib --pos rope --context "$1" --batch $((8192 / $1)) \
    --attn "$2" --steps 12 --eval-every 1000 --threads 2 --out "$dir" | sed -n 's/.*, \([0-9.]*\) ms\/step.*/\1/p'
}

text() {
  # Equal training time for every run: TEXT_SECONDS of training (evaluations excluded), 8,192
  # tokens a step; each configuration's step count comes from its measured ms/step.
  local seconds=${TEXT_SECONDS:-240}
  for ctx in ${TEXT_CONTEXTS:-512 2048 4096}; do
    for act in softmax poly:2,n=visible; do
      local ms steps
      ms=$(ms_per_step "$ctx" "$act")
      steps=$(awk -v s="$seconds" -v ms="$ms" 'BEGIN { printf "%d", s * 1000 / ms }')
      for seed in $SEEDS; do
        local dir="$OUT/text/T$ctx/${act//[:,]/_}/seed-$seed"
        done_run "$dir" && continue
        rm -rf "$dir"
        mkdir -p "$(dirname "$dir")"
        $B train gpt --data python-stdlib --pos rope --context "$ctx" --batch $((8192 / ctx)) \
          --attn "$act" --steps "$steps" --seed "$seed" --threads 2 --out "$dir" >"$dir.log" 2>&1 ||
          { echo "failed: $dir (see $dir.log)"; exit 1; }
        echo "$dir ($ms ms/step calibrated, $steps steps): $(grep 'validation loss' "$dir.log")"
        # Generation: 1,000 characters from the final model, one token at a time.
        $B sample --ckpt "$dir/checkpoint.safetensors" --tokens 1000 --prompt "def " \
          2>"$dir/sample_speed.txt" >/dev/null
      done
    done
  done
}

mkdir -p "$OUT/recall" "$OUT/text"
for part in "${@:-recall text}"; do $part; done
