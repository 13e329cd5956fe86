"""``crlhf.checkToken``: whom the store knows a token as, asked once when the user sets it.

``GET /v1/me`` with the token; the answer names the annotator ("signed in as alice"), a 401
or 403 says the token is refused, anything else that the store could not be asked. The
store URL is the settings' one, already held to their rules (https off loopback).
"""

from __future__ import annotations

from crlhf_contract.client import StoreClient, StoreError, StoreRejected
from crlhf_contract.protocol import TokenCheck

from crlhf_lsp.outbox_send import TOKEN_REFUSED, describe

__all__ = ["check_token"]


def check_token(store_url: str, token: str) -> TokenCheck:
    """Ask the store at ``store_url`` who ``token`` is (on an I/O thread: it blocks)."""
    if not store_url:
        return TokenCheck(signedIn=False, message="no store is set (crlhf.storeUrl): not checked")
    if not token:
        return TokenCheck(signedIn=False, message="no token is set")
    try:
        with StoreClient(store_url, token, timeout=10.0) as client:
            me = client.me()
    except StoreRejected as exc:
        refused = exc.status in TOKEN_REFUSED
        problem = describe(exc)
        message = f"token refused: {problem}" if refused else problem
        return TokenCheck(signedIn=False, refused=refused, message=message)
    except (StoreError, OSError) as exc:
        return TokenCheck(signedIn=False, message=f"not checked: {describe(exc)}")
    return TokenCheck(signedIn=True, annotator=me.annotator, message=f"signed in as {me.annotator}")
