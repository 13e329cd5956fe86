// crlhf for VS Code: a thin client of crlhf-lsp. activate() starts the server and wires
// commands, the status bar and the review queue; the intelligence lives in the server.
import * as vscode from "vscode";
import type { LanguageClient } from "vscode-languageclient/node";
import { type AdapterChanged, type AdapterCheck, CMD_CHECK_ADAPTER, CMD_REQUEUE, M_ADAPTER_CHANGED, type Requeued } from "./protocol";
import { pickVote, rateSelection, type Vote } from "./rating";
import { ReviewQueue } from "./review";
import { ServerStartError, startServer } from "./server";
import { OPENAI_KEY_SECRET, RESTART_KEYS, serverSettings, TOKEN_SECRET } from "./settings";
import { StatusBar } from "./status";
import { setOpenaiApiKey, setStoreToken } from "./token";

let client: LanguageClient | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const log = vscode.window.createOutputChannel("crlhf", { log: true });
  const status = new StatusBar(log);
  const review = new ReviewQueue(() => client);
  context.subscriptions.push(log, status, review.register());

  const restart = async (): Promise<void> => {
    const old = client;
    client = undefined;
    await old?.stop().catch((err) => log.warn(`Stopping crlhf-lsp: ${err}`));
    try {
      client = await startServer(log, await serverSettings(context.secrets));
      client.onNotification(M_ADAPTER_CHANGED, (params: AdapterChanged | null) => {
        log.info(`Adapter changed: ${JSON.stringify(params)}`);
        vscode.window.setStatusBarMessage(`crlhf: now using adapter ${params?.version ?? "(base model)"}`, 6000);
        void status.refresh();
      });
      status.setClient(client);
    } catch (err) {
      const message = err instanceof ServerStartError ? err.message : `crlhf: crlhf-lsp failed to start: ${err}`;
      log.error(message);
      status.setClient(undefined, message);
      // Not awaited: activation must not wait for the user to read the message.
      void vscode.window.showErrorMessage(message, "Open the log", "Set Python path", "Retry").then((choice) => {
        if (choice === "Open the log") log.show();
        if (choice === "Set Python path") void vscode.commands.executeCommand("workbench.action.openSettings", "crlhf.pythonPath");
        if (choice === "Retry") void restart();
      });
    }
  };
  const pushSettings = async (): Promise<void> => {
    if (!client?.isRunning()) return restart();
    await client.sendNotification("workspace/didChangeConfiguration", { settings: await serverSettings(context.secrets) });
    void status.refresh();
  };
  const rate = (vote: Vote) => () =>
    review.isReview(vscode.window.activeTextEditor?.document) ? review.rateSelection(vote) : rateSelection(client, vote);
  const command = (id: string, run: (...args: never[]) => unknown) =>
    context.subscriptions.push(vscode.commands.registerCommand(id, run));

  command("crlhf.rateUp", rate(1));
  command("crlhf.rateDown", rate(-1));
  command("crlhf.openReviewQueue", () => review.next());
  command("crlhf.skipReviewTask", async () => {
    if (review.isReview(vscode.window.activeTextEditor?.document)) await vscode.commands.executeCommand("workbench.action.closeActiveEditor");
    return review.next();
  });
  command("crlhf.rateMenu", async () => {
    const vote = await pickVote();
    if (vote) await rate(vote)();
  });
  command("crlhf.checkForAdapter", async () => {
    if (!client?.isRunning()) return void vscode.window.showWarningMessage("crlhf: crlhf-lsp is not running; see 'crlhf: Show the log'.");
    const result = await client.sendRequest<AdapterCheck>("workspace/executeCommand", { command: CMD_CHECK_ADAPTER, arguments: [] });
    log.info(`Adapter check: ${JSON.stringify(result)}`);
    // What happened, in words: "adapter v4 loaded", "already on v3", "v5 refused: …".
    if (["refused", "unavailable", "unreachable", "no-store"].includes(result.outcome)) void vscode.window.showWarningMessage(`crlhf: ${result.message}`);
    else void vscode.window.showInformationMessage(`crlhf: ${result.message}`);
    void status.refresh();
  });
  command("crlhf.toggleCompletions", async () => {
    const config = vscode.workspace.getConfiguration("crlhf");
    await config.update("enable", !config.get<boolean>("enable", true), vscode.ConfigurationTarget.Global);
  });
  command("crlhf.setToken", () => setStoreToken(context.secrets, client));
  command("crlhf.setOpenaiApiKey", () => setOpenaiApiKey(context.secrets));
  command("crlhf.sendSetAsideAgain", async () => {
    if (!client?.isRunning()) return;
    const { requeued } = await client.sendRequest<Requeued>("workspace/executeCommand", { command: CMD_REQUEUE, arguments: [] });
    vscode.window.setStatusBarMessage(`crlhf: ${requeued} set-aside row(s) queued again`, 4000);
  });
  command("crlhf.restartServer", restart);
  command("crlhf.showLog", () => log.show());
  command("crlhf.menu", () => StatusBar.showMenu());

  context.subscriptions.push(
    context.secrets.onDidChange((e) => ([TOKEN_SECRET, OPENAI_KEY_SECRET].includes(e.key) ? pushSettings() : undefined)),
    // Restricted Mode started python3, not the workspace's interpreter: trusted now, it may.
    vscode.workspace.onDidGrantWorkspaceTrust(() => void restart()),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (!e.affectsConfiguration("crlhf")) return;
      if (RESTART_KEYS.some((key) => e.affectsConfiguration(key))) void restart();
      else void pushSettings();
    }),
  );
  // Not awaited: commands run as soon as activation ends, even while the server starts.
  void restart();
}

export async function deactivate(): Promise<void> {
  await client?.stop();
}
