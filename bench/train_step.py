"""Benchmark: crlhf's policy-update loop against TRL's GRPOTrainer on the same logged data.

    .venv/bin/python bench/train_step.py                    # tiny model, CPU
    .venv/bin/python bench/train_step.py --size small --device cuda --steps 20

Both trainers get the same model (random weights from a Llama config; ``tiny`` is the
test model of tests/tiny_model.py), the same logged completions (2 per prompt, so GRPO has
groups; random token ids with the base model's log-probs as the "logged" sampling
log-probs), the same LoRA (r 16, all linear layers), micro-batch, gradient accumulation,
learning rate, clip ε and KL coefficient β (so both run the reference forward with the
adapter off). TRL generates nothing: its ``rollout_func`` returns the logged completions
(crlhf_trainer.grpo). Each trainer runs in a fresh subprocess, so its peak memory is its
own: peak RSS on a CPU, ``torch.cuda.max_memory_allocated`` on a GPU.

Printed: steps, tokens (prompt + completion, without padding), wall seconds of the
training loop (model loading excluded), tokens/s, peak memory, and ours ÷ TRL. One run,
on whatever else the machine is doing. Target (issue 5): not slower, no more memory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = {  # hidden, layers, heads, intermediate, vocab
    "small": (1024, 12, 16, 2816, 32000),
    "medium": (2048, 16, 16, 5632, 32000),
}


def build_model(size: str, folder: Path) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_model import build_tiny_model

    tiny = build_tiny_model()
    if size == "tiny":
        return tiny
    import shutil

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    hidden, layers, heads, inter, vocab = SIZES[size]
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        intermediate_size=inter,
        max_position_embeddings=4096,
        pad_token_id=0,
        eos_token_id=0,
        bos_token_id=0,
    )
    folder.mkdir(parents=True, exist_ok=True)
    LlamaForCausalLM(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tiny / name).exists():
            shutil.copy(tiny / name, folder / name)
    return folder


def make_data(model_dir: Path, prompts: int, prompt_len: int, completion_len: int, out: Path):
    import torch
    from crlhf_trainer.examples import Example
    from crlhf_trainer.policy import collate, token_logprobs
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    g = torch.Generator().manual_seed(0)
    vocab = min(model.config.vocab_size, 500)  # ids the tiny tokenizer can also decode
    rows = []
    for p in range(prompts):
        prompt = torch.randint(1, vocab, (prompt_len,), generator=g).tolist()
        for k in range(2):
            ids = torch.randint(1, vocab, (completion_len,), generator=g).tolist()
            reward = float(torch.rand((), generator=g))
            rows.append(
                Example(
                    f"{p}-{k}",
                    prompt,
                    ids,
                    reward,
                    [reward] * completion_len,
                    None,
                    [0] * completion_len,
                    f"prompt {p}",
                )
            )
    with torch.no_grad():
        for i in range(0, len(rows), 8):
            batch = rows[i : i + 8]
            lp = token_logprobs(model, collate(batch, 0))
            for j, e in enumerate(batch):
                e.logprobs = lp[j, : len(e.completion_ids)].tolist()
    out.write_text("\n".join(json.dumps(asdict(e)) for e in rows))


def worker(which: str, model_dir: str, data: Path, args: argparse.Namespace) -> None:
    from crlhf_trainer.examples import Example
    from crlhf_trainer.train import TrainConfig

    rows = [Example(**json.loads(line)) for line in data.read_text().splitlines()]
    cfg = TrainConfig(
        max_steps=args.steps,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        lr=1e-4,
        warmup_steps=0,
        kl_coef=0.05,
        clip=0.2,
        device=args.device,
        mixed_precision="bf16" if args.device == "cuda" else "no",
    )
    out = Path(tempfile.mkdtemp()) / "adapter"
    if which == "ours":
        from crlhf_trainer.train import train

        report = train(model_dir, rows, cfg, out)
    else:
        from crlhf_trainer.grpo import train_grpo

        report = train_grpo(model_dir, rows, cfg, out, group_size=2)
    print("RESULT " + json.dumps(report.summary(), default=str))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=["tiny", *SIZES], default="tiny")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--grad-accum", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--prompt-len", type=int, default=96)
    ap.add_argument("--completion-len", type=int, default=32)
    ap.add_argument("--worker", choices=["ours", "trl"], help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.model_dir, args.data, args)
        return

    tmp = Path(tempfile.mkdtemp(prefix="crlhf-bench-train-"))
    model_dir = build_model(args.size, tmp / "model")
    data = tmp / "data.jsonl"
    make_data(model_dir, args.prompts, args.prompt_len, args.completion_len, data)
    results = {which: _run_worker(which, model_dir, data, args) for which in ("ours", "trl")}
    _print_results(results, args)


def _run_worker(which: str, model_dir: Path, data: Path, args: argparse.Namespace) -> dict:
    """One trainer in its own process (its peak memory its own); its report's summary."""
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        which,
        "--model-dir",
        str(model_dir),
        "--data",
        str(data),
        "--device",
        args.device,
        "--steps",
        str(args.steps),
        "--batch-size",
        str(args.batch_size),
        "--grad-accum",
        str(args.grad_accum),
    ]
    env = os.environ | {"TRL_EXPERIMENTAL_SILENCE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        sys.exit(f"{which} failed:\n{proc.stderr[-3000:]}")
    return json.loads(line[len("RESULT ") :])


def _print_results(results: dict[str, dict], args: argparse.Namespace) -> None:
    import torch

    device = (
        torch.cuda.get_device_name(0) if args.device == "cuda" else f"CPU ({os.cpu_count()} cores)"
    )
    print(
        f"\nmodel {args.size}, {device}, {args.steps} steps × {args.grad_accum} micro-batches "
        f"of {args.batch_size} completions ({args.prompt_len}-token prompts, "
        f"{args.completion_len}-token completions), LoRA r16, β 0.05\n"
    )
    print(f"{'trainer':<22}{'steps':>6}{'tokens':>9}{'seconds':>9}{'tokens/s':>10}{'peak MB':>10}")
    names = {"ours": "crlhf (pg)", "trl": "TRL GRPO rollout_func"}
    for which, r in results.items():
        print(
            f"{names[which]:<22}{r['steps']:>6}{r['tokens']:>9}{r['seconds']:>9.2f}"
            f"{r['tokens_per_s']:>10.1f}{r['peak_memory_mb']:>10.0f}"
        )
    ours, trl = results["ours"], results["trl"]
    print(
        f"\nours ÷ TRL: tokens/s {ours['tokens_per_s'] / trl['tokens_per_s']:.2f}×, "
        f"peak memory {ours['peak_memory_mb'] / trl['peak_memory_mb']:.2f}×"
    )


if __name__ == "__main__":
    main()
