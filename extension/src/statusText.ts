// What the status bar item says, as pure functions of crlhf-lsp's pushed status (no vscode
// import: tests/extension/test_status.py runs them in Node). Icons are codicons that exist:
// there is no `cloud-offline`; an offline store shows `debug-disconnect`, VS Code's own.
import type { Status } from "./protocol";

/** What crlhf-lsp pushed last; {} while it is not known. */
export type ServerStatus = Partial<Status>;

/** The model part: what is happening now, else `model@adapter`. */
function activity(status: ServerStatus): string {
  if (status.modelLoading === undefined) return "$(loading~spin) starting…"; // no status yet
  if (status.modelLoading) return "$(loading~spin) loading model…";
  if (status.generating) return "$(sync~spin) generating…";
  const model = status.model ? String(status.model).split("/").pop() : "?";
  return `${model}@${status.adapterVersion ?? "base"}`;
}

function storeIcon(status: ServerStatus): string {
  if (status.tokenRefused) return "$(key) token refused";
  if (status.storeReachable === true) return "$(cloud)";
  if (status.storeReachable === false) return "$(debug-disconnect) offline";
  return "$(question)";
}

export function statusText(status: ServerStatus, enabled: boolean): string {
  const paused = enabled ? "" : "$(circle-slash) ";
  const pending = status.outboxPending ?? "?";
  const aside = status.outboxSetAside ? ` · ${status.outboxSetAside} set aside` : "";
  return `${paused}crlhf ${activity(status)} · ${pending} to send${aside} · ${storeIcon(status)}`;
}

function adapterLine(status: ServerStatus): string {
  if (status.adapterVersion) return `adapter: ${status.adapterVersion}`;
  if (status.adapterPublished === false) return "adapter: no adapter published yet (using base)";
  return "adapter: base";
}

function storeLine(status: ServerStatus): string {
  const why = status.storeProblem ? ` (${status.storeProblem})` : "";
  if (status.tokenRefused) return `store: token refused${why}; 'crlhf: Set store token' to fix it`;
  if (status.storeReachable === true) return "store: reachable";
  if (status.storeReachable === false) return `store: unreachable${why}`;
  return "store: unknown";
}

function completionLine(status: ServerStatus): string {
  const last = status.lastLatencyMs != null ? `last completion: ${status.lastLatencyMs} ms` : "no completion yet";
  return status.generating ? `generating… (${last})` : last;
}

/** What became of the suggestions since crlhf-lsp started (its crlhf_lsp.outcome). */
function outcomeLine(status: ServerStatus): string {
  const shown = status.suggested ?? 0;
  if (!shown) return "suggestions: none yet";
  const taken = (status.accepted ?? 0) + (status.partlyAccepted ?? 0);
  const share = Math.round((100 * taken) / shown);
  return (
    `suggestions: ${shown} shown · ${status.accepted ?? 0} accepted · ` +
    `${status.partlyAccepted ?? 0} in part · ${status.dismissed ?? 0} dismissed (${share}% taken)`
  );
}

/** The tooltip's paragraphs (Markdown). */
export function statusTooltip(status: ServerStatus, enabled: boolean): string {
  return [
    `**crlhf** — completions ${enabled ? "on" : "off"}`,
    `model: ${status.modelLoading ? "loading…" : (status.model ?? "?")}`,
    adapterLine(status),
    completionLine(status),
    outcomeLine(status),
    `to send: ${status.outboxPending ?? "?"} (completions, events and ratings in the outbox)`,
    `set aside: ${status.outboxSetAside ?? 0} (rows the store refused as rows; 'crlhf: Send set-aside rows again' re-queues them)`,
    storeLine(status),
    "",
    "Click for commands.",
  ].join("\n\n");
}
