"""A tiny causal LM for tests and benches, built offline (no hub access), cached on disk.

``build_tiny_model()`` returns a folder loadable by ``AutoModelForCausalLM.from_pretrained``
and ``AutoTokenizer.from_pretrained``: a 2-layer Llama (hidden 64) with a byte-level BPE
tokenizer (vocabulary 512) trained on the Python snippets below, then the model trained for
a few hundred steps on the same snippets, so that greedy generation is deterministic and
gives non-empty, multi-token, Python-looking text. The tokenizer knows the Qwen-style FIM
tokens (``<|fim_prefix|>`` …) so FIM prompts can be built; the model was not trained on them.

The folder is cached under ``$CRLHF_TINY_MODEL_DIR`` (default: ``/tmp/crlhf-tiny-model-v1``)
and built atomically, so parallel test sessions share one build (~20 s on 2 CPU cores).

``make_tiny_adapter(model_dir, out_dir, seed)`` saves a LoRA adapter (PEFT format,
safetensors) for that model, with non-zero weights so it changes generations.

Use from tests: the session-scoped fixture ``tiny_model`` in ``tests/conftest.py``.
"""

from __future__ import annotations

import copy
import functools
import os
import random
import shutil
import tempfile
from pathlib import Path

VERSION = "v1"
DEFAULT_DIR = Path(tempfile.gettempdir()) / f"crlhf-tiny-model-{VERSION}"
FIM_TOKENS = ["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"]
SPECIAL_TOKENS = ["<|endoftext|>", *FIM_TOKENS]

SNIPPETS = [
    "def add(a, b):\n    return a + b\n",
    "def sub(a, b):\n    return a - b\n",
    "def mul(a, b):\n    return a * b\n",
    "def square(x):\n    return x * x\n",
    "def is_even(n):\n    return n % 2 == 0\n",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "def factorial(n):\n    if n == 0:\n        return 1\n    return n * factorial(n - 1)\n",
    "def mean(values):\n    total = sum(values)\n    return total / len(values)\n",
    "def maximum(values):\n    best = values[0]\n    for value in values:\n"
    "        if value > best:\n            best = value\n    return best\n",
    "def count_words(text):\n    counts = {}\n    for word in text.split():\n"
    "        counts[word] = counts.get(word, 0) + 1\n    return counts\n",
    "def reverse(items):\n    result = []\n    for item in items:\n"
    "        result.insert(0, item)\n    return result\n",
    "import os\nimport sys\n\n\ndef main():\n    print(sys.argv)\n    return 0\n",
    "class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n"
    "    def push(self, item):\n        self.items.append(item)\n\n"
    "    def pop(self):\n        return self.items.pop()\n",
    "for i in range(10):\n    print(i)\n",
    "with open(path) as f:\n    data = f.read()\n",
    'if __name__ == "__main__":\n    main()\n',
    "def read_lines(path):\n    with open(path) as f:\n        return f.read().splitlines()\n",
    "def clamp(x, low, high):\n    return max(low, min(x, high))\n",
    'def greet(name):\n    return "Hello, " + name\n',
]


def _corpus(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["\n\n".join(rng.sample(SNIPPETS, 3)) for _ in range(n)]


def _build_tokenizer(folder: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(SNIPPETS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=FIM_TOKENS,
    )
    fast.save_pretrained(folder)
    return fast


def _build_model(folder: Path, tokenizer, steps: int, seed: int) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=4096,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    optim = torch.optim.AdamW(model.parameters(), lr=3e-3)
    texts = _corpus(steps * 8, seed)
    model.train()
    for step in range(steps):
        batch = tokenizer(
            texts[step * 8 : (step + 1) * 8],
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=128,
        )
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optim.step()
        optim.zero_grad()
    model.eval()
    model.save_pretrained(folder, safe_serialization=True)


def build_tiny_model(folder: Path | None = None, *, steps: int = 150, seed: int = 0) -> Path:
    """Build (once) and return the folder of the tiny model; see the module docstring."""
    folder = Path(folder or os.environ.get("CRLHF_TINY_MODEL_DIR") or DEFAULT_DIR)
    if (folder / "config.json").exists() and (folder / "tokenizer.json").exists():
        return folder
    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    try:
        tokenizer = _build_tokenizer(work)
        _build_model(work, tokenizer, steps, seed)
        try:
            work.rename(folder)  # atomic: a parallel builder that won keeps its folder
        except OSError:
            shutil.rmtree(work, ignore_errors=True)
    finally:
        if work.exists() and work != folder:
            shutil.rmtree(work, ignore_errors=True)
    return folder


# Every linear layer of the Llama block: the adapters the GGUF conversion tests use.
ALL_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@functools.lru_cache(maxsize=2)
def _load_base(model_dir: str):  # type: ignore[no-untyped-def]
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir)


def make_tiny_adapter(
    model_dir: Path, out_dir: Path, *, seed: int = 1, r: int = 4, scale: float = 0.5, **lora: object
) -> Path:
    """Save a LoRA adapter with random non-zero weights (×``scale``) into ``out_dir``.

    By default on q_proj and v_proj with alpha 2r; ``lora`` overrides any ``LoraConfig``
    field (``target_modules=ALL_TARGETS``, ``use_rslora``, ``rank_pattern`` …).
    """
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    base = copy.deepcopy(_load_base(str(model_dir)))  # get_peft_model changes it in place
    defaults = {"r": r, "lora_alpha": 2 * r, "target_modules": ["q_proj", "v_proj"]}
    config = LoraConfig(**(defaults | lora))
    model = get_peft_model(base, config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn_like(param) * scale)
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir, safe_serialization=True)
    return out_dir


try:
    import pytest
except ImportError:  # imported outside pytest (bench, demo)
    pass
else:

    @pytest.fixture(scope="session")
    def tiny_model() -> Path:
        """The folder of the tiny model (built once per machine, then cached)."""
        return build_tiny_model()


if __name__ == "__main__":
    print(build_tiny_model())
