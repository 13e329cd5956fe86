// The review queue: a review task fetched through crlhf-lsp opens as a read-only virtual
// document titled "Review task N (language)" (the end of its prompt, then the completion);
// the completion's lines are rated with the same quick fixes and keys as accepted
// completions. A read-only editor never runs the quick-fix key (Ctrl+.), so there that key
// opens crlhf.rateMenu (package.json). Code lenses offer next / skip.
import * as vscode from "vscode";
import type { LanguageClient } from "vscode-languageclient/node";
import { type Marked, ReviewDecorations } from "./decorations";
import { CMD_NEXT_REVIEW_TASK, CMD_RATE, type ReviewTaskPayload } from "./protocol";
import type { Vote } from "./rating";

export const SCHEME = "crlhf-review";
const PROMPT_LINES = 40;

interface OpenTask extends Marked {
  task: ReviewTaskPayload;
}

export class ReviewQueue implements vscode.TextDocumentContentProvider, vscode.CodeActionProvider, vscode.CodeLensProvider {
  private readonly tasks = new Map<string, OpenTask>();
  private readonly decorations = new ReviewDecorations();
  private opened = 0;

  constructor(private readonly client: () => LanguageClient | undefined) {}

  register(): vscode.Disposable {
    const selector = { scheme: SCHEME };
    return vscode.Disposable.from(
      vscode.workspace.registerTextDocumentContentProvider(SCHEME, this),
      vscode.languages.registerCodeActionsProvider(selector, this, { providedCodeActionKinds: [vscode.CodeActionKind.QuickFix] }),
      vscode.languages.registerCodeLensProvider(selector, this),
      vscode.commands.registerCommand("crlhf.review.rateLines", (uri: string, lines: number[], vote: Vote) => this.rateLines(uri, lines, vote)),
      vscode.window.onDidChangeVisibleTextEditors(() => this.decorateAll()),
      this.decorations,
    );
  }

  provideTextDocumentContent(uri: vscode.Uri): string {
    const open = this.tasks.get(uri.toString());
    if (!open) return "crlhf: this review task is no longer open.";
    const prompt = open.task.prompt.split("\n").slice(-PROMPT_LINES).join("\n");
    return prompt + open.task.text;
  }

  /** Fetches the next task and shows it in place of the current review document. */
  async next(): Promise<boolean> {
    const client = this.client();
    if (!client?.isRunning()) {
      void vscode.window.showWarningMessage("crlhf: crlhf-lsp is not running; see 'crlhf: Show the log'.");
      return false;
    }
    const task = await client.sendRequest<ReviewTaskPayload | null>("workspace/executeCommand", { command: CMD_NEXT_REVIEW_TASK, arguments: [] });
    if (!task?.completion_id) {
      void vscode.window.showInformationMessage("crlhf: the review queue is empty. Thank you!");
      return false;
    }
    // The path is the tab's title; the task id stays in the query (a honeypot looks the same).
    this.opened += 1;
    const path = `/Review task ${this.opened} (${task.language})`;
    const uri = vscode.Uri.from({ scheme: SCHEME, path, query: task.task_id });
    const prompt = task.prompt.split("\n").slice(-PROMPT_LINES);
    const firstLine = prompt.length - 1;
    const lineCount = task.completion_lines;
    this.tasks.set(uri.toString(), { task, firstLine, lineCount, votes: new Map() });
    let document = await vscode.workspace.openTextDocument(uri);
    document = await vscode.languages.setTextDocumentLanguage(document, task.language).then((d) => d, () => document);
    const editor = await vscode.window.showTextDocument(document, { preview: true });
    const first = new vscode.Position(firstLine, 0);
    editor.selection = new vscode.Selection(first, first);
    editor.revealRange(new vscode.Range(first, first), vscode.TextEditorRevealType.InCenter);
    this.decorateAll();
    return true;
  }

  isReview(document: vscode.TextDocument | undefined): boolean {
    return document?.uri.scheme === SCHEME;
  }

  /** Rates the completion lines touched by the active editor's selections. */
  async rateSelection(vote: Vote): Promise<number> {
    const editor = vscode.window.activeTextEditor;
    const open = editor && this.tasks.get(editor.document.uri.toString());
    if (!editor || !open) return 0;
    const lines = editor.selections.flatMap((s) => this.linesIn(open, s.start.line, s.end.line));
    return this.rateLines(editor.document.uri.toString(), [...new Set(lines)], vote);
  }

  private linesIn(open: OpenTask, from: number, to: number): number[] {
    const lines: number[] = [];
    for (let line = Math.max(from, open.firstLine); line <= Math.min(to, open.firstLine + open.lineCount - 1); line++) {
      lines.push(line - open.firstLine);
    }
    return lines;
  }

  private async rate(uri: string, line: number, vote: Vote): Promise<void> {
    const open = this.tasks.get(uri);
    const client = this.client();
    if (!open || !client?.isRunning()) return;
    await client.sendRequest("workspace/executeCommand", { command: CMD_RATE, arguments: [open.task.completion_id, line, vote] });
    open.votes.set(line, vote);
    this.decorateAll();
  }

  provideCodeActions(document: vscode.TextDocument, range: vscode.Range): vscode.CodeAction[] {
    const open = this.tasks.get(document.uri.toString());
    if (!open) return [];
    const lines = this.linesIn(open, range.start.line, range.end.line);
    if (!lines.length) return [];
    const uri = document.uri.toString();
    return ([1, -1] as Vote[]).map((vote) => {
      const title = vote === 1 ? "👍 crlhf: line is correct" : "👎 crlhf: line is wrong";
      const action = new vscode.CodeAction(lines.length > 1 ? `${title} (${lines.length} lines)` : title, vscode.CodeActionKind.QuickFix);
      // One command per action: rate every selected line in turn.
      action.command = { title, command: "crlhf.review.rateLines", arguments: [uri, lines, vote] };
      return action;
    });
  }

  async rateLines(uri: string, lines: number[], vote: Vote): Promise<number> {
    for (const line of lines) await this.rate(uri, line, vote);
    vscode.window.setStatusBarMessage(`crlhf: rated ${lines.length} review line(s) ${vote === 1 ? "👍" : "👎"}`, 4000);
    return lines.length;
  }

  provideCodeLenses(document: vscode.TextDocument): vscode.CodeLens[] {
    const open = this.tasks.get(document.uri.toString());
    if (!open) return [];
    const at = new vscode.Range(open.firstLine, 0, open.firstLine, 0);
    return [
      new vscode.CodeLens(at, { title: "crlhf review: rate the highlighted lines 👍/👎", command: "" }),
      new vscode.CodeLens(at, { title: "Next task", command: "crlhf.openReviewQueue" }),
      new vscode.CodeLens(at, { title: "Skip", command: "crlhf.skipReviewTask" }),
    ];
  }

  private decorateAll(): void {
    for (const editor of vscode.window.visibleTextEditors) {
      const open = this.tasks.get(editor.document.uri.toString());
      if (open) this.decorations.apply(editor, open);
    }
  }
}
