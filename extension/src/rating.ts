// Rating the current line(s) from a key: ask crlhf-lsp for its code actions on the selection
// (it knows which lines came from which accepted completion, through later edits) and run
// the 👍 or 👎 ones. The lightbulb shows the same actions; this is the one-keystroke path.
import * as vscode from "vscode";
import type { LanguageClient } from "vscode-languageclient/node";
import type { Command, CodeAction } from "vscode-languageclient/node";
import { CMD_RATE } from "./protocol";

export type Vote = 1 | -1;

/**
 * The (completion id, line, vote) triples of the `crlhf.rate` commands in a code action
 * reply that carry this vote. crlhf-lsp puts every tracked line of the range in one
 * command per vote, the vote last in each triple: the vote is read there, never from the
 * action's title.
 */
export function rateTriples(reply: Array<Command | CodeAction> | null, vote: Vote): unknown[] {
  const triples: unknown[] = [];
  for (const item of reply ?? []) {
    const command = "command" in item && typeof item.command === "object" ? item.command : (item as Command);
    if (command?.command !== CMD_RATE) continue;
    const args = command.arguments ?? [];
    if (args.length >= 3 && args.length % 3 === 0 && args[args.length - 1] === vote) triples.push(...args);
  }
  return triples;
}

export async function rateSelection(client: LanguageClient | undefined, vote: Vote): Promise<number> {
  const editor = vscode.window.activeTextEditor;
  if (!editor) return 0;
  if (!client?.isRunning()) {
    void vscode.window.showWarningMessage("crlhf: crlhf-lsp is not running; see 'crlhf: Show the log'.");
    return 0;
  }
  const document = editor.document;
  const triples: unknown[] = [];
  for (const selection of editor.selections) {
    // Whole lines: a cursor rates its line, a selection every line it touches.
    const range = new vscode.Range(selection.start.line, 0, selection.end.line, document.lineAt(selection.end.line).text.length);
    const reply = await client.sendRequest<Array<Command | CodeAction> | null>("textDocument/codeAction", {
      textDocument: client.code2ProtocolConverter.asTextDocumentIdentifier(document),
      range: client.code2ProtocolConverter.asRange(range),
      context: { diagnostics: [], only: ["quickfix"], triggerKind: 1 },
    });
    triples.push(...rateTriples(reply, vote));
  }
  // One crlhf.rate call with every line of every selection.
  if (triples.length) await client.sendRequest("workspace/executeCommand", { command: CMD_RATE, arguments: triples });
  const rated = triples.length / 3;
  const mark = vote === 1 ? "👍" : "👎";
  if (rated) vscode.window.setStatusBarMessage(`crlhf: rated ${rated} line(s) ${mark}`, 4000);
  else void vscode.window.showInformationMessage("crlhf: no line of an accepted completion here to rate.");
  return rated;
}

const VOTES: Array<vscode.QuickPickItem & { vote: Vote }> = [
  { label: "👍 crlhf: line is correct", vote: 1 },
  { label: "👎 crlhf: line is wrong", vote: -1 },
];

/** 👍 or 👎 from a quick pick: the keyboard's way where the quick-fix key does nothing. */
export async function pickVote(): Promise<Vote | undefined> {
  const pick = await vscode.window.showQuickPick(VOTES, { title: "crlhf: rate the selected line(s)" });
  return pick?.vote;
}
