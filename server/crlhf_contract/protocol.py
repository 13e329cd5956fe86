"""crlhf-lsp's custom LSP protocol: every ``crlhf/*`` method and ``crlhf.*`` command.

The editors (the VS Code extension, the Neovim and Emacs snippets in the README) and the
language server agree on these names and payloads; the extension's TypeScript types are
generated from the models below (``extension/scripts/gen_protocol.py``), never by hand.

=====================================  ============  ========================================
name                                   direction     payload
=====================================  ============  ========================================
``crlhf/status``                       request       → :class:`Status`
``crlhf/statusChanged``                notification  server → client, :class:`Status`
``crlhf/adapterChanged``               notification  server → client, :class:`AdapterChanged`
``crlhf/completionStats``              request       → :class:`CompletionStats`
``crlhf/didShowCompletion``            notification  client → server, ``{completionId}``
``crlhf/didPartiallyAcceptCompletion`` notification  client → server,
                                                     ``{completionId, acceptedLength}``
``crlhf.accepted``                     command       ``(completionId)``
``crlhf.rate``                         command       ``(completionId, line, vote)`` triples
``crlhf.nextReviewTask``               command       → :class:`ReviewTaskPayload` or null
``crlhf.checkAdapter``                 command       → :class:`AdapterCheck`
``crlhf.checkToken``                   command       ``(token?)`` → :class:`TokenCheck`
``crlhf.toggleEnabled``                command       ``(enabled?)`` → ``{enabled}``
``crlhf.setAside``                     command       → list of :class:`SetAsideRow`
``crlhf.requeue``                      command       ``(key?, …)`` → :class:`Requeued`
=====================================  ============  ========================================
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = [
    "CMD_ACCEPTED",
    "CMD_CHECK_ADAPTER",
    "CMD_CHECK_TOKEN",
    "CMD_NEXT_REVIEW_TASK",
    "CMD_RATE",
    "CMD_REQUEUE",
    "CMD_SET_ASIDE",
    "CMD_TOGGLE_ENABLED",
    "COMMANDS",
    "METHODS",
    "M_ADAPTER_CHANGED",
    "M_COMPLETION_STATS",
    "M_DID_PARTIALLY_ACCEPT",
    "M_DID_SHOW",
    "M_STATUS",
    "M_STATUS_CHANGED",
    "AdapterChanged",
    "AdapterCheck",
    "CompletionStats",
    "Requeued",
    "ReviewTaskPayload",
    "SetAsideRow",
    "Status",
    "TokenCheck",
]

M_STATUS = "crlhf/status"
M_STATUS_CHANGED = "crlhf/statusChanged"
M_ADAPTER_CHANGED = "crlhf/adapterChanged"
M_DID_SHOW = "crlhf/didShowCompletion"
M_DID_PARTIALLY_ACCEPT = "crlhf/didPartiallyAcceptCompletion"
M_COMPLETION_STATS = "crlhf/completionStats"
METHODS = (
    M_STATUS,
    M_STATUS_CHANGED,
    M_ADAPTER_CHANGED,
    M_DID_SHOW,
    M_DID_PARTIALLY_ACCEPT,
    M_COMPLETION_STATS,
)

CMD_ACCEPTED = "crlhf.accepted"
CMD_RATE = "crlhf.rate"
CMD_NEXT_REVIEW_TASK = "crlhf.nextReviewTask"
CMD_CHECK_ADAPTER = "crlhf.checkAdapter"
CMD_CHECK_TOKEN = "crlhf.checkToken"
CMD_TOGGLE_ENABLED = "crlhf.toggleEnabled"
CMD_SET_ASIDE = "crlhf.setAside"
CMD_REQUEUE = "crlhf.requeue"
COMMANDS = (
    CMD_ACCEPTED,
    CMD_RATE,
    CMD_NEXT_REVIEW_TASK,
    CMD_CHECK_ADAPTER,
    CMD_CHECK_TOKEN,
    CMD_TOGGLE_ENABLED,
    CMD_SET_ASIDE,
    CMD_REQUEUE,
)


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Status(_Payload):
    """What the status bar shows: ``crlhf/status`` answers it, ``crlhf/statusChanged`` pushes it."""

    model: str | None = None
    modelLoading: bool = False  # the model is being loaded: nothing to complete with yet
    adapterVersion: str | None = None  # None: the base model
    adapterPublished: bool | None = None  # false: the store has none yet; None: not asked yet
    outboxPending: int = 0  # completions, events and ratings not yet stored
    outboxSetAside: int = 0  # rows the store rejected as rows: crlhf.requeue sends them again
    storeReachable: bool | None = None  # None: not known yet
    storeProblem: str | None = None  # why the store cannot take rows now ("token refused …")
    tokenRefused: bool = False  # the store answered 401 or 403: the token, not the network
    enabled: bool = True
    generating: bool = False  # a completion request is waiting for the model
    lastLatencyMs: int | None = None  # ms from the last suggestion's request to its text
    suggested: int = 0  # suggestions put on screen since the server started
    accepted: int = 0  # of them, accepted whole
    partlyAccepted: int = 0  # typed or accepted in part, then left (crlhf_lsp.outcome)
    dismissed: int = 0  # left with none of it taken


class CompletionStats(_Payload):
    """How completion requests were answered since the server started (benches, tests)."""

    requests: int = 0  # inline completion requests at a readable position
    typedThrough: int = 0  # answered with the rest of the suggestion on screen
    cacheHits: int = 0  # answered from a suggestion kept for the text around the cursor
    superseded: int = 0  # a newer keystroke's request came during the debounce: nothing
    modelCalls: int = 0  # generations started on the model for a request
    speculative: int = 0  # generations started ahead, for after an accept (kept in the cache)
    widened: int = 0  # whole prompts read at a pause after a short one answered
    warmed: int = 0  # prompts read into the KV cache when a file was opened or saved
    cached: int = 0  # suggestions kept now
    debounceMs: int = 0  # the debounce delay now (adapted to accepts and dismissals)


class AdapterChanged(_Payload):
    """Sent once an adapter was hot-swapped in."""

    version: str | None
    previous: str | None
    seconds: float


class AdapterCheck(_Payload):
    """The answer of ``crlhf.checkAdapter``: what the check did, said for the user."""

    version: str | None  # the adapter in use after the check; None: the base model
    swapped: bool
    outcome: str  # loaded | current | none | refused | unreachable | no-store
    latest: str | None = None  # the registry's latest version, when the store answered
    message: str = ""  # one line: "adapter v4 loaded", "already on v3", "v5 refused: …"


class TokenCheck(_Payload):
    """The answer of ``crlhf.checkToken``: whom the store knows the token as."""

    signedIn: bool
    annotator: str | None = None  # the store's name for the token's annotator
    refused: bool = False  # the store answered 401 or 403: the token, not the network
    message: str  # one line: "signed in as alice", "token refused (401) …", "store unreachable …"


class SetAsideRow(_Payload):
    """One row of ``crlhf.setAside``: a completion, event or rating the store rejected."""

    kind: str  # completion | event | rating
    key: str  # its id (completion) or event_id: what crlhf.requeue takes
    reason: str  # the store's answer, status first
    setAsideAt: float  # seconds since the epoch; pruned after 30 days


class Requeued(_Payload):
    """The answer of ``crlhf.requeue``: how many set-aside rows wait to be sent again."""

    requeued: int


class ReviewTaskPayload(_Payload):
    """A review task as the editor gets it from ``crlhf.nextReviewTask``: the store's
    :class:`~crlhf_contract.schemas.ReviewTask` plus the count of its rateable lines, so
    the editor never re-derives line numbering itself."""

    task_id: str
    completion_id: str
    language: str
    prompt: str
    text: str
    completion_lines: int  # len(completion_lines(text)): lines 0 … n-1 can be rated
