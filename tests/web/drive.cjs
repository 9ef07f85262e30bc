// Drives an exported stylexport web app in headless Chromium (puppeteer-core): opens URL, uploads PHOTO through
// the page's file input, waits for the page to finish, and writes OUT/result.png (the result canvas, lossless),
// OUT/screenshot.png and OUT/page.json (status line, state, requests made, console errors, whether the page is cross-origin
// isolated and the cores it sees). REPEAT=N stylizes
// the photo N times and keeps each run's status line (the page's own timing).
// usage: node drive.cjs URL PHOTO OUT   (CHROMIUM names the browser; default /usr/bin/chromium)
const fs = require("fs");
const path = require("path");
const puppeteer = require("puppeteer-core");

async function main() {
  const [url, photo, out] = process.argv.slice(2);
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
           ...(process.env.CHROMIUM_ARGS ? process.env.CHROMIUM_ARGS.split(" ") : ["--disable-gpu"])],
    userDataDir: fs.mkdtempSync(path.join(out, "profile-")),
  });
  const report = { requests: [], console: [] };
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1100, height: 760 });
    page.on("request", (r) => report.requests.push(r.url()));
    page.on("console", (m) => report.console.push(`${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => report.console.push(`pageerror: ${e.message}`));
    await page.goto(url, { waitUntil: "load" });
    report.isolated = await page.evaluate(() => self.crossOriginIsolated);
    report.cores = await page.evaluate(() => navigator.hardwareConcurrency);
    await page.waitForFunction(() => ["ready", "error"].includes(document.body.dataset.state), { timeout: 120000 });
    if (await page.evaluate(() => document.body.dataset.state) === "ready") {
      const input = await page.$("#file");
      report.runs = [];
      for (let i = 0; i < Number(process.env.REPEAT || 1); i++) {  // REPEAT=N: the photo N times (timing)
        if (i > 0) await page.evaluate(() => { document.body.dataset.state = "ready"; document.getElementById("file").value = ""; });
        await input.uploadFile(photo);
        await page.waitForFunction(() => ["done", "error"].includes(document.body.dataset.state), { timeout: 240000 });
        report.runs.push(await page.evaluate(() => document.getElementById("status").textContent));
      }
    }
    report.state = await page.evaluate(() => document.body.dataset.state);
    report.status = await page.evaluate(() => document.getElementById("status").textContent);
    if (report.state === "done") {
      const dataUrl = await page.evaluate(() => document.getElementById("result").toDataURL("image/png"));
      fs.writeFileSync(path.join(out, "result.png"), Buffer.from(dataUrl.split(",")[1], "base64"));
    }
    await page.screenshot({ path: path.join(out, "screenshot.png") });
  } finally {
    fs.writeFileSync(path.join(out, "page.json"), JSON.stringify(report, null, 2));
    await browser.close();
  }
}

main().catch((error) => { console.error(`error: ${error.message}`); process.exit(1); });
