"""crlhf_lsp.settings: environment defaults, client settings merged and coerced, bad keys named."""

from __future__ import annotations

import pytest
from crlhf_lsp.errors import SettingsError
from crlhf_lsp.settings import Settings


def test_settings_merge_coerce_and_name_bad_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRLHF_STORE_URL", "https://store")
    monkeypatch.setenv("CRLHF_MODEL", "tiny")
    s = Settings()
    assert (s.storeUrl, s.model, s.backend, s.enabled) == ("https://store", "tiny", "auto", True)
    t = s.merged({"crlhf": {"maxTokens": "12", "enabled": "false", "unknown": 1}})
    assert (t.maxTokens, t.enabled) == (12, False)
    with pytest.raises(SettingsError, match="maxTokens"):
        s.merged({"maxTokens": "many"})
    with pytest.raises(SettingsError, match="backend"):
        s.merged({"backend": "magic"})
