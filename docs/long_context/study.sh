#!/bin/bash
# The long-context study of docs/results.md#long-context-study: every command, with its budget.
# Runs go to $OUT (default out/long_context, outside git); finished runs are skipped, so the
# script can be stopped and started again. Then: python3 docs/long_context/summarize.py $OUT
#   docs/long_context/study.sh recall   # associative recall, accuracy against pairs
#   docs/long_context/study.sh text     # GPT on the Python sources at equal training time
#   docs/long_context/study.sh          # both, two runs at a time throughout
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${PG_BIN:-build/polygrad}
OUT=${OUT:-out/long_context}
SEEDS=${SEEDS:-"1 2 3"}
export OPENBLAS_CORETYPE=Haswell OMP_WAIT_POLICY=PASSIVE
done_run() { [ -f "$1/checkpoint.safetensors" ] && grep -q '"eval_s"' "$1/metrics.jsonl"; }

# Waits until fewer than JOBS (default 2) runs are going: two single-threaded processes use
# this machine's 2 cores better than one with two threads, so every run has one thread and a
# neighbour.
free_slot() { while [ "$(jobs -rp | wc -l)" -ge "${JOBS:-2}" ]; do wait -n || true; done; }

# Runs `$B train MODEL ARGS` into DIR in the background unless it finished there.
train_run() {
  local dir=$1 model=$2
  shift 2
  done_run "$dir" && return 0
  rm -rf "$dir"
  mkdir -p "$(dirname "$dir")"
  free_slot
  (
    $B train "$model" "$@" --threads 1 --out "$dir" >"$dir.log" 2>&1 || echo "failed: $dir"
    echo "$dir: $(grep -E 'recall accuracy|validation loss' "$dir.log")"
    # Generation speed: 1,000 characters from the final model, one token at a time.
    [ "$model" != gpt ] || OMP_NUM_THREADS=1 $B sample --ckpt "$dir/checkpoint.safetensors" \
      --tokens 1000 --prompt "def " 2>"$dir/sample_speed.txt" >/dev/null
  ) &
}

recall() {
  # One budget for every arm: RECALL_STEPS steps of 64 sequences of T = 64 (4,096 tokens a
  # step), peak learning rate 1e-3 (about 8 minutes a run on one core at 8,000 steps). Attention
  # sits at the accuracy of guessing among the sequence's values (1/pairs) until it forms the
  # lookup; with 5,000 steps softmax formed it in one seed of three (docs/results.md).
  local steps=${RECALL_STEPS:-8000}
  for pairs in ${RECALL_PAIRS:-4 16}; do
    for seed in $SEEDS; do
      for act in softmax poly:1 poly:2 poly:2,n=visible poly:3 relu2 sigmoid; do
        train_run "$OUT/recall/T64-kv$pairs/${act//[:,]/_}/seed-$seed" recall --attn "$act" \
          --context 64 --pairs "$pairs" --vocab 256 --batch 64 --lr 1e-3 --steps "$steps" \
          --seed "$seed"
      done
    done
  done
}

text_flags() { echo --data python-stdlib --pos rope --context "$1" --batch $((8192 / $1)) --attn "$2"; }

text() {
  # Equal training time for every run: TEXT_SECONDS of training (evaluations excluded) at 8,192
  # tokens a step, one thread beside a neighbour run. Each configuration's step count comes from
  # its ms/step in a 12-step run made under the same conditions (two at a time).
  local seconds=${TEXT_SECONDS:-180} contexts=${TEXT_CONTEXTS:-512 2048 4096}
  local acts="softmax poly:2,n=visible" ctx act
  for ctx in $contexts; do
    for act in $acts; do
      local cal="$OUT/text/calibrate-$ctx-${act//[:,]/_}"
      [ -f "$cal.ms" ] && continue
      free_slot
      (
        rm -rf "$cal"
        # shellcheck disable=SC2046
        $B train gpt $(text_flags "$ctx" "$act") --steps 12 --eval-every 1000 --threads 1 \
          --out "$cal" | sed -n 's/.*, \([0-9.]*\) ms\/step.*/\1/p' >"$cal.ms.tmp"
        mv "$cal.ms.tmp" "$cal.ms"
      ) &
    done
  done
  wait
  for ctx in $contexts; do
    for act in $acts; do
      local ms steps seed
      ms=$(cat "$OUT/text/calibrate-$ctx-${act//[:,]/_}.ms")
      steps=$(awk -v s="$seconds" -v ms="$ms" 'BEGIN { n = int(s * 1000 / ms); print (n > 0 ? n : 1) }')
      echo "T=$ctx $act: $ms ms/step calibrated, $steps steps"
      for seed in $SEEDS; do
        # shellcheck disable=SC2046
        train_run "$OUT/text/T$ctx/${act//[:,]/_}/seed-$seed" gpt $(text_flags "$ctx" "$act") \
          --steps "$steps" --seed "$seed"
      done
    done
  done
}

mkdir -p "$OUT/recall" "$OUT/text"
parts=("$@")
[ $# -gt 0 ] || parts=(text recall)
for part in "${parts[@]}"; do "$part"; done
wait
