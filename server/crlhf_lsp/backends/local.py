"""The ``local`` backend: transformers + peft in this process.

Speed: consecutive requests for one document share most of their prompt, so each document
(``GenerationRequest.cache_key``) keeps the KV cache of its last request; the next request
crops it to the longest common token prefix and runs the model only on the rest. The cache
of a few recent documents is kept; swapping the adapter drops them all (their keys and
values were computed with the old weights).

Generation is a plain token loop (greedy, or sampling at ``temperature`` > 0) so that it can
stop between any two tokens (cancellation, ``should_stop``) and record each token's
log-probability under the policy that produced it, which the trainer needs.

Adapters: LoRA in PEFT format, loaded from ``adapter_model.safetensors`` only (never a
pickle), checked against the base model's module shapes before anything is touched.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from crlhf_lsp.backends.base import Backend, Generation, GenerationRequest
from crlhf_lsp.errors import AdapterError, AdapterMismatch, BackendError
from crlhf_lsp.prompt import detect_fim_tokens
from crlhf_lsp.settings import Settings

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
CACHED_DOCUMENTS = 4


@dataclass
class _Cached:
    ids: list[int]
    past: Any  # transformers DynamicCache holding the keys/values of ``ids``


def from_settings(settings: Settings) -> LocalBackend:
    if not settings.model:
        raise BackendError(
            "no model: set the 'model' setting (or CRLHF_MODEL) to a hub id or a local folder"
        )
    return LocalBackend(settings.model, device=settings.device)


class LocalBackend(Backend):
    in_process = True

    def __init__(self, model: str, *, device: str = "cpu") -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(_threads())
        local = Path(model).is_dir()  # a folder: never ask the hub
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=local)
            self.base = AutoModelForCausalLM.from_pretrained(model, local_files_only=local)
            self.base = self.base.to(device).eval()
        except (OSError, ValueError) as exc:
            raise BackendError(f"could not load the model {model!r}: {exc}") from exc
        self.name = model
        self.device = torch.device(device)
        self.fim_tokens = detect_fim_tokens(self.tokenizer.get_vocab())
        self.eos_ids = _eos_ids(self.tokenizer, self.base)
        self.peft: Any = None  # a PeftModel once an adapter was loaded
        self.adapter: str | None = None
        self._caches: OrderedDict[str, _Cached] = OrderedDict()
        # A pause after each token, for tests and demos of cancellation only.
        self._token_delay = float(os.environ.get("CRLHF_TOKEN_DELAY_S") or 0)
        params = inspect.signature(self.base.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"  # renamed in 5.x

    # --- generation -----------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False).input_ids)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text).input_ids)

    @property
    def _model(self) -> Any:
        return self.peft if self.peft is not None and self.adapter else self.base

    @torch.inference_mode()
    def generate(self, request: GenerationRequest, cancel: threading.Event) -> Generation:
        ids = request.prompt_ids if request.prompt_ids is not None else self.encode(request.prompt)
        if not ids:
            return Generation(text="", token_ids=[], prompt_token_ids=[], token_logprobs=[])
        past, reused = self._take_cache(request.cache_key, ids)
        fed = list(ids)
        logits = self._forward(ids[reused:], past)
        generated: list[int] = []
        logprobs: list[float] = []
        text = ""
        # torch's CPU generator keeps 32 bits of its seed: mix the seed in within them
        mixed = (request.seed * 2_654_435_761 + len(ids)) % 2**32
        gen = torch.Generator(device="cpu").manual_seed(mixed)
        while len(generated) < request.max_tokens and not cancel.is_set():
            token, logprob = _pick(logits, request.temperature, gen)
            if token in self.eos_ids:
                break
            generated.append(token)
            logprobs.append(logprob)
            text = self.tokenizer.decode(generated, skip_special_tokens=True)
            if request.should_stop is not None and request.should_stop(text):
                break
            if len(generated) == request.max_tokens or cancel.is_set():
                break
            if self._token_delay:
                time.sleep(self._token_delay)
            logits = self._forward([token], past)
            fed.append(token)
        self._keep_cache(request.cache_key, fed, past)
        return Generation(
            text=text,
            token_ids=generated,
            prompt_token_ids=ids,
            token_logprobs=logprobs,
            cancelled=cancel.is_set(),
            cached_tokens=reused,
        )

    def cached_tokens(self, ids: list[int], cache_key: str | None) -> int | None:
        entry = self._caches.get(cache_key) if cache_key is not None else None
        return 0 if entry is None else min(_common_prefix(entry.ids, ids), len(ids) - 1)

    def prefill(self, ids: list[int], cache_key: str | None, cancel: threading.Event) -> None:
        # One token generated and dropped: the cache kept holds ``ids`` (fed, not the token).
        self.generate(
            GenerationRequest("", max_tokens=1, cache_key=cache_key, prompt_ids=ids), cancel
        )

    def trim(self, generation: Generation, text: str) -> Generation:
        ids = generation.token_ids or []
        n = len(ids)
        while n > 0 and len(self.tokenizer.decode(ids[: n - 1], skip_special_tokens=True)) >= len(
            text
        ):
            n -= 1
        generation.token_ids = ids[:n]
        generation.token_logprobs = (generation.token_logprobs or [])[:n]
        return generation

    def _forward(self, ids: list[int], past: Any) -> torch.Tensor:
        input_ids = torch.tensor([ids], device=self.device)
        out = self._model(input_ids=input_ids, **{self._cache_kw: past}, use_cache=True)
        return out.logits[0, -1]

    def _take_cache(self, key: str | None, ids: list[int]) -> tuple[Any, int]:
        """A KV cache holding the longest common prefix of ``ids`` (at most all but one)."""
        from transformers import DynamicCache

        entry = self._caches.pop(key, None) if key is not None else None
        if entry is None:
            return DynamicCache(), 0
        common = _common_prefix(entry.ids, ids)
        keep = min(common, len(ids) - 1)  # the last prompt token must run to give logits
        if keep <= 0:
            return DynamicCache(), 0
        surplus = entry.past.get_seq_length() - keep
        if surplus > 0:
            entry.past.crop(-surplus)  # transformers ≥ 5: a negative count of tokens to drop
        return entry.past, keep

    def _keep_cache(self, key: str | None, ids: list[int], past: Any) -> None:
        if key is None:
            return
        self._caches[key] = _Cached(ids, past)
        while len(self._caches) > CACHED_DOCUMENTS:
            self._caches.popitem(last=False)

    # --- adapters -------------------------------------------------------------------

    def check_adapter(self, folder: Path) -> None:
        _load_checked(self.base, Path(folder))

    def load_adapter(self, folder: Path, version: str) -> None:
        from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

        config, state = _load_checked(self.base, Path(folder))
        old = self.adapter
        created = False
        try:
            if self.peft is None:
                self.peft = get_peft_model(self.base, LoraConfig(**config), adapter_name=version)
                created = True
            else:
                if version in self.peft.peft_config:
                    self.peft.delete_adapter(version)
                self.peft.add_adapter(version, LoraConfig(**config))
            result = set_peft_model_state_dict(self.peft, state, adapter_name=version)
            missing = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
            if missing:
                raise AdapterMismatch(f"adapter weights not used by the model: {missing[:3]}")
            self.peft.set_adapter(version)
            self.peft.eval()
        except Exception as exc:
            self._rollback(version, old, created)
            if isinstance(exc, AdapterError):
                raise
            raise AdapterError(f"could not load adapter {version}: {exc}") from exc
        if old is not None and old != version and old in self.peft.peft_config:
            self.peft.delete_adapter(old)
        self.adapter = version
        self._caches.clear()

    def _rollback(self, version: str, old: str | None, created: bool) -> None:
        if self.peft is None:
            return
        if created:
            self.peft = None
            self.base = self.base  # get_peft_model wrapped it in place; keep using it
            _strip_lora(self.base)
            return
        if version in self.peft.peft_config and version != old:
            self.peft.delete_adapter(version)
        if old is not None:
            self.peft.set_adapter(old)

    def unload_adapter(self) -> None:
        if self.peft is not None and self.adapter is not None:
            self.peft.delete_adapter(self.adapter)
        self.peft = None
        _strip_lora(self.base)
        self.adapter = None
        self._caches.clear()


def _threads() -> int:
    """Torch CPU threads: ``$CRLHF_TORCH_THREADS``, else half the cores (one on two cores:
    a spinning second thread costs more than it gives on a shared two-core machine)."""
    configured = os.environ.get("CRLHF_TORCH_THREADS", "")
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    return max(1, (os.cpu_count() or 2) // 2)


def _pick(logits: torch.Tensor, temperature: float, gen: torch.Generator) -> tuple[int, float]:
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    if temperature > 0:
        probs = torch.softmax(logits.float() / temperature, dim=-1)
        token = int(torch.multinomial(probs.cpu(), 1, generator=gen))
    else:
        token = int(torch.argmax(logprobs))
    return token, float(logprobs[token])


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _eos_ids(tokenizer: Any, model: Any) -> set[int]:
    """The tokens that end a completion: EOS, and every special added token (an instruct
    model ends a fill-in-the-middle with ``<|endoftext|>`` while its EOS is ``<|im_end|>``,
    or starts a new file with ``<|file_sep|>``; decoded with ``skip_special_tokens`` these
    would vanish from the text, and the model would go on unseen)."""
    ids = {tokenizer.eos_token_id, getattr(model.config, "eos_token_id", None)}
    flat: set[int] = set()
    for i in ids:
        if isinstance(i, list):
            flat.update(i)
        elif i is not None:
            flat.add(int(i))
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    flat.update(int(i) for i, token in added.items() if getattr(token, "special", False))
    return flat


def _load_checked(base: Any, folder: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read an adapter folder and check that it fits ``base``; (lora config, state dict)."""
    from safetensors.torch import load_file

    pickles = [p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES]
    weights = folder / "adapter_model.safetensors"
    if pickles or not weights.is_file():
        raise AdapterMismatch(
            f"adapter in {folder} must hold adapter_model.safetensors and no pickle files "
            f"(found {pickles or 'no safetensors'})"
        )
    try:
        config = json.loads((folder / "adapter_config.json").read_text())
        state = load_file(str(weights))
    except (OSError, ValueError) as exc:
        raise AdapterMismatch(f"unreadable adapter in {folder}: {exc}") from exc
    if config.get("peft_type", "LORA") != "LORA":
        raise AdapterMismatch(f"only LoRA adapters are supported, not {config.get('peft_type')}")
    modules = dict(base.named_modules())
    rank = int(config.get("r", 0))
    for key, tensor in state.items():
        _check_weight(modules, key, tensor, rank)
    allowed = {f.name for f in dataclasses.fields(_lora_config_class())}
    return {k: v for k, v in config.items() if k in allowed}, state


def _check_weight(modules: dict[str, Any], key: str, tensor: torch.Tensor, rank: int) -> None:
    if ".lora_" not in key:
        raise AdapterMismatch(f"unexpected tensor {key} in the adapter")
    path, kind = key.split(".lora_", 1)
    path = path.removeprefix("base_model.model.")
    module = modules.get(path)
    if module is None:
        raise AdapterMismatch(f"the base model has no module {path} (adapter tensor {key})")
    layer = getattr(module, "base_layer", module)
    in_f, out_f = getattr(layer, "in_features", None), getattr(layer, "out_features", None)
    if kind.startswith("A.") and tuple(tensor.shape) != (rank, in_f):
        raise AdapterMismatch(f"{key}: shape {tuple(tensor.shape)}, model needs {(rank, in_f)}")
    if kind.startswith("B.") and tuple(tensor.shape) != (out_f, rank):
        raise AdapterMismatch(f"{key}: shape {tuple(tensor.shape)}, model needs {(out_f, rank)}")


def _lora_config_class() -> type:
    from peft import LoraConfig

    return LoraConfig


def _strip_lora(model: Any) -> None:
    """Undo the in-place LoRA injection of get_peft_model (after a failed first load)."""
    for name, module in list(model.named_modules()):
        base = getattr(module, "base_layer", None)
        if base is None or "." not in name:
            continue
        parent_name, child = name.rsplit(".", 1)
        setattr(model.get_submodule(parent_name), child, base)
