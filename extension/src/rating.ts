// Rating the current line(s) from a key: ask crlhf-lsp for its code actions on the selection
// (it knows which lines came from which accepted completion, through later edits) and run
// the 👍 or 👎 ones. The lightbulb shows the same actions; this is the one-keystroke path.
import * as vscode from "vscode";
import type { LanguageClient } from "vscode-languageclient/node";
import type { Command, CodeAction } from "vscode-languageclient/node";
import { CMD_RATE } from "./protocol";

export type Vote = 1 | -1;

/** The `crlhf.rate` commands among a code action reply that carry this vote. */
export function rateCommands(reply: Array<Command | CodeAction> | null, vote: Vote): Command[] {
  const mark = vote === 1 ? "👍" : "👎";
  const commands: Command[] = [];
  for (const item of reply ?? []) {
    const command = "command" in item && typeof item.command === "object" ? item.command : (item as Command);
    if (command?.command !== CMD_RATE) continue;
    // Arguments are (completion id, line, vote) triples, one per line: the vote comes last.
    const args = command.arguments ?? [];
    const last = args[args.length - 1];
    const matches = last === 1 || last === -1 ? last === vote : item.title.includes(mark);
    if (matches) commands.push(command);
  }
  return commands;
}

export async function rateSelection(client: LanguageClient | undefined, vote: Vote): Promise<number> {
  const editor = vscode.window.activeTextEditor;
  if (!editor) return 0;
  if (!client?.isRunning()) {
    void vscode.window.showWarningMessage("crlhf: crlhf-lsp is not running; see 'crlhf: Show the log'.");
    return 0;
  }
  const document = editor.document;
  let rated = 0;
  for (const selection of editor.selections) {
    // Whole lines: a cursor rates its line, a selection every line it touches.
    const range = new vscode.Range(selection.start.line, 0, selection.end.line, document.lineAt(selection.end.line).text.length);
    const reply = await client.sendRequest<Array<Command | CodeAction> | null>("textDocument/codeAction", {
      textDocument: client.code2ProtocolConverter.asTextDocumentIdentifier(document),
      range: client.code2ProtocolConverter.asRange(range),
      context: { diagnostics: [], only: ["quickfix"], triggerKind: 1 },
    });
    for (const command of rateCommands(reply, vote)) {
      await client.sendRequest("workspace/executeCommand", { command: command.command, arguments: command.arguments });
      rated += 1;
    }
  }
  const mark = vote === 1 ? "👍" : "👎";
  if (rated) vscode.window.setStatusBarMessage(`crlhf: rated ${rated} line(s) ${mark}`, 4000);
  else void vscode.window.showInformationMessage("crlhf: no line of an accepted completion here to rate.");
  return rated;
}
