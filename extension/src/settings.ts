// What crlhf-lsp is told: its settings (initializationOptions and didChangeConfiguration)
// and the interpreter that runs it.
import * as vscode from "vscode";

/** Keys crlhf-lsp accepts; each is a `crlhf.<key>` setting, except the two secrets. */
export const SERVER_KEYS = [
  "storeUrl",
  "backend",
  "model",
  "openaiUrl",
  "openaiServer",
  "openaiAdapterDir",
  "maxTokens",
  "temperature",
  "seed",
  "outboxPath",
  "adapterPollSeconds",
  "device",
  "excludeGlobs",
  "adapterPublicKey",
  "allowInsecureStore",
  "ringBuffer",
] as const;

/** Settings whose change needs a new server process rather than a notification. */
export const RESTART_KEYS = ["crlhf.pythonPath", "crlhf.serverArgs"];

export const TOKEN_SECRET = "crlhf.storeToken";
/** The OpenAI-compatible server's own key: the store token is never sent to openaiUrl. */
export const OPENAI_KEY_SECRET = "crlhf.openaiApiKey";

export type ServerSettings = Record<string, unknown>;

/** The settings crlhf-lsp receives; empty strings are left out so its own defaults apply. */
export async function serverSettings(secrets: vscode.SecretStorage): Promise<ServerSettings> {
  const config = vscode.workspace.getConfiguration("crlhf");
  const settings: ServerSettings = {};
  for (const key of SERVER_KEYS) {
    const value = config.get<unknown>(key);
    if (value !== undefined && value !== null && value !== "") settings[key] = value;
  }
  settings.enabled = completionsEnabled();
  const token = await secrets.get(TOKEN_SECRET);
  if (token) settings.token = token;
  const openaiApiKey = await secrets.get(OPENAI_KEY_SECRET);
  if (openaiApiKey) settings.openaiApiKey = openaiApiKey;
  return settings;
}

export function serverArgs(): string[] {
  return vscode.workspace.getConfiguration("crlhf").get<string[]>("serverArgs") ?? [
    "-m",
    "crlhf_lsp",
    "--stdio",
  ];
}

export function completionsEnabled(): boolean {
  return vscode.workspace.getConfiguration("crlhf").get<boolean>("enable", true);
}

/** The part of the Python extension's API we use (ms-python.python, "environments"). */
interface PythonApi {
  environments?: {
    getActiveEnvironmentPath(resource?: vscode.Uri): { path: string };
    resolveEnvironment(
      env: { path: string },
    ): Promise<{ executable: { uri?: vscode.Uri } } | undefined>;
  };
}

/** crlhf.pythonPath, else the Python extension's active interpreter, else python3.
 *
 * crlhf.pythonPath is machine-scoped, so a workspace cannot set it. The Python extension's
 * active interpreter can be one the workspace brought (its `.venv`): asked only in a trusted
 * workspace. */
export async function pythonPath(log: vscode.LogOutputChannel): Promise<string> {
  const configured = vscode.workspace.getConfiguration("crlhf").get<string>("pythonPath");
  if (configured) return configured;
  const extension = vscode.extensions.getExtension<PythonApi>("ms-python.python");
  if (extension && !vscode.workspace.isTrusted) {
    log.info("Restricted mode: not running the workspace's interpreter; python3, or set crlhf.pythonPath.");
  } else if (extension) {
    try {
      const api = extension.isActive ? extension.exports : await extension.activate();
      const resource = vscode.workspace.workspaceFolders?.[0]?.uri;
      const active = api.environments?.getActiveEnvironmentPath(resource);
      const env = active && (await api.environments?.resolveEnvironment(active));
      const path = env?.executable.uri?.fsPath;
      if (path) return path;
    } catch (err) {
      log.warn(`Could not ask the Python extension for its interpreter: ${err}`);
    }
  }
  return "python3";
}
