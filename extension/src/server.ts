// Starting crlhf-lsp: check the interpreter first so that a failure names its fix,
// then run the server over stdio with a languageclient.
import { execFile } from "node:child_process";
import { homedir } from "node:os";
import * as vscode from "vscode";
import {
  CloseAction,
  ErrorAction,
  LanguageClient,
  type LanguageClientOptions,
  RevealOutputChannelOn,
  type ServerOptions,
} from "vscode-languageclient/node";
import { completionsEnabled, pythonPath, serverArgs, type ServerSettings } from "./settings";

/** Why crlhf-lsp cannot start, worded as what the user should do. */
export class ServerStartError extends Error {}

/**
 * How Python is started: outside the workspace (the home folder unless the caller names
 * one, e.g. the extension's storage folder), with PYTHONSAFEPATH, so
 * that `-m`/`-c` put no folder on sys.path. Left to itself the language client starts the
 * server in the workspace folder, and a cloned repository's `crlhf_lsp/` or `httpx.py`
 * would be imported in place of the real one: code the repository chose, run on open.
 */
export function processOptions(workDir: string = homedir()): { cwd: string; env: NodeJS.ProcessEnv } {
  return { cwd: workDir, env: { ...process.env, PYTHONSAFEPATH: "1" } };
}

/** Runs `python -c "import crlhf_lsp"`; throws a ServerStartError naming the fix. */
export async function checkInterpreter(python: string, workDir: string = homedir()): Promise<void> {
  const stderr = await new Promise<string | null>((resolve) => {
    const options = { timeout: 60_000, ...processOptions(workDir) };
    execFile(python, ["-c", "import crlhf_lsp"], options, (err, _out, errText) => {
      if (!err) resolve(null);
      else if ((err as NodeJS.ErrnoException).code === "ENOENT") resolve("ENOENT");
      else resolve(errText || String(err));
    });
  });
  if (stderr === "ENOENT") {
    throw new ServerStartError(
      `crlhf: the Python interpreter "${python}" was not found. ` +
        "Set crlhf.pythonPath to a Python that has crlhf installed.",
    );
  }
  if (stderr !== null) {
    throw new ServerStartError(
      `crlhf: crlhf-lsp is not installed for "${python}". ` +
        `Run: ${python} -m pip install 'crlhf[lsp]', or set crlhf.pythonPath. ` +
        `(${stderr.trim().split("\n").pop()})`,
    );
  }
}

export async function startServer(
  log: vscode.LogOutputChannel,
  settings: ServerSettings,
  workDir: string = homedir(),
): Promise<LanguageClient> {
  const python = await pythonPath(log);
  log.info(`Starting crlhf-lsp: ${python} ${serverArgs().join(" ")} (in ${workDir})`);
  await checkInterpreter(python, workDir);
  const serverOptions: ServerOptions = { command: python, args: serverArgs(), options: processOptions(workDir) };
  let crashes = 0;
  const clientOptions: LanguageClientOptions = {
    documentSelector: [{ scheme: "file" }, { scheme: "untitled" }],
    initializationOptions: settings,
    outputChannel: log,
    // Failed requests go to the log, not to a pop-up per keystroke.
    revealOutputChannelOn: RevealOutputChannelOn.Never,
    middleware: {
      // Off means off at once, before the server has heard of the setting.
      provideInlineCompletionItems: (document, position, context, token, next) =>
        completionsEnabled() ? next(document, position, context, token) : null,
    },
    errorHandler: {
      error: (error, _message, count) => {
        log.error(`crlhf-lsp connection error (${count}): ${error.message}`);
        return { action: (count ?? 0) <= 3 ? ErrorAction.Continue : ErrorAction.Shutdown };
      },
      closed: () => {
        crashes += 1;
        log.error(`crlhf-lsp exited (${crashes} time(s)).`);
        if (crashes <= 4) return { action: CloseAction.Restart };
        return {
          action: CloseAction.DoNotRestart,
          message: "crlhf-lsp keeps exiting; see 'crlhf: Show the log' for its last words.",
        };
      },
    },
  };
  const client = new LanguageClient("crlhf", "crlhf-lsp", serverOptions, clientOptions);
  try {
    await client.start();
  } catch (err) {
    throw new ServerStartError(`crlhf: crlhf-lsp did not start (${python}): ${err}`);
  }
  return client;
}
