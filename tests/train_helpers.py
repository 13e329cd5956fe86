"""Helpers of the trainer tests: logged completions from the tiny model, a rated store."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch
from crlhf_contract.schemas import CompletionIn, EventIn, RatingIn, completion_lines
from crlhf_trainer.examples import Example, token_lines
from tiny_model import build_tiny_model

PROMPTS = [
    "def add(a, b):\n",
    "def fib(n):\n",
    "class Stack:\n",
    "for i in range(10):\n",
    "def mean(values):\n",
    "def clamp(x, low, high):\n",
]


@dataclass
class Logged:
    prompt: str
    prompt_ids: list[int]
    ids: list[int]
    logprobs: list[float]
    text: str


def tiny() -> Path:
    return build_tiny_model()


def sample(
    model_dir: Path, prompts: list[str], per_prompt: int, *, seed: int = 0, max_new_tokens: int = 16
) -> list[Logged]:
    """Completions as crlhf-lsp logs them: token ids and sampling log-probs."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    torch.manual_seed(seed)
    out = []
    for p in prompts:
        pid = tok(p)["input_ids"]
        for _ in range(per_prompt):
            g = model.generate(
                torch.tensor([pid]),
                max_new_tokens=max_new_tokens,
                min_new_tokens=max_new_tokens,
                do_sample=True,
                top_k=0,
                pad_token_id=tok.pad_token_id,
                output_scores=True,
                return_dict_in_generate=True,
            )
            ids = g.sequences[0, len(pid) :].tolist()
            scores = zip(g.scores, ids, strict=True)
            lps = [torch.log_softmax(s[0].float(), -1)[t].item() for s, t in scores]
            out.append(Logged(p, pid, ids, lps, tok.decode(ids)))
    return out


def examples(
    model_dir: Path,
    logged: list[Logged],
    rewards: list[float],
    line_credit: list[list[float]] | None = None,
) -> list[Example]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    out = []
    for i, (c, r) in enumerate(zip(logged, rewards, strict=True)):
        lines = token_lines(tok.decode, c.ids)
        credit = (
            [line_credit[i][min(ln, len(line_credit[i]) - 1)] for ln in lines]
            if line_credit
            else [r] * len(c.ids)
        )
        out.append(Example(str(i), c.prompt_ids, c.ids, r, credit, c.logprobs, lines, c.prompt))
    return out


def populate(
    store, model_dir: Path, *, per_prompt: int = 3, seed: int = 0, with_token_ids: bool = True
) -> list[CompletionIn]:
    """Post sampled completions as alice, then ratings by three annotators (90% right)."""
    rng = random.Random(seed)
    logged = sample(model_dir, PROMPTS, per_prompt, seed=seed)
    completions = [
        CompletionIn(
            id=uuid.uuid4(),
            prompt=c.prompt,
            text=c.text,
            model=str(model_dir),
            language="python",
            token_ids=c.ids if with_token_ids else None,
            token_logprobs=c.logprobs if with_token_ids else None,
            prompt_token_ids=c.prompt_ids if with_token_ids else None,
        )
        for c in logged
    ]
    with store.client() as alice:
        alice.post_completions(completions)
        alice.post_events(
            [
                EventIn(event_id=uuid.uuid4(), completion_id=c.id, kind="accepted")
                for c in completions
            ]
        )
    truth = {}
    for c in completions:
        good = rng.random() < 0.5
        truth[c.id] = [1 if good or rng.random() < 0.2 else -1 for _ in completion_lines(c.text)]
    tokens = [store.annotator_token, store.new_token("bob"), store.new_token("carol")]
    for token in tokens:
        with store.client(token) as client:
            # the store takes ratings of one's own completions and of served review tasks
            while client.review_next() is not None:
                pass
            client.post_ratings(
                [
                    RatingIn(
                        event_id=uuid.uuid4(),
                        completion_id=c.id,
                        line=line,
                        label=v if rng.random() < 0.9 else -v,
                    )
                    for c in completions
                    for line, v in enumerate(truth[c.id])
                ]
            )
    return completions
