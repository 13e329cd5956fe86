// The secrets crlhf-lsp is given, set from the palette: the store token, checked against the
// store's /v1/me through crlhf-lsp as it is set ("signed in as alice"), and the
// OpenAI-compatible server's key. A refused token is kept (the store's URL may be what is
// wrong, or the token not created yet), with a warning that nothing is sent until it works.
import * as vscode from "vscode";
import type { LanguageClient } from "vscode-languageclient/node";
import { CMD_CHECK_TOKEN, type TokenCheck } from "./protocol";
import { OPENAI_KEY_SECRET, TOKEN_SECRET } from "./settings";

async function askSecret(title: string, prompt: string): Promise<string | undefined> {
  const value = await vscode.window.showInputBox({ title, prompt, password: true, ignoreFocusOut: true });
  return value?.trim();
}

export async function setStoreToken(secrets: vscode.SecretStorage, client: LanguageClient | undefined): Promise<void> {
  const token = await askSecret(
    "crlhf: store token",
    "The token `crlhf-store create-annotator NAME` printed. Kept in VS Code's secret storage.",
  );
  if (token === undefined) return;
  if (!token) {
    await secrets.delete(TOKEN_SECRET);
    vscode.window.setStatusBarMessage("crlhf: store token removed", 4000);
    return;
  }
  await secrets.store(TOKEN_SECRET, token);
  await tellWhoItIs(client, token);
}

/** Asks crlhf-lsp whom the store knows `token` as, and says so. */
async function tellWhoItIs(client: LanguageClient | undefined, token: string): Promise<void> {
  if (!client?.isRunning()) {
    vscode.window.setStatusBarMessage("crlhf: store token saved (not checked: crlhf-lsp is not running)", 6000);
    return;
  }
  let check: TokenCheck;
  try {
    check = await client.sendRequest<TokenCheck>("workspace/executeCommand", { command: CMD_CHECK_TOKEN, arguments: [token] });
  } catch (err) {
    void vscode.window.showWarningMessage(`crlhf: store token saved, not checked: ${err}`);
    return;
  }
  if (check.signedIn) {
    void vscode.window.showInformationMessage(`crlhf: ${check.message}`);
  } else if (check.refused) {
    const again = "Enter another token";
    const message = `crlhf: ${check.message}. The token is kept, but no rating reaches the store until it accepts one.`;
    void vscode.window.showWarningMessage(message, again).then((choice) => {
      if (choice === again) void vscode.commands.executeCommand("crlhf.setToken");
    });
  } else {
    void vscode.window.showWarningMessage(`crlhf: store token saved; ${check.message}`);
  }
}

export async function setOpenaiApiKey(secrets: vscode.SecretStorage): Promise<void> {
  const key = await askSecret(
    "crlhf: OpenAI-compatible API key",
    "The bearer crlhf-lsp sends to crlhf.openaiUrl (openai backend). Kept in VS Code's secret storage; empty removes it.",
  );
  if (key === undefined) return;
  if (key) await secrets.store(OPENAI_KEY_SECRET, key);
  else await secrets.delete(OPENAI_KEY_SECRET);
  vscode.window.setStatusBarMessage("crlhf: API key saved", 4000);
}
