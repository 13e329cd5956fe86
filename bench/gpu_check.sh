#!/usr/bin/env bash
# One short check for a machine with one CUDA GPU (≤ 8 minutes), printing one table:
#   1. the training step on CUDA: crlhf's loop vs TRL's GRPOTrainer, tokens/s and memory
#      (bench/train_step.py, a Llama-config model of ~0.1 B and ~0.5 B parameters)
#   2. the learning metric's teacher-forced scoring on CUDA: held-out functions per second
#      (what the gate and bench/learning.py spend their evaluation time on)
#   3. the local backend's generation latency on CUDA: time to the first token and tokens/s
#      of a greedy completion, as crlhf-lsp's transformers backend decodes
#
#   bash bench/gpu_check.sh            # uses python3 (the machine's, with torch + CUDA)
#   PYTHON=.venv/bin/python bash bench/gpu_check.sh
#
# What it cannot do on a machine that reaches nothing: download the default model or the
# code model (250 MB and 491 MB; the GPU machines lent here take 64 MiB of files), so the
# models are built from configs with random weights: the figures are speed, not quality.
# Python packages the machine lacks (pydantic, trl …) can travel as wheels in .whl/ (see
# the device notes); this script installs them when the folder exists.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=server:trainer:tests${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
OUT=${OUT:-$(mktemp -d)}
rows=()

"$PYTHON" - <<'EOF' || { echo "no CUDA GPU visible to $PYTHON: nothing to check"; exit 0; }
import torch, sys
sys.exit(0 if torch.cuda.is_available() else 1)
EOF
gpu=$("$PYTHON" -c 'import torch; print(torch.cuda.get_device_name(0))')

for size in small medium; do
  if timeout 180 "$PYTHON" bench/train_step.py --size "$size" --device cuda --steps 20 \
      --batch-size 8 --grad-accum 2 --prompt-len 384 --completion-len 64 \
      >"$OUT/train_$size.txt" 2>&1; then
    rows+=("training step ($size)|$(grep -E 'ours|trl' "$OUT/train_$size.txt" | tr -s ' ' | paste -sd';')")
  else
    rows+=("training step ($size)|failed: $(tail -1 "$OUT/train_$size.txt")")
  fi
done

timeout 180 "$PYTHON" - >"$OUT/score.txt" 2>&1 <<'EOF'
import time, torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
from tiny_model import build_tiny_model
from crlhf_cli import conventions as conv
from crlhf_cli.learning import eval_items, margins

tok = AutoTokenizer.from_pretrained(build_tiny_model())
config = LlamaConfig(vocab_size=len(tok), hidden_size=1024, num_hidden_layers=16,
                     num_attention_heads=16, intermediate_size=2816)
model = LlamaForCausalLM(config).to("cuda", torch.bfloat16)
_, held = conv.split(conv.stdlib_functions())
items = eval_items(tok, held, 200, 256)
margins(model, items[:8]); torch.cuda.synchronize()
t = time.perf_counter(); margins(model, items); torch.cuda.synchronize()
dt = time.perf_counter() - t
print(f"RESULT {len(items)} functions in {dt:.2f} s = {len(items) / dt:.0f} functions/s")
EOF
rows+=("held-out scoring (0.2 B, bf16)|$(grep RESULT "$OUT/score.txt" | cut -c8- || tail -1 "$OUT/score.txt")")

timeout 180 "$PYTHON" - >"$OUT/gen.txt" 2>&1 <<'EOF'
import statistics, time, torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
from tiny_model import build_tiny_model

tok = AutoTokenizer.from_pretrained(build_tiny_model())
config = LlamaConfig(vocab_size=len(tok), hidden_size=1024, num_hidden_layers=16,
                     num_attention_heads=16, intermediate_size=2816)
model = LlamaForCausalLM(config).to("cuda", torch.bfloat16).eval()
prompt = torch.randint(5, len(tok), (1, 1024), device="cuda")
first, per_token = [], []
with torch.no_grad():
    for i in range(12):
        torch.cuda.synchronize(); t = time.perf_counter()
        model.generate(prompt, max_new_tokens=1, do_sample=False, pad_token_id=0)
        torch.cuda.synchronize(); t1 = time.perf_counter()
        model.generate(prompt, max_new_tokens=64, min_new_tokens=64, do_sample=False, pad_token_id=0)
        torch.cuda.synchronize(); t2 = time.perf_counter()
        if i >= 2:  # warm-up
            first.append(t1 - t); per_token.append((t2 - t1) / 63)
print(f"RESULT first token p50 {statistics.median(first) * 1000:.1f} ms (1,024-token prompt), "
      f"{1 / statistics.median(per_token):.0f} tokens/s after")
EOF
rows+=("local backend latency (0.2 B, bf16)|$(grep RESULT "$OUT/gen.txt" | cut -c8- || tail -1 "$OUT/gen.txt")")

echo
echo "crlhf GPU check on $gpu"
printf '%s\n' "${rows[@]}" | column -t -s '|'
exit 0
