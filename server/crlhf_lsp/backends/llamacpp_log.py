"""llama.cpp's log lines routed into :mod:`logging` at their own level.

llama-cpp-python installs a log callback that reads ggml's levels with an old enum
(INFO 1, WARN 2, ERROR 3): today's ``ggml.h`` has DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5,
so every warning reaches stderr as an "error" even with ``verbose=False``. Loading a GGUF
LoRA on the default model's repacked Q4 weights wrote 27 such lines across the demo's
progress bars. Ours maps the enum as ``ggml.h`` defines it onto the logger
``crlhf_lsp.llamacpp``: the language server's log configuration decides what is kept, and a
process that configured no logging (the demo, a bench) shows none of it (a NullHandler
stands in for Python's last-resort stderr handler).
"""

from __future__ import annotations

import ctypes
import logging
import threading
from typing import Any

__all__ = ["GGML_LEVELS", "install_log_callback", "log"]

log = logging.getLogger("crlhf_lsp.llamacpp")
log.addHandler(logging.NullHandler())

GGML_LEVELS = {
    0: logging.CRITICAL,
    1: logging.DEBUG,
    2: logging.INFO,
    3: logging.WARNING,
    4: logging.ERROR,
}
"""``enum ggml_log_level`` (ggml.h) → logging; 5 (CONT) continues the previous line's level."""
_CONT = 5

_lock = threading.Lock()
_installed: Any = None  # the ctypes callback: kept alive as long as llama.cpp may call it
_last_level = logging.DEBUG


def _forward(level: int, text: bytes | None, _user_data: ctypes.c_void_p) -> None:
    global _last_level
    mapped = _last_level if level == _CONT else GGML_LEVELS.get(level, logging.DEBUG)
    _last_level = mapped
    if text and log.isEnabledFor(mapped):
        log.log(mapped, "%s", text.decode("utf-8", errors="replace").rstrip("\n"))


def install_log_callback() -> None:
    """Route llama.cpp's log through :data:`log` (once per process; idempotent)."""
    global _installed
    import llama_cpp

    with _lock:
        if _installed is None:
            _installed = llama_cpp.llama_log_callback(_forward)
        llama_cpp.llama_log_set(_installed, ctypes.c_void_p(0))
