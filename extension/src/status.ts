// The status bar item: model and adapter (or "loading model…", "generating…"), rows to send
// from the outbox, the store's state; its words are in statusText.ts. A click opens a quick
// pick of the main commands.
import * as vscode from "vscode";
import type { LanguageClient } from "vscode-languageclient/node";
import { M_STATUS, M_STATUS_CHANGED, type Status } from "./protocol";
import { completionsEnabled } from "./settings";
import { type ServerStatus, statusText, statusTooltip } from "./statusText";

const MENU: Array<vscode.QuickPickItem & { command: string }> = [
  { label: "$(thumbsup) Rate current line(s) correct", command: "crlhf.rateUp" },
  { label: "$(thumbsdown) Rate current line(s) wrong", command: "crlhf.rateDown" },
  { label: "$(checklist) Open the review queue", command: "crlhf.openReviewQueue" },
  { label: "$(sync) Check for a new adapter", command: "crlhf.checkForAdapter" },
  { label: "$(circle-slash) Toggle completions", command: "crlhf.toggleCompletions" },
  { label: "$(key) Set store token", command: "crlhf.setToken" },
  { label: "$(redo) Send set-aside rows again", command: "crlhf.sendSetAsideAgain" },
  { label: "$(debug-restart) Restart the language server", command: "crlhf.restartServer" },
  { label: "$(output) Show the log", command: "crlhf.showLog" },
];

export class StatusBar implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem("crlhf.status", vscode.StatusBarAlignment.Right, 100);
  private client: LanguageClient | undefined;
  private problem: string | undefined;

  constructor(private readonly log: vscode.LogOutputChannel) {
    this.item.name = "crlhf";
    this.item.command = "crlhf.menu";
    this.render({});
    this.item.show();
    // No polling: crlhf-lsp pushes crlhf/statusChanged whenever what it shows changes.
  }

  setClient(client: LanguageClient | undefined, problem?: string): void {
    this.client = client;
    this.problem = problem;
    client?.onNotification(M_STATUS_CHANGED, (status: Status) => this.render(status));
    void this.refresh();
  }

  async refresh(): Promise<void> {
    if (!this.client?.isRunning()) return this.render({});
    try {
      this.render(await this.client.sendRequest<Status>(M_STATUS, {}));
    } catch (err) {
      this.log.debug(`crlhf/status failed: ${err}`);
      this.render({});
    }
  }

  private render(status: ServerStatus): void {
    if (!this.client) {
      this.item.text = "$(error) crlhf";
      this.item.tooltip = this.problem ?? "crlhf-lsp is not running";
      this.item.backgroundColor = new vscode.ThemeColor("statusBarItem.errorBackground");
      return;
    }
    this.item.text = statusText(status, completionsEnabled());
    this.item.tooltip = new vscode.MarkdownString(statusTooltip(status, completionsEnabled()));
    this.item.backgroundColor =
      status.storeReachable === false ? new vscode.ThemeColor("statusBarItem.warningBackground") : undefined;
  }

  static async showMenu(): Promise<void> {
    const pick = await vscode.window.showQuickPick(MENU, { title: "crlhf", placeHolder: "crlhf: choose a command" });
    if (pick) await vscode.commands.executeCommand(pick.command);
  }

  dispose(): void {
    this.item.dispose();
  }
}
