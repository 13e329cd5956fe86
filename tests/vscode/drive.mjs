// Drives a real VS Code (code-server) in Debian's chromium through the crlhf scenario:
// set the token ("signed in as alice"), open a Python file, type, see crlhf-lsp's ghost
// text, accept it with Tab, rate an accepted line 👎 through the lightbulb and another 👍
// through the keybinding, take the first words of another suggestion with Ctrl+Right and
// leave the rest, read the status item (and the last latency in its tooltip), open
// its menu, check for an adapter (none published), open a review task and rate it with
// Ctrl+. and the keys, then point crlhf.pythonPath at nothing and expect an actionable
// error. A screenshot per step.
// Input (environment): CS_URL, WORKSPACE, FILE, TOKEN, ARTIFACTS, SETTINGS (user settings.json),
// PLAYWRIGHT (module path).
// Output: one JSON line per step on stdout ({"step", "ok", ...}); exit code 0 when all passed.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { join } from "node:path";

const env = (name) => {
  if (!process.env[name]) throw new Error(`${name} is not set`);
  return process.env[name];
};
const require = createRequire(import.meta.url);
const { chromium } = require(env("PLAYWRIGHT"));
const artifacts = env("ARTIFACTS");
const file = env("FILE");
const slow = Number(process.env.SLOW ?? "1"); // multiplies every wait on a loaded machine
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const report = (step, ok, extra = {}) => console.log(JSON.stringify({ step, ok, ...extra }));

const context = await chromium.launchPersistentContext(join(artifacts, "chromium-profile"), {
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1400, height: 860 },
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const page = context.pages()[0] ?? (await context.newPage());
page.setDefaultTimeout(30_000 * slow);
let shot = 0;
const screenshot = async (name) => {
  shot += 1;
  await page.screenshot({ path: join(artifacts, `${String(shot).padStart(2, "0")}-${name}.png`) });
};

async function palette(command) {
  await page.keyboard.press("Control+Shift+P");
  const input = page.locator(".quick-input-widget input");
  await input.waitFor({ state: "visible" });
  await input.fill(`>${command}`);
  await page.locator(".quick-input-list .monaco-list-row", { hasText: command }).first().waitFor();
  await sleep(300);
  await page.keyboard.press("Enter");
}

async function gotoLine(line) {
  await page.keyboard.press("Control+P");
  const input = page.locator(".quick-input-widget input");
  await input.waitFor({ state: "visible" });
  await input.fill(`:${line}`);
  await sleep(300);
  await page.keyboard.press("Enter");
  await page.locator(".quick-input-widget").waitFor({ state: "hidden" });
  await sleep(300);
}

/** Opens the quick-fix menu (lightbulb) on the cursor's line and picks the item with `text`. */
async function quickFix(text, name) {
  const item = page.locator(".action-widget .monaco-list-row", { hasText: text }).first();
  for (let attempt = 1; attempt <= 5; attempt++) {
    const bulb = page.locator(".lightBulbWidget, .lightbulb-glyph").first();
    if (attempt === 1 && (await bulb.isVisible().catch(() => false))) await bulb.click();
    else await page.keyboard.press("Control+Period");
    if (await item.waitFor({ timeout: 8_000 * slow }).then(() => true, () => false)) {
      await screenshot(name);
      await item.click();
      await page.locator(".action-widget").waitFor({ state: "hidden" }).catch(() => {});
      return true;
    }
    await page.keyboard.press("Escape");
    await sleep(2_000 * slow);
  }
  await screenshot(`${name}-missing`);
  return false;
}

const ghost = page.locator(".ghost-text-decoration, .ghost-text, .ghost-text-decoration-preview").first();
/** Waits for ghost text, re-triggering the inline suggestion (Alt+\) while none appears. */
async function waitForGhostText(deadlineMs) {
  const end = Date.now() + deadlineMs;
  while (Date.now() < end) {
    if (await ghost.waitFor({ timeout: 10_000 * slow }).then(() => true, () => false)) return true;
    await page.keyboard.press("Alt+Backslash");
  }
  return false;
}

let failed = 0;
async function step(name, run) {
  const started = Date.now();
  try {
    const extra = (await run()) ?? {};
    report(name, extra.ok !== false, { ms: Date.now() - started, ...extra });
    if (extra.ok === false) failed += 1;
  } catch (err) {
    failed += 1;
    report(name, false, { ms: Date.now() - started, error: String(err?.stack ?? err) });
    await screenshot(`${name}-error`).catch(() => {});
  }
}

await step("workbench", async () => {
  await page.goto(`${env("CS_URL")}/?folder=${encodeURIComponent(env("WORKSPACE"))}`);
  await page.locator(".explorer-folders-view .monaco-list-row").first().waitFor({ timeout: 120_000 * slow });
  // "crlhf <model>@<adapter>": crlhf-lsp is running and answered crlhf/status.
  await page.locator(".statusbar-item", { hasText: /crlhf \S+@/ }).first().waitFor({ timeout: 180_000 * slow });
  await screenshot("workbench");
});

await step("set-token", async () => {
  await palette("crlhf: Set store token");
  const input = page.locator(".quick-input-widget input");
  await page.locator(".quick-input-widget", { hasText: "secret storage" }).waitFor();
  await input.fill(env("TOKEN"));
  await screenshot("set-token");
  await page.keyboard.press("Enter");
  await page.locator(".quick-input-widget").waitFor({ state: "hidden" });
  // crlhf-lsp asked the store's /v1/me with it: the user is told who they are.
  const toast = page.locator(".notifications-toasts .notification-toast", { hasText: "signed in as" }).first();
  await toast.waitFor({ timeout: 60_000 * slow });
  const signedIn = await toast.innerText();
  await screenshot("signed-in");
  await page.keyboard.press("Escape");
  return { signedIn };
});

let typedLine = 0; // 1-based line of the typed function header
await step("ghost-text", async () => {
  await page.keyboard.press("Control+P");
  await page.locator(".quick-input-widget input").fill(file);
  await page.locator(".quick-input-list .monaco-list-row", { hasText: file }).first().waitFor();
  await page.keyboard.press("Enter");
  await page.locator(".tabs-container .tab.active", { hasText: file }).waitFor();
  await page.locator(".monaco-editor .view-lines").first().click();
  await page.keyboard.press("Control+End");
  typedLine = readFileSync(join(env("WORKSPACE"), file), "utf8").split("\n").length;
  await page.keyboard.type("def add(a, b):", { delay: 60 });
  await page.keyboard.press("Enter");
  const seen = await waitForGhostText(180_000 * slow);
  await screenshot("ghost-text");
  return { ok: seen, ghost: seen ? await ghost.innerText().catch(() => "") : null };
});

let accepted = [];
await step("accept", async () => {
  await page.keyboard.press("Tab");
  await sleep(1_000);
  await page.keyboard.press("Control+S");
  await sleep(1_500);
  const lines = readFileSync(join(env("WORKSPACE"), file), "utf8").split("\n");
  accepted = lines.slice(typedLine).map((text, i) => ({ line: typedLine + 1 + i, text })).filter((l) => l.text.trim());
  await screenshot("accepted");
  return { ok: accepted.length > 0, accepted };
});

await step("rate-down-lightbulb", async () => {
  await gotoLine(accepted[0].line);
  return { ok: await quickFix("line is wrong", "lightbulb-menu"), line: accepted[0].line };
});

await step("rate-up-keybinding", async () => {
  const target = accepted[accepted.length - 1];
  await gotoLine(target.line);
  await page.keyboard.press("Control+Alt+KeyK");
  await page.keyboard.press("Control+Alt+ArrowUp");
  const done = await page.locator(".statusbar-item", { hasText: "rated" }).first()
    .waitFor({ timeout: 20_000 * slow }).then(() => true, () => false);
  await screenshot("rated-up-keybinding");
  return { ok: done, line: target.line };
});

await step("partial-accept", async () => {
  // A new function at the end of the file: its ghost text's first words taken with
  // Ctrl+Right (VS Code's acceptNextWord, which tells an extension nothing), the rest left.
  // A new line further down asks again: crlhf-lsp reads the partial accept off the document.
  await page.keyboard.press("Control+End");
  await page.keyboard.press("Enter");
  await page.keyboard.type("def mul(a, b):", { delay: 60 });
  await page.keyboard.press("Enter");
  if (!(await waitForGhostText(180_000 * slow))) return { ok: false, why: "no ghost text" };
  const suggestion = await ghost.innerText().catch(() => "");
  for (let i = 0; i < 2; i += 1) {
    await page.keyboard.press("Control+ArrowRight");
    await sleep(700);
  }
  await screenshot("partial-accept");
  await page.keyboard.press("Escape");
  await page.keyboard.press("End");
  await page.keyboard.press("Enter");
  await page.keyboard.press("Enter");
  await page.keyboard.type("def div(a, b):", { delay: 60 });
  await page.keyboard.press("Enter");
  const next = await waitForGhostText(180_000 * slow);
  await page.keyboard.press("Escape");
  await page.keyboard.press("Control+S");
  await sleep(1_000);
  const text = readFileSync(join(env("WORKSPACE"), file), "utf8");
  return { ok: next, suggestion, taken: text.slice(text.indexOf("def mul")) };
});

await step("status-bar", async () => {
  await sleep(6_000); // the item refreshes every 5 s: let it show the outbox and store state
  // The test seeded one set-aside row: the item counts it (text checked by the test).
  const item = page.locator(".statusbar-item", { hasText: "set aside" }).first();
  await item.waitFor({ timeout: 20_000 * slow });
  const text = await item.innerText();
  // The tooltip says how long the last completion took (crlhf-lsp pushed it).
  await item.hover();
  const hover = page.locator(".workbench-hover, .monaco-hover", { hasText: "last completion" }).first();
  await hover.waitFor({ timeout: 20_000 * slow });
  const tooltip = await hover.innerText();
  await screenshot("status-bar-tooltip");
  await item.click();
  await page.locator(".quick-input-widget", { hasText: "review queue" }).waitFor();
  await screenshot("status-bar-menu");
  await page.keyboard.press("Escape");
  return { text, tooltip };
});

await step("check-adapter", async () => {
  await palette("crlhf: Check for a new adapter");
  const toast = page.locator(".notifications-toasts .notification-toast", { hasText: "crlhf:" }).first();
  await toast.waitFor({ timeout: 30_000 * slow });
  const message = await toast.innerText();
  await screenshot("check-adapter");
  await page.keyboard.press("Escape");
  return { message };
});

await step("review-task", async () => {
  await palette("crlhf: Open the review queue");
  const tab = page.locator(".tabs-container .tab.active", { hasText: "Review task 1 (python)" });
  await tab.waitFor({ timeout: 60_000 * slow });
  await sleep(1_000);
  await screenshot("review-task");
  // The document is read-only, where the quick-fix key does nothing: Ctrl+. asks 👍/👎.
  await page.keyboard.press("Control+Period");
  const pick = page.locator(".quick-input-widget .monaco-list-row", { hasText: "line is correct" }).first();
  await pick.waitFor({ timeout: 20_000 * slow });
  await screenshot("review-ctrl-period");
  await pick.click();
  await page.locator(".statusbar-item", { hasText: "rated 1 review line(s) 👍" }).first().waitFor({ timeout: 20_000 * slow });
  // The task's second line (document line 3, under a one-line prompt) 👎 through the keys.
  await gotoLine(3);
  await page.keyboard.press("Control+Alt+KeyK");
  await page.keyboard.press("Control+Alt+ArrowDown");
  await page.locator(".statusbar-item", { hasText: "rated 1 review line(s) 👎" }).first().waitFor({ timeout: 20_000 * slow });
  await screenshot("review-rated");
  return { title: await tab.innerText() };
});

await step("server-cannot-start", async () => {
  // A wrong interpreter must be named, with a way to the log: not "client is not running".
  // First let the outbox drain, so that no rating waits in it while the server is gone.
  const drained = page.locator(".statusbar-item", { hasText: "· 0 to send ·" }).first();
  await drained.waitFor({ timeout: 90_000 * slow });
  const setPythonPath = async (value) => {
    await page.keyboard.press("Control+Comma");
    // The search box (a small Monaco editor) has the focus when the settings editor opens.
    await page.locator(".settings-editor .suggest-input-container").first().waitFor();
    await sleep(1_000);
    await page.keyboard.press("Control+A");
    await page.keyboard.type("crlhf.pythonPath", { delay: 20 });
    // code-server is a remote window: a machine-overridable setting lives in the Remote tab.
    await page.locator(".settings-editor .settings-tabs-widget .action-label", { hasText: "Remote" }).first().click();
    const input = page.locator(".settings-editor .setting-item-contents", { hasText: "Python Path" }).locator("input").first();
    await input.waitFor();
    await input.fill(value);
    await input.press("Tab"); // the settings editor saves on change
    await sleep(1_000);
  };
  const original = JSON.parse(readFileSync(env("SETTINGS"), "utf8"))["crlhf.pythonPath"];
  await setPythonPath("/nonexistent/python3");
  const toast = page.locator(".notifications-toasts .notification-toast", { hasText: "was not found" });
  await toast.waitFor({ timeout: 60_000 * slow });
  const buttons = await toast.locator(".monaco-button").allInnerTexts();
  await screenshot("server-cannot-start");
  await setPythonPath(original);
  await page.locator(".statusbar-item", { hasText: /crlhf \S+@/ }).first().waitFor({ timeout: 180_000 * slow });
  return { ok: buttons.some((b) => b.includes("Open the log")), buttons };
});

await context.close();
report("done", failed === 0, { failed });
process.exit(failed ? 1 : 0);
