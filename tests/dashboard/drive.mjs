// Drives the crlhf dashboard in Debian's chromium (playwright-core): logs in with an admin
// token, opens every page, checks each chart drew (an <svg class="chart"> with marks and a
// non-zero size), reads the retention page's share retained per adapter version, sorts the
// annotators table by a click, publishes an adapter through the
// confirmation page, and checks the XSS probe annotator renders as text; on the agreement
// page mints the most disputed line into a honeypot with one click and opens a disputed
// line's completion; logs an annotator in
// and checks they land on their own page and are refused an admin one. A screenshot per
// step into ARTIFACTS.
// Input (environment): URL, TOKEN, ARTIFACTS, PLAYWRIGHT (module path), XSS (the probe name),
// VERSION (a candidate adapter to publish), ANNOTATOR_TOKEN (an annotator's own token).
// Output: one JSON line per step on stdout ({"step", "ok", ...}); exit code 0 when all passed.
import { createRequire } from "node:module";
import { join } from "node:path";

const env = (name) => {
  if (!process.env[name]) throw new Error(`${name} is not set`);
  return process.env[name];
};
const require = createRequire(import.meta.url);
const { chromium } = require(env("PLAYWRIGHT"));
const url = env("URL");
const token = env("TOKEN");
const artifacts = env("ARTIFACTS");
const xss = env("XSS");
const version = env("VERSION");
const annotatorToken = env("ANNOTATOR_TOKEN");
let failures = 0;
const report = (step, ok, extra = {}) => {
  if (!ok) failures += 1;
  console.log(JSON.stringify({ step, ok, ...extra }));
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const context = await browser.newContext({ viewport: { width: 1360, height: 900 } });
const page = await context.newPage();
page.setDefaultTimeout(30_000);
const dialogs = [];
page.on("dialog", async (d) => { dialogs.push(d.message()); await d.dismiss(); });
const consoleErrors = [];
page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
page.on("response", (r) => { if (r.status() >= 400) consoleErrors.push(`${r.status()} ${r.url()}`); });
const shot = (name) => page.screenshot({ path: join(artifacts, `dashboard-${name}.png`), fullPage: true });

/** Every chart on the page: its name, mark count and drawn size. */
const charts = () => page.$$eval("svg.chart", (svgs) => svgs.map((svg) => {
  const box = svg.getBoundingClientRect();
  const marks = svg.querySelectorAll("rect:not(.frame), circle, polyline").length;
  return { name: svg.dataset.chart, marks, width: box.width, height: box.height };
}));

async function step(name, fn) {
  try {
    const extra = (await fn()) ?? {};
    report(name, extra.ok ?? true, extra);
  } catch (err) {
    report(name, false, { error: String(err).slice(0, 500) });
    await shot(`failed-${name}`).catch(() => {});
  }
}

try {
  await step("login", async () => {
    await page.goto(`${url}/dashboard`);
    await page.waitForURL(/\/dashboard\/login$/);
    await shot("login");
    await page.fill("#token", token);
    await Promise.all([page.waitForURL(/\/dashboard$/), page.click("#login")]);
    const cookie = (await context.cookies()).find((c) => c.name === "crlhf_dashboard");
    const ok = !!cookie && cookie.httpOnly && cookie.sameSite === "Strict" &&
      !cookie.value.includes(token) && !page.url().includes(token);
    return { ok, httpOnly: cookie?.httpOnly, sameSite: cookie?.sameSite, url: page.url() };
  });

  const pages = {
    overview: ["/dashboard", 3],
    annotators: ["/dashboard/annotators", 2],
    agreement: ["/dashboard/agreement", 1],
    rewards: ["/dashboard/rewards", 3],
    adapters: ["/dashboard/adapters", 1],
    honeypots: ["/dashboard/honeypots", 1],
    retention: ["/dashboard/retention", 3],
  };
  for (const [name, [path, expected]] of Object.entries(pages)) {
    await step(`page-${name}`, async () => {
      await page.goto(`${url}${path}`);
      await page.locator("svg.chart").first().waitFor();
      const drawn = await charts();
      await shot(name);
      const ok = drawn.length >= expected &&
        drawn.every((c) => c.marks > 0 && c.width > 0 && c.height > 0);
      return { ok, charts: drawn };
    });
  }

  await step("retention-per-adapter", async () => {
    await page.goto(`${url}/dashboard/retention`);
    const rows = await page.$$eval("#retention tbody tr", (trs) =>
      trs.map((tr) => [...tr.querySelectorAll("td")].map((td) => td.textContent.trim())));
    const versions = rows.map((r) => r[0]);
    const shares = rows.map((r) => parseInt(r[5], 10));
    const ok = versions.join() === "v1,v2" && shares.every((p) => p > 0 && p < 100);
    return { ok, rows };
  });

  await step("sort-annotators", async () => {
    await page.goto(`${url}/dashboard/annotators`);
    const column = async () => page.$$eval("#annotators tbody tr", (rows) =>
      rows.map((r) => parseFloat(r.children[4].textContent)).filter((v) => !Number.isNaN(v)));
    await Promise.all([
      page.waitForURL(/sort=reliability&order=asc/),
      page.click('a.sort[data-sort="reliability"]'),
    ]);
    const asc = await column();
    await Promise.all([
      page.waitForURL(/sort=reliability&order=desc/),
      page.click('a.sort[data-sort="reliability"]'),
    ]);
    const desc = await column();
    await shot("annotators-sorted");
    const sorted = (xs, cmp) => xs.every((v, i) => i === 0 || cmp(xs[i - 1], v));
    const ok = asc.length > 2 && sorted(asc, (a, b) => a <= b) && sorted(desc, (a, b) => a >= b);
    return { ok, asc, desc };
  });

  await step("xss-probe", async () => {
    await page.goto(`${url}/dashboard/annotators`);
    const names = await page.$$eval("#annotators td.name", (tds) => tds.map((t) => t.textContent));
    const injected = await page.$$eval("img", (imgs) => imgs.length);
    const ok = names.includes(xss) && injected === 0 && dialogs.length === 0;
    return { ok, shownAsText: names.includes(xss), injectedImages: injected, dialogs };
  });

  await step("mint-honeypot", async () => {
    await page.goto(`${url}/dashboard/agreement`);
    const badges = () => page.locator("#disputed .badge").count();
    const before = await badges();
    const code = (await page.locator("#disputed tbody tr").first().locator("code").textContent());
    await Promise.all([
      page.waitForURL(/\/dashboard\/honeypots\/mint$/),
      page.locator("#disputed form.mint").first().locator('button[value="-1"]').click(),
    ]);
    const message = (await page.locator("#mint-message").textContent()).trim();
    const after = await badges();
    await shot("agreement-minted");
    const ok = message.includes("is now honeypot") && message.includes("wrong") && after === before + 1;
    return { ok, message, code, before, after };
  });

  await step("completion-page", async () => {
    await page.goto(`${url}/dashboard/agreement`);
    const link = page.locator("#disputed a.completion").first();
    const href = await link.getAttribute("href");
    await Promise.all([page.waitForURL(/\/dashboard\/completions\//), link.click()]);
    const rows = await page.locator("#lines tbody tr").count();
    const target = href.split("#")[1];
    const shown = await page.locator(`#${target}`).count();
    await shot("completion");
    return { ok: rows === 4 && shown === 1, rows, href };
  });

  await step("annotator-own-page", async () => {
    const own = await browser.newContext({ viewport: { width: 1360, height: 900 } });
    const me = await own.newPage();
    try {
      await me.goto(`${url}/dashboard/login`);
      await me.fill("#token", annotatorToken);
      await Promise.all([me.waitForURL(/\/dashboard\/me$/), me.click("#login")]);
      const ratings = (await me.locator("#my-ratings").textContent()).trim();
      const queue = (await me.locator("#my-queue").textContent()).trim();
      const tabs = await me.$$eval("nav a", (as) => as.map((a) => a.textContent.trim()));
      await me.screenshot({ path: join(artifacts, "dashboard-me.png"), fullPage: true });
      const denied = await me.goto(`${url}/dashboard/annotators`);
      const ok = Number(ratings) > 0 && queue !== "" && denied.status() === 403 &&
        tabs.length === 1;
      return { ok, ratings, queue, tabs, deniedStatus: denied.status() };
    } finally {
      await own.close();
    }
  });

  await step("publish-confirmation", async () => {
    await page.goto(`${url}/dashboard/adapters`);
    const row = page.locator("#adapters tbody tr", { hasText: version });
    await Promise.all([
      page.waitForURL(new RegExp(`/adapters/${version}/publish$`)),
      row.locator('a[data-action="publish"]').click(),
    ]);
    await page.locator("#confirm").waitFor();
    await shot("publish-confirm");
    await Promise.all([page.waitForURL(/\/dashboard\/adapters$/), page.click("#confirm")]);
    const status = (await page.locator("#adapters tbody tr", { hasText: version })
      .locator(".badge").first().textContent()).trim();
    await shot("adapters-published");
    return { ok: status === "published", status };
  });

  report("no-console-errors", consoleErrors.length === 0, { consoleErrors });
} finally {
  await browser.close();
}
process.exit(failures ? 1 : 0);
