"""The policy loss on logged completions: advantage × clipped ratio, plus KL to the base.

For a completion ``y`` of prompt ``x`` logged by crlhf-lsp with sampling log-probs
``log μ(y_t)``, and the LoRA policy ``π_θ``::

    r_t   = exp(log π_θ(y_t | x, y_<t) − log μ(y_t))                  importance ratio
    L_t   = −min(r_t · A_t, clip(r_t, 1 − ε, 1 + ε) · A_t)            PPO-clip surrogate
    KL_t  = Σ_v π_θ(v | x, y_<t) · (log π_θ(v | …) − log π_ref(v | …))  exact, per position
    loss  = mean over completions of the mean over its tokens of (L_t + β · KL_t)

``π_ref`` is the base model: the same weights with the LoRA adapter switched off by
peft's ``disable_adapter()``, so no second copy of the model is held. The KL is exact at
every position the completion visits, summed over the vocabulary from the logits the
loss computes anyway. The sampled "k3" estimate, exp(q) − q − 1 with q = log π_ref(y_t) −
log π_θ(y_t), is unbiased only on samples *from π_θ*; on logged completions whose wrong
tokens the update pushes down it explodes (q grows without bound: a Gemma 3 270M run
read 376 nats/token after two steps while the policy had barely moved), so it neither
regularises nor monitors. A completion logged by an older adapter is
off-policy; the ratio against its logged log-probs corrects for that, and the clip keeps
one update from moving far on a stale sample. That holds only for completions *sampled*
(T > 0) by the same model whose log-probs were logged. crlhf-lsp decodes greedily by
default, and llama.cpp serves a quantised model: then the logged numbers are not the
behaviour distribution, so the default (``use_logged=False``, ``importance="policy"``)
takes the ratio against the current policy: ``r_t = 1`` with the policy's own gradient,
and the update is what it is, reward-weighted regression on the logged completions with
a KL proximal term to the base model, no off-policy correction claimed. There the clip
never binds. ``importance="start"`` takes ``μ`` to be the policy the run starts from
(its log-probs computed once, teacher-forced: ``crlhf_trainer.train``), PPO's π_old: no
off-policy correction either, but a trust region, since a token whose probability has
moved past ``1 ± ε`` of where it started gets no more gradient from its advantage.

The advantage ``A_t`` is where the two variants differ (each a :class:`Variant`, chosen
once by name when the config is validated):

- ``pg``: one number per completion, its reward (expected share of correct lines, from the
  aggregation) minus a running baseline of rewards, on every token.
- ``pg-line``: per-line credit: each token's advantage is the posterior P(correct) of the
  line it belongs to minus a running baseline of line posteriors, so a wrong line is
  pushed down even inside a mostly right completion (Wong & Tan 2024 rate lines).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import TrainConfigError
from .examples import Example

__all__ = [
    "ADVANTAGES",
    "VARIANTS",
    "Batch",
    "RunningBaseline",
    "Variant",
    "advantage_fn",
    "advantages_pg",
    "advantages_pg_line",
    "clipped_surrogate",
    "collate",
    "exact_kl",
    "kl_k3",
    "policy_loss",
    "reference_logprobs",
    "token_distributions",
    "token_logprobs",
    "variant",
]


@dataclass
class Batch:
    """Prompts left-padded to end at one column, completions right-padded after it.

    That layout puts every completion's tokens in the same last ``C`` columns, so the
    model computes logits for those columns only (``logits_to_keep``): with a 256k-token
    vocabulary the full logits of long prompts would dwarf everything else in memory.
    """

    input_ids: torch.Tensor  # [B, P + C]
    attention_mask: torch.Tensor  # [B, P + C]
    position_ids: torch.Tensor  # [B, P + C]
    completion_ids: torch.Tensor  # [B, C]
    mask: torch.Tensor  # [B, C] float, 1 on real completion tokens
    reward: torch.Tensor  # [B]
    credit: torch.Tensor  # [B, C] line posterior of each token
    old_logprobs: torch.Tensor  # [B, C], NaN where nothing was logged

    def to(self, device: torch.device | str) -> Batch:
        return Batch(**{k: v.to(device) for k, v in self.__dict__.items()})

    @property
    def n_tokens(self) -> int:
        return int(self.attention_mask.sum())


def collate(examples: Sequence[Example], pad_id: int) -> Batch:
    p = max(len(e.prompt_ids) for e in examples)
    c = max(len(e.completion_ids) for e in examples)
    n = len(examples)
    ids = torch.full((n, p + c), pad_id, dtype=torch.long)
    attn = torch.zeros((n, p + c), dtype=torch.long)
    credit = torch.zeros((n, c))
    old = torch.full((n, c), float("nan"))
    for i, e in enumerate(examples):
        lp, lc = len(e.prompt_ids), len(e.completion_ids)
        ids[i, p - lp : p] = torch.tensor(e.prompt_ids, dtype=torch.long)
        ids[i, p : p + lc] = torch.tensor(e.completion_ids, dtype=torch.long)
        attn[i, p - lp : p + lc] = 1
        credit[i, :lc] = torch.tensor(e.token_credit)
        if e.logprobs is not None:
            old[i, :lc] = torch.tensor(e.logprobs)
    return Batch(
        input_ids=ids,
        attention_mask=attn,
        position_ids=(attn.cumsum(-1) - 1).clamp(min=0),
        completion_ids=ids[:, p:],
        mask=attn[:, p:].float(),
        reward=torch.tensor([e.reward for e in examples]),
        credit=credit,
        old_logprobs=old,
    )


def token_distributions(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """log π(· | x, y_<t) over the vocabulary at each completion position, [B, C, V]."""
    c = batch.completion_ids.shape[1]
    out = model(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        logits_to_keep=c + 1,
        use_cache=False,
    )
    # The logit at column j predicts token j + 1: drop the one after the last token.
    return F.log_softmax(out.logits[:, :-1, :].float(), dim=-1)


def _picked(full: torch.Tensor, batch: Batch) -> torch.Tensor:
    return torch.gather(full, 2, batch.completion_ids.unsqueeze(-1)).squeeze(-1) * batch.mask


def token_logprobs(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """log π(y_t | x, y_<t) of each completion token, [B, C] (0 on padding)."""
    return _picked(token_distributions(model, batch), batch)


def exact_kl(full: torch.Tensor, ref_full: torch.Tensor) -> torch.Tensor:
    """KL(π‖π_ref) at each position, [B, C], from the two log-distributions [B, C, V]."""
    return (full.exp() * (full - ref_full)).sum(-1)


def _reference_distributions(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    disable = getattr(model, "disable_adapter", None)
    if disable is None:
        raise TrainConfigError(
            f"{type(model).__name__} has no disable_adapter(): pass the PEFT model itself "
            "(accelerator.unwrap_model(model)) to compute the reference log-probs"
        )
    with torch.no_grad(), disable():
        return token_distributions(model, batch)


def reference_logprobs(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Token log-probs under the base model: the same weights, adapter switched off."""
    return _picked(_reference_distributions(model, batch), batch)


# --- advantages: the two variants -------------------------------------------------


def advantages_pg(batch: Batch, baseline: float) -> torch.Tensor:
    """Per completion: reward − baseline, the same on each of its tokens."""
    return (batch.reward - baseline).unsqueeze(1).expand_as(batch.mask) * batch.mask


def advantages_pg_line(batch: Batch, baseline: float) -> torch.Tensor:
    """Per line: the token's line posterior − baseline."""
    return (batch.credit - baseline) * batch.mask


AdvantageFn = Callable[[Batch, float], torch.Tensor]


def _reward_signal(examples: Sequence[Example]) -> list[float]:
    return [e.reward for e in examples]


def _credit_signal(examples: Sequence[Example]) -> list[float]:
    return [c for e in examples for c in e.token_credit]


def _batch_reward(batch: Batch) -> float:
    return float(batch.reward.mean())


def _batch_credit(batch: Batch) -> float:
    return float((batch.credit * batch.mask).sum() / batch.mask.sum().clamp(min=1))


@dataclass(frozen=True)
class Variant:
    """One RL method: its advantage and the signal its baseline tracks, kept together."""

    name: str
    advantage: AdvantageFn
    signal: Callable[[Sequence[Example]], list[float]]  # the training set's values
    batch_signal: Callable[[Batch], float]  # one micro-batch's mean, for the baseline


VARIANTS: dict[str, Variant] = {
    "pg": Variant("pg", advantages_pg, _reward_signal, _batch_reward),
    "pg-line": Variant("pg-line", advantages_pg_line, _credit_signal, _batch_credit),
}
ADVANTAGES: dict[str, AdvantageFn] = {k: v.advantage for k, v in VARIANTS.items()}


def variant(method: str) -> Variant:
    try:
        return VARIANTS[method]
    except KeyError:
        raise TrainConfigError(
            f"unknown method {method!r}; use one of {', '.join(VARIANTS)} (or grpo)"
        ) from None


def advantage_fn(method: str) -> AdvantageFn:
    return variant(method).advantage


class RunningBaseline:
    """An exponential moving average of a variant's signal (rewards or line credits).

    Started at the mean of the whole training set, so the first steps do not push every
    completion up just because the baseline began at zero.
    """

    def __init__(self, start: float, momentum: float = 0.9) -> None:
        self.value = float(start)
        self.momentum = momentum

    def update(self, seen: float) -> None:
        self.value = self.momentum * self.value + (1 - self.momentum) * seen


# --- loss terms ---------------------------------------------------------------------


def clipped_surrogate(
    logp: torch.Tensor, old_logp: torch.Tensor, advantage: torch.Tensor, clip: float
) -> torch.Tensor:
    """Per-token PPO-clip loss −min(r·A, clip(r)·A), r = exp(logp − old_logp)."""
    # A log-ratio past ±20 only happens on a token the logger and the policy disagree on
    # completely; clamping keeps exp() finite and the clip decides the gradient anyway.
    ratio = torch.exp((logp - old_logp).clamp(-20.0, 20.0))
    return -torch.minimum(ratio * advantage, ratio.clamp(1 - clip, 1 + clip) * advantage)


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(π‖π_ref): exp(q) − q − 1 ≥ 0, q = ref_logp − logp."""
    q = (ref_logp - logp).clamp(-20.0, 20.0)
    return torch.exp(q) - q - 1


def _per_completion_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return ((x * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()


def policy_loss(
    model: torch.nn.Module,
    batch: Batch,
    advantage: AdvantageFn,
    baseline: float,
    *,
    clip: float = 0.2,
    kl_coef: float = 0.05,
    peft_model: torch.nn.Module | None = None,
    use_logged: bool = False,
    scale: float = 1.0,
    negative_weight: float = 1.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of the module docstring and a few numbers to log.

    ``model`` may be wrapped (DDP, FSDP); ``peft_model`` is the unwrapped PEFT model whose
    ``disable_adapter()`` gives the base (defaults to ``model``). ``use_logged=False``
    ignores the logged log-probs (ratio against the current policy): for completions logged
    by a different numeric model (a quantised GGUF under llama.cpp) or with sampling
    settings (temperature, top-p) that make the logged log-probs a different distribution.
    ``scale`` divides the advantages: ``max(sd, floor)`` of the module docstring.
    ``negative_weight`` multiplies the advantages below zero (1: as they are; 0: only
    lines credited above the baseline are learnt from).
    """
    full = token_distributions(model, batch)
    logp = _picked(full, batch)
    if kl_coef > 0:
        ref_full = _reference_distributions(peft_model or model, batch)
        kl_t = exact_kl(full, ref_full)
    else:
        kl_t = torch.zeros_like(logp)
    logged = batch.old_logprobs if use_logged else torch.full_like(logp, float("nan"))
    old = torch.where(torch.isnan(logged), logp.detach(), logged)
    adv = advantage(batch, baseline) / scale
    if negative_weight != 1.0:
        # the push on a negative advantage has no target: the mass it takes off a wrong
        # line lands wherever the model puts it (on Gemma 3 270M, completions that no
        # longer parse: docs/benchmarks.md)
        adv = torch.where(adv < 0, adv * negative_weight, adv)
    surrogate = _per_completion_mean(clipped_surrogate(logp, old, adv, clip), batch.mask)
    kl = _per_completion_mean(kl_t, batch.mask)
    loss = surrogate + kl_coef * kl
    ratio = torch.exp((logp - old).detach().clamp(-20.0, 20.0))
    clipped = ((ratio - 1).abs() > clip).float()
    stats = {
        "loss": float(loss.detach()),
        "kl": float(kl.detach()),
        "clip_frac": float((clipped * batch.mask).sum() / batch.mask.sum().clamp(min=1)),
        "advantage": float((adv * batch.mask).sum() / batch.mask.sum().clamp(min=1)),
    }
    return loss, stats
