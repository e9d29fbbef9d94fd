// Drives the dashboard in headless Chromium (Playwright), for examples/tests/dashboard.rs.
//
// Environment: DASHBOARD_URL (the page), CHROMIUM (the browser), SCREENSHOTS (a folder).
// It triggers a run from the page and waits until the page shows it executing with part of
// its text, then completed with all of it; asks the test to restart the server (a line
// `{"event":"restart"}` on stdout, answered `restarted` on stdin); does the same with a second
// run from the same page, never reloaded; and prints what the page showed as one line
// `{"event":"done", ...}`. Logs go to stderr. Any wait that times out fails the script.
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const url = required("DASHBOARD_URL");
const executablePath = required("CHROMIUM");
const screenshots = required("SCREENSHOTS");
/** How long any one thing may take to show. */
const timeout = 30_000;

const lines = createInterface({ input: process.stdin });
const input = lines[Symbol.asyncIterator]();
const send = (event) => process.stdout.write(`${JSON.stringify(event)}\n`);
const log = (...args) => console.error("[dashboard.mjs]", ...args);

const browser = await chromium.launch({
  executablePath,
  // Playwright gives the browser a fresh, temporary profile (user data folder) of its own.
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
  timeout,
});
const page = await browser.newPage({ viewport: { width: 1000, height: 700 } });
page.setDefaultTimeout(timeout);
page.on("console", (message) => log(`console.${message.type()}:`, message.text()));
page.on("pageerror", (error) => log("page error:", error.stack ?? String(error)));
// What the page shows of run `id` in the tag feed's list, or null.
await page.addInitScript(() => {
  window.readCard = (id) => {
    const card = document.querySelector(`article.run[data-run-id="${id}"]`);
    if (!card) return null;
    return {
      status: card.dataset.status,
      text: card.querySelector(".text").textContent,
      progress: card.querySelector(".progress").textContent.trim(),
      output: card.querySelector(".output q")?.textContent ?? null,
      timeline: card.querySelector(".timeline").textContent.split(" → "),
    };
  };
});

// The statuses of the tag feed's responses, before and after the restart.
const feed = { beforeRestart: [], afterRestart: [] };
let phase = feed.beforeRestart;
page.on("response", (response) => {
  if (new URL(response.url()).pathname === "/realtime/v1/runs") phase.push(response.status());
});

try {
  await page.goto(url);
  await page.locator("#trigger").waitFor();
  const first = await triggerRun("What is a run feed?");
  await page.screenshot({ path: `${screenshots}/before-restart.png`, fullPage: true });

  phase = feed.afterRestart;
  send({ event: "restart" });
  const answer = await input.next();
  if (answer.done || answer.value !== "restarted") {
    throw new Error(`expected "restarted" from the test, got ${JSON.stringify(answer.value)}`);
  }
  const second = await triggerRun("And after a restart?");
  const firstAfterRestart = await page.evaluate((id) => readCard(id), first.id);
  await page.screenshot({ path: `${screenshots}/dashboard.png`, fullPage: true });
  send({ event: "done", runs: [first, second], firstAfterRestart, feed });
} catch (error) {
  await page
    .screenshot({ path: `${screenshots}/failure.png`, fullPage: true })
    .catch((shot) => log("no screenshot of the failure:", shot.message));
  throw error;
} finally {
  // Open, standard input would keep Node running.
  lines.close();
  await browser.close();
}

/**
 * Triggers a run with `prompt` from the page and follows it there until it completed with
 * all its text; returns what the page showed of it.
 */
async function triggerRun(prompt) {
  const previous = await page.locator("#latest").getAttribute("data-run-id");
  await page.fill("#prompt", prompt);
  await page.click("#trigger");
  // The handle of the trigger names the run.
  const newRun = await page
    .waitForFunction(
      (previous) => {
        const id = document.querySelector("#latest")?.dataset.runId;
        return id && id !== previous ? id : null;
      },
      previous,
      { timeout, polling: "raf" },
    )
    .catch((error) => {
      throw new Error(`the page showed no new run after its trigger: ${error.message}`);
    });
  const id = await newRun.jsonValue();
  log(`triggered ${id}`);
  // While it runs: part of its text, and its progress part of the way.
  const [partialText, partialProgress] = await Promise.all([
    cardWhen(id, "streamed text while it executed", (card) => {
      return card.status === "EXECUTING" && card.text.length > 0;
    }),
    cardWhen(id, "progress part of the way while it executed", (card) => {
      const [done, of] = card.progress.split("/").map(Number);
      return card.status === "EXECUTING" && done > 0 && done < of;
    }),
  ]);
  // Then completed, with its output, and the whole text streamed.
  const done = await cardWhen(id, "COMPLETED with its output and all its text", (card) => {
    const completed = card.status === "COMPLETED" && card.output !== null;
    return completed && card.text.length >= card.output.length;
  });
  // The run the page triggered last, followed by its own handle's token.
  const latest = page.locator(`#latest[data-run-id="${id}"][data-status="COMPLETED"]`);
  await latest.waitFor();
  log(`${id} completed`);
  return {
    id,
    prompt,
    partialText,
    partialProgress,
    done,
    latest: (await latest.locator(".progress").textContent()).trim(),
  };
}

/**
 * What the page shows of run `id` (`readCard`) once `test` holds of it, checked at every
 * frame; if it does not in time, an error that says what did not show, and what did.
 */
async function cardWhen(id, what, test) {
  const card = `readCard(${JSON.stringify(id)})`;
  const expression = `(${card} && (${test})(${card})) ? ${card} : null`;
  try {
    const shown = await page.waitForFunction(expression, undefined, { timeout, polling: "raf" });
    return await shown.jsonValue();
  } catch (error) {
    const shown = await page.evaluate(card).catch(() => "nothing");
    throw new Error(`run ${id} never showed ${what} (${error.message}); it shows ${JSON.stringify(shown)}`);
  }
}

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}
