// The official Trigger.dev SDK (@trigger.dev/sdk, pinned in package-lock.json) against a
// runcast server: run by runtime/tests/conformance.rs, which starts the server and sets
// TRIGGER_API_URL and TRIGGER_SECRET_KEY. Prints one JSON object: what each step saw (or the
// error it met), for the Rust test to check. Every step has a deadline, since the SDK waits
// forever on some server errors.
import { auth, batch, runs, streams, tasks } from "@trigger.dev/sdk";
// The SDK's own shape client (a dependency of the SDK, pinned in the same lockfile).
import { ShapeStream } from "@electric-sql/client";
import { failure, step } from "./steps.mjs";

/** Every status and metadata count a run's feed shows until the run finishes. */
async function follow(id) {
  const seen = [];
  for await (const run of runs.subscribeToRun(id)) {
    seen.push({ status: run.status, count: run.metadata?.count ?? null, finished: run.finishedAt != null });
  }
  return seen;
}

const report = {};

report.trigger = await step("trigger", async () => {
  const handle = await tasks.trigger(
    "count",
    { to: 5, pause: 20 },
    { tags: ["conformance"], metadata: { count: 0 } },
  );
  return { id: handle.id, hasToken: typeof handle.publicAccessToken === "string" };
});

const id = report.trigger.id;

report.follow = await step("subscribeToRun with the run's token", async () => {
  const handle = await tasks.trigger("count", { to: 5, pause: 20 }, { tags: ["conformance"] });
  return auth.withAuth({ accessToken: handle.publicAccessToken }, () => follow(handle.id));
});

report.instant = await step("subscribeToRun after an instant run finished", async () => {
  const handle = await tasks.trigger("echo", { hello: "world" });
  await new Promise((resolve) => setTimeout(resolve, 200));
  const statuses = [];
  for await (const run of runs.subscribeToRun(handle.id)) statuses.push(run.status);
  return statuses;
});

report.retrieve = await step("retrieve", async () => {
  // The first run finishes in about 100 ms; its feed ends when it does.
  await follow(id);
  const run = await runs.retrieve(id);
  return {
    status: run.status,
    isCompleted: run.isCompleted,
    output: run.output,
    payload: run.payload,
    metadata: run.metadata,
    tags: run.tags,
  };
});

report.superjson = await step("a superjson payload", async () => {
  const at = new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 6));
  const handle = await tasks.trigger("echo", { at, big: 12345678901234567890n, nothing: undefined });
  await follow(handle.id);
  const run = await runs.retrieve(handle.id);
  return { output: run.output };
});

report.unknownTask = await step("unknown task", async () => {
  await tasks.trigger("no-such-task", {});
  return "triggered";
});

report.wrongPayload = await step("wrong payload", async () => {
  await tasks.trigger("count", { to: "five", pause: 1 });
  return "triggered";
});

report.cancel = await step("cancel", async () => {
  const handle = await tasks.trigger("count", { to: 1000, pause: 50 });
  const canceled = await runs.cancel(handle.id);
  const seen = await follow(handle.id);
  return { canceled: canceled.id === handle.id, last: seen[seen.length - 1] };
});

report.tagFeed = await step("subscribeToRunsWithTag", async () => {
  const tag = `feed-${Date.now()}`;
  const ids = [];
  for (let i = 0; i < 3; i++) {
    ids.push((await tasks.trigger("count", { to: 2, pause: 10 }, { tags: [tag] })).id);
  }
  // Two tasks on one tag feed.
  ids.push((await tasks.trigger("echo", { tagged: true }, { tags: [tag] })).id);
  const finished = new Map();
  for await (const run of runs.subscribeToRunsWithTag(tag)) {
    if (run.status === "COMPLETED") finished.set(run.id, run.taskIdentifier);
    if (finished.size === ids.length) break;
  }
  return {
    all: ids.every((id) => finished.has(id)),
    tasks: [...new Set(finished.values())].sort(),
  };
});

report.scopedToken = await step("a public token scoped to one run", async () => {
  const token = await auth.createPublicToken({ scopes: { read: { runs: [id] } } });
  const other = await tasks.trigger("count", { to: 1, pause: 0 });
  return auth.withAuth({ accessToken: token }, async () => {
    const own = await runs.retrieve(id);
    let otherError = null;
    try {
      await runs.retrieve(other.id);
    } catch (error) {
      otherError = failure(error);
    }
    return { own: own.id, other: otherError };
  });
});

report.batch = await step("batch.trigger and subscribeToBatch", async () => {
  const handle = await batch.trigger([
    { id: "count", payload: { to: 2, pause: 5 } },
    { id: "echo", payload: { hello: "batch" } },
    { id: "count", payload: { to: 1, pause: 0 } },
  ]);
  const finished = new Map();
  await auth.withAuth({ accessToken: handle.publicAccessToken }, async () => {
    for await (const run of runs.subscribeToBatch(handle.batchId)) {
      if (run.status === "COMPLETED") finished.set(run.id, run.taskIdentifier);
      if (finished.size === handle.runCount) break;
    }
  });
  return { runCount: handle.runCount, tasks: [...finished.values()].sort() };
});

report.large = await step("a 1 MiB payload and output", async () => {
  // The SDK uploads a payload of 128 KiB or more apart, and triggers with its path.
  const text = "x".repeat(1 << 20);
  const handle = await tasks.trigger("echo", { text });
  let feedOutput = null;
  for await (const run of runs.subscribeToRun(handle.id)) {
    feedOutput = run.output?.text?.length ?? null;
  }
  const run = await runs.retrieve(handle.id);
  return { payload: run.payload?.text?.length, output: run.output?.text?.length, feedOutput };
});

report.dropped = await step("a feed whose connections drop", async () => {
  // Through a proxy that cuts every connection after a moment, mid-request or not.
  const handle = await tasks.trigger("count", { to: 30, pause: 40 });
  const config = { baseURL: process.env.FLAKY_URL, accessToken: handle.publicAccessToken };
  return auth.withAuth(config, () => follow(handle.id));
});

report.triggerTokens = await step("trigger tokens, one-time and multiple-use", async () => {
  const once = await auth.createTriggerPublicToken("count");
  const many = await auth.createTriggerPublicToken("count", { multipleUse: true });
  const attempt = (accessToken) =>
    auth.withAuth({ accessToken }, async () => {
      try {
        return (await tasks.trigger("count", { to: 1, pause: 0 })).id.startsWith("run_");
      } catch (error) {
        return failure(error);
      }
    });
  return {
    once: [await attempt(once), await attempt(once)],
    many: [await attempt(many), await attempt(many)],
  };
});

report.invalidKey = await step("an invalid key", async () =>
  auth.withAuth({ accessToken: "tr_dev_not_the_key" }, async () => {
    await runs.retrieve(id);
    return "read";
  }),
);

report.missingRun = await step("a missing run", async () => {
  await runs.retrieve("run_doesnotexist");
  return "read";
});

report.withStreams = await step("subscribeToRun().withStreams()", async () => {
  const words = Array.from({ length: 20 }, (_, i) => `word${i}`);
  const handle = await tasks.trigger("write", words);
  const chunks = [];
  let last = null;
  for await (const part of runs.subscribeToRun(handle.id).withStreams()) {
    if (part.type === "words") chunks.push(part.chunk);
    if (part.type === "run") last = part.run;
    // The SDK keeps the feed open 30 s after the run finishes: stop at the end of the stream.
    if (last?.isCompleted && chunks.length >= words.length) break;
  }
  return { chunks, status: last?.status, output: last?.output };
});

report.streamsRead = await step("streams.read()", async () => {
  const words = ["alpha", "beta", "gamma"];
  const handle = await tasks.trigger("write", words);
  const chunks = [];
  for await (const chunk of await streams.read(handle.id, "words")) {
    chunks.push(chunk);
  }
  return { chunks };
});

report.sse = await step("Electric's client in its live SSE mode", async () => {
  // The SDK never turns it on; Electric's client does when asked (`experimentalLiveSse`).
  const handle = await tasks.trigger("count", { to: 20, pause: 30 });
  const urls = [];
  const aborter = new AbortController();
  const stream = new ShapeStream({
    url: `${process.env.TRIGGER_API_URL}/realtime/v1/runs/${handle.id}`,
    headers: { Authorization: `Bearer ${process.env.TRIGGER_SECRET_KEY}` },
    experimentalLiveSse: true,
    signal: aborter.signal,
    fetchClient: (input, init) => {
      urls.push(String(input));
      return fetch(input, init);
    },
  });
  const seen = [];
  // Its SSE reader (@microsoft/fetch-event-source) is written for browsers: it follows the
  // page's visibility (`document`) and sets its timers on `window`. Node has neither: an
  // always visible document and the global object stand in.
  globalThis.document = { hidden: false, addEventListener() {}, removeEventListener() {} };
  globalThis.window = globalThis;
  await new Promise((resolve, reject) => {
    stream.subscribe((messages) => {
      for (const message of messages) {
        if (!message.value) continue;
        const { status, metadata } = message.value;
        seen.push({ status, count: metadata ? JSON.parse(metadata).count : null });
        if (status === "COMPLETED_SUCCESSFULLY") resolve();
      }
    }, reject);
  });
  aborter.abort();
  const sse = urls.filter((url) => url.includes("experimental_live_sse=true")).length;
  return { seen, requests: urls.length, sse };
});

// Electric's client, aborted, may still hold a live SSE connection open (its 1.0.14 asks once
// more after an abort): end the process once the report is written.
process.stdout.write(`${JSON.stringify(report)}\n`, () => process.exit(0));
