// Generated from crlhf_contract.protocol (server/crlhf_contract/protocol.py) by
// extension/scripts/gen_protocol.py: do not edit. Regenerate with
//   .venv/bin/python extension/scripts/gen_protocol.py
// (tests/extension/test_protocol.py fails while this file is out of date.)

// LSP methods (requests and notifications) of crlhf-lsp.
export const M_ADAPTER_CHANGED = "crlhf/adapterChanged";
export const M_COMPLETION_STATS = "crlhf/completionStats";
export const M_DID_PARTIALLY_ACCEPT = "crlhf/didPartiallyAcceptCompletion";
export const M_DID_SHOW = "crlhf/didShowCompletion";
export const M_STATUS = "crlhf/status";
export const M_STATUS_CHANGED = "crlhf/statusChanged";

// workspace/executeCommand commands of crlhf-lsp.
export const CMD_ACCEPTED = "crlhf.accepted";
export const CMD_CHECK_ADAPTER = "crlhf.checkAdapter";
export const CMD_CHECK_TOKEN = "crlhf.checkToken";
export const CMD_NEXT_REVIEW_TASK = "crlhf.nextReviewTask";
export const CMD_RATE = "crlhf.rate";
export const CMD_REQUEUE = "crlhf.requeue";
export const CMD_SET_ASIDE = "crlhf.setAside";
export const CMD_TOGGLE_ENABLED = "crlhf.toggleEnabled";

/** Sent once an adapter was hot-swapped in. */
export interface AdapterChanged {
  version: string | null;
  previous: string | null;
  seconds: number;
}

/** The answer of `crlhf.checkAdapter`: what the check did, said for the user. */
export interface AdapterCheck {
  /** the adapter in use after the check; null: the base model */
  version: string | null;
  swapped: boolean;
  /** loaded | current | none | refused | unreachable | no-store */
  outcome: string;
  /** the registry's latest version, when the store answered */
  latest: string | null;
  /** one line: "adapter v4 loaded", "already on v3", "v5 refused: …" */
  message: string;
}

/** How completion requests were answered since the server started (benches, tests). */
export interface CompletionStats {
  /** inline completion requests at a readable position */
  requests: number;
  /** answered with the rest of the suggestion on screen */
  typedThrough: number;
  /** answered from a suggestion kept for the text around the cursor */
  cacheHits: number;
  /** a newer keystroke's request came during the debounce: nothing */
  superseded: number;
  /** generations started on the model for a request */
  modelCalls: number;
  /** generations started ahead, for after an accept (kept in the cache) */
  speculative: number;
  /** whole prompts read at a pause after a short one answered */
  widened: number;
  /** prompts read into the KV cache when a file was opened or saved */
  warmed: number;
  /** suggestions kept now */
  cached: number;
  /** the debounce delay now (adapted to accepts and dismissals) */
  debounceMs: number;
}

/** The answer of `crlhf.requeue`: how many set-aside rows wait to be sent again. */
export interface Requeued {
  requeued: number;
}

/**
 * A review task as the editor gets it from `crlhf.nextReviewTask`: the store's
 * ReviewTask plus the count of its rateable lines, so
 * the editor never re-derives line numbering itself.
 */
export interface ReviewTaskPayload {
  task_id: string;
  completion_id: string;
  language: string;
  prompt: string;
  text: string;
  /** len(completion_lines(text)): lines 0 … n-1 can be rated */
  completion_lines: number;
}

/** One row of `crlhf.setAside`: a completion, event or rating the store rejected. */
export interface SetAsideRow {
  /** completion | event | rating */
  kind: string;
  /** its id (completion) or event_id: what crlhf.requeue takes */
  key: string;
  /** the store's answer, status first */
  reason: string;
  /** seconds since the epoch; pruned after 30 days */
  setAsideAt: number;
}

/** What the status bar shows: `crlhf/status` answers it, `crlhf/statusChanged` pushes it. */
export interface Status {
  model: string | null;
  /** the model is being loaded: nothing to complete with yet */
  modelLoading: boolean;
  /** null: the base model */
  adapterVersion: string | null;
  /** false: the store has none yet; null: not asked yet */
  adapterPublished: boolean | null;
  /** completions, events and ratings not yet stored */
  outboxPending: number;
  /** rows the store rejected as rows: crlhf.requeue sends them again */
  outboxSetAside: number;
  /** null: not known yet */
  storeReachable: boolean | null;
  /** why the store cannot take rows now ("token refused …") */
  storeProblem: string | null;
  /** the store answered 401 or 403: the token, not the network */
  tokenRefused: boolean;
  enabled: boolean;
  /** a completion request is waiting for the model */
  generating: boolean;
  /** ms from the last suggestion's request to its text */
  lastLatencyMs: number | null;
  /** suggestions put on screen since the server started */
  suggested: number;
  /** of them, accepted whole */
  accepted: number;
  /** typed or accepted in part, then left (crlhf_lsp.outcome) */
  partlyAccepted: number;
  /** left with none of it taken */
  dismissed: number;
}

/** The answer of `crlhf.checkToken`: whom the store knows the token as. */
export interface TokenCheck {
  signedIn: boolean;
  /** the store's name for the token's annotator */
  annotator: string | null;
  /** the store answered 401 or 403: the token, not the network */
  refused: boolean;
  /** one line: "signed in as alice", "token refused (401) …", "store unreachable …" */
  message: string;
}
