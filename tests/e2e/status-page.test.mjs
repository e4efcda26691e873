// The status page in a real browser: Debian's Chromium (headless, driven
// over the DevTools protocol by puppeteer-core) keeps ONE page open on a
// live bootlabd while a QEMU node PXE-boots, and checks the live DOM.
// crates/bootlabd/tests/status_page.rs starts bootlabd, this script and
// QEMU; it is not meant to run alone.
//
//   node status-page.test.mjs --url URL --row ROW_ID --screenshot FILE \
//        [--hostile JSON_ARRAY] [--deadline-s N]
//
// Protocol with the Rust test, one line each on stdout:
//   READY            the page is open, live, and being watched: boot now
//   PASS <json>      what was observed
// Anything else goes to stderr; exit 1 on failure (a screenshot of the
// failing page is still written).
//
// Needs NODE_MODULES_DIR (the directory holding node_modules, from
// tests/e2e/browser-deps.sh). The browser never downloads anything: the
// executable is /usr/bin/chromium, the profile a fresh temporary
// directory, and background networking, component updates and sync are
// off.

import { createRequire } from "node:module";
import { mkdtempSync, rmSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

function args() {
  const out = { deadlineS: 300, hostile: "[]" };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) {
    const [k, v] = [argv[i], argv[i + 1]];
    if (v === undefined) throw new Error(`${k} needs a value`);
    const key = k.replace(/^--/, "").replace(/-(.)/g, (_, c) => c.toUpperCase());
    out[key] = v;
  }
  for (const need of ["url", "row", "screenshot"]) {
    if (!out[need]) throw new Error(`--${need} is required`);
  }
  out.deadlineS = Number(out.deadlineS);
  out.hostile = JSON.parse(out.hostile);
  return out;
}

function fail(message) {
  const e = new Error(message);
  e.expected = true;
  throw e;
}

const opts = args();
const modules = process.env.NODE_MODULES_DIR;
if (!modules) throw new Error("NODE_MODULES_DIR is not set (tests/e2e/browser-deps.sh prints it)");
const require = createRequire(join(modules, "package.json"));
const puppeteer = require("puppeteer-core");

const profile = mkdtempSync(join(tmpdir(), "bootlab-chromium-"));
const browser = await puppeteer.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  pipe: true,
  userDataDir: profile,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--disable-features=Translate,OptimizationHints,MediaRouter",
  ],
  defaultViewport: { width: 1280, height: 800 },
});

let page;
const observed = { requests: [], violations: [], console: [], navigations: 0 };
try {
  page = await browser.newPage();
  const origin = new URL(opts.url).origin;
  page.on("request", (r) => observed.requests.push(r.url()));
  page.on("console", (m) => observed.console.push(`${m.type()}: ${m.text()}`));
  page.on("framenavigated", (f) => {
    if (f === page.mainFrame()) observed.navigations += 1;
  });
  // Before any of the page's own code runs: count CSP violations and mark
  // this document, so a reload (which would start a new one) shows.
  await page.evaluateOnNewDocument(() => {
    window.__bootlab = { violations: [], stages: [] };
    document.addEventListener("securitypolicyviolation", (e) => {
      window.__bootlab.violations.push(`${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  const response = await page.goto(opts.url, { waitUntil: "load" });
  const csp = response.headers()["content-security-policy"] || "";
  if (!csp.includes("default-src 'none'") || !csp.includes("script-src 'self'")) {
    fail(`the page came without the strict CSP: ${JSON.stringify(csp)}`);
  }
  // The script runs and polls: body[data-live=ok] after its first update.
  await page.waitForSelector('body[data-live="ok"]', { timeout: 30000 });
  const documentId = await page.evaluate(() => {
    window.__bootlab.id = Math.random().toString(36).slice(2);
    return window.__bootlab.id;
  });
  // Record every stage the row shows, as the script updates it.
  await page.evaluate((rowId) => {
    const record = () => {
      const row = document.getElementById(rowId);
      const stage = row ? row.dataset.stage || "none" : "absent";
      const s = window.__bootlab.stages;
      if (s[s.length - 1] !== stage) s.push(stage);
    };
    record();
    new MutationObserver(record).observe(document.getElementById("machine-rows"), {
      childList: true, subtree: true, attributes: true,
    });
  }, opts.row);
  const before = await page.evaluate(() => window.__bootlab.stages.slice());
  if (before.some((s) => ["kernel", "initrd", "config"].includes(s))) {
    fail(`the row is past the kernel before the node booted: ${before}`);
  }
  console.log("READY");

  // The node boots now. Wait, on this same page, for its row's kernel
  // stage to be reached (done or current).
  const kernelSel = `#${opts.row} li[data-stage="kernel"].done, #${opts.row} li[data-stage="kernel"].current`;
  await page.waitForSelector(kernelSel, { timeout: opts.deadlineS * 1000 });
  // Give the initrd a moment to show too, for the screenshot (not required).
  await page
    .waitForSelector(`#${opts.row}[data-status="loaded"]`, { timeout: 30000 })
    .catch(() => {});

  // A person opens the row's details; the next updates must leave them
  // open (rows are updated in place, not rebuilt from scratch).
  await page.click(`#${opts.row} details summary`);
  const updates = await page.evaluate(() => Number(document.body.dataset.updates));
  await page.waitForFunction(
    (n) => Number(document.body.dataset.updates) >= n + 2,
    { timeout: 30000 },
    updates,
  );
  const stillOpen = await page.evaluate(
    (rowId) => document.querySelector(`#${rowId} details`).open,
    opts.row,
  );
  if (!stillOpen) fail("a poll closed the details a person had opened");

  const dom = await page.evaluate((rowId, hostile) => {
    const row = document.getElementById(rowId);
    const all = Array.from(document.querySelectorAll("*"));
    const handlers = all.flatMap((e) =>
      Array.from(e.attributes).filter((a) => a.name.startsWith("on") || a.name === "style")
        .map((a) => `${e.tagName.toLowerCase()}[${a.name}]`));
    const text = document.body.textContent;
    return {
      id: window.__bootlab.id,
      stages: window.__bootlab.stages.slice(),
      violations: window.__bootlab.violations.slice(),
      rowStage: row && row.dataset.stage,
      rowStatus: row && row.dataset.status,
      rowText: row && row.textContent.replace(/\s+/g, " ").trim(),
      scripts: Array.from(document.scripts).map((s) => s.getAttribute("src")),
      styles: document.querySelectorAll("style").length,
      injected: document.querySelectorAll("img, svg, iframe, object, embed, h1 h1, b, marquee").length,
      handlers,
      hostileShown: hostile.filter((h) => text.includes(h)),
      pwned: window.__pwned === true,
    };
  }, opts.row, opts.hostile);

  mkdirSync(dirname(opts.screenshot), { recursive: true });
  await page.screenshot({ path: opts.screenshot, fullPage: true });

  if (dom.id !== documentId) fail("the page was reloaded (a new document)");
  if (observed.navigations !== 1) fail(`the page navigated ${observed.navigations} times`);
  const seq = dom.stages;
  const kernelAt = seq.findIndex((s) => ["kernel", "initrd", "config"].includes(s));
  if (kernelAt < 1) fail(`the row never advanced live to the kernel: ${seq}`);
  if (dom.violations.length) fail(`CSP violations: ${dom.violations}`);
  if (dom.scripts.length !== 1 || dom.scripts[0] !== "/static/status.js") {
    fail(`scripts on the page: ${JSON.stringify(dom.scripts)}`);
  }
  if (dom.styles !== 0) fail(`${dom.styles} <style> elements`);
  if (dom.injected !== 0) fail(`${dom.injected} elements that only injected markup would make`);
  if (dom.handlers.length) fail(`inline handlers or styles: ${dom.handlers}`);
  if (dom.pwned) fail("a hostile inventory string ran");
  const missing = opts.hostile.filter((h) => !dom.hostileShown.includes(h));
  if (missing.length) fail(`hostile strings not shown as text: ${JSON.stringify(missing)}`);
  const foreign = observed.requests.filter((u) => !u.startsWith(origin + "/"));
  if (foreign.length) fail(`requests outside bootlabd: ${foreign}`);

  console.log("PASS " + JSON.stringify({
    stages: seq,
    row: dom.rowText,
    status: dom.rowStatus,
    requests: observed.requests.length,
    screenshot: opts.screenshot,
  }));
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
  process.exit(0);
} catch (e) {
  console.error(e.expected ? `FAIL: ${e.message}` : e);
  console.error("console:", observed.console.join("\n"));
  if (page) {
    try {
      const html = await page.content();
      console.error("page at failure:\n" + html);
      mkdirSync(dirname(opts.screenshot), { recursive: true });
      await page.screenshot({ path: opts.screenshot, fullPage: true });
    } catch (_) {
      // The page is gone; nothing more to show.
    }
  }
  await browser.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
  process.exit(1);
}
