// Graphile Worker on the same work as the `runs` and `start` sections of runcast's Postgres
// load program (runtime/benches/postgres.rs), on the same server:
// - runs: 5,000 no-op jobs added in batches of 500 by this process, executed by two worker
//   processes (this script again, as `worker`), timed until the last completed;
// - start: 1,000 jobs added one at a time, 100 per second, from add to the start of the task
//   in a worker process: p50, p99, max.
// Workers use the settings of Graphile Worker's performance page: concurrentJobs 24,
// maxPoolSize 25, localQueue 500, completeJobBatchDelay 0, failJobBatchDelay 0.
//
// Run: npm ci && DATABASE_URL=postgres:///dbname node bench.mjs
// (a fresh database: it drops and creates `graphile_bench` on the server).
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { makeWorkerUtils, run } from "graphile-worker";

const RUNS = 5000;
const BATCH = 500;
const STARTS = 1000;

const preset = {
  worker: {
    concurrentJobs: 24,
    maxPoolSize: 25,
    localQueue: { size: 500 },
    completeJobBatchDelay: 0,
    failJobBatchDelay: 0,
  },
};

/** Microseconds since the epoch, comparable across processes on this machine. */
const nowMicros = () => Math.round((performance.timeOrigin + performance.now()) * 1000);

async function worker(connectionString) {
  let done = 0;
  const runner = await run({
    connectionString,
    preset,
    noHandleSignals: false,
    logger: undefined,
    taskList: {
      noop: async () => {},
      stamp: async (payload) => {
        console.log(`start ${nowMicros() - payload.sent}`);
      },
    },
  });
  // Every completion is reported: a worker's count need not be a round number when the last
  // job is done.
  runner.events.on("job:success", () => {
    done += 1;
    console.log(`done ${done}`);
  });
  console.log("ready");
  await runner.promise;
}

function startWorker(connectionString) {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), "worker"], {
    env: { ...process.env, DATABASE_URL: connectionString, GRAPHILE_LOGGER_DEBUG: "" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const lines = createInterface({ input: child.stdout });
  return { child, lines };
}

function nextLine(lines, predicate) {
  return new Promise((resolve) => {
    const listen = (line) => {
      if (predicate(line)) {
        lines.off("line", listen);
        resolve(line);
      }
    };
    lines.on("line", listen);
  });
}

async function database(server) {
  const client = new pg.Client({ connectionString: server });
  await client.connect();
  await client.query("DROP DATABASE IF EXISTS graphile_bench");
  await client.query("CREATE DATABASE graphile_bench");
  await client.end();
  const url = new URL(server.includes("://") ? server : `postgres:///${server}`);
  url.pathname = "/graphile_bench";
  return url.toString();
}

async function main() {
  if (process.argv[2] === "worker") {
    return worker(process.env.DATABASE_URL);
  }
  const server = process.env.DATABASE_URL;
  if (!server) {
    console.error("set DATABASE_URL to a Postgres server whose user may create databases");
    process.exit(2);
  }
  const connectionString = await database(server);
  const utils = await makeWorkerUtils({ connectionString });
  await utils.migrate();

  // runs
  const workers = [startWorker(connectionString), startWorker(connectionString)];
  await Promise.all(workers.map((w) => nextLine(w.lines, (l) => l === "ready")));
  const counts = workers.map(() => 0);
  let completed = 0;
  let finished;
  const allDone = new Promise((resolve) => (finished = resolve));
  workers.forEach((w, i) =>
    w.lines.on("line", (line) => {
      if (!line.startsWith("done ")) return;
      counts[i] = Number(line.slice(5));
      completed = counts.reduce((a, b) => a + b, 0);
      if (completed >= RUNS) finished();
    }),
  );
  const clock = performance.now();
  for (let batch = 0; batch < RUNS / BATCH; batch++) {
    const jobs = [];
    for (let n = batch * BATCH; n < (batch + 1) * BATCH; n++) {
      jobs.push({ identifier: "noop", payload: { n } });
    }
    await utils.addJobs(jobs);
  }
  const added = (performance.now() - clock) / 1000;
  await allDone;
  const done = (performance.now() - clock) / 1000;
  console.log(
    `graphile runs: ${RUNS} no-op jobs added in batches of ${BATCH} at ${(RUNS / added).toFixed(0)}/s, completed by 2 worker processes at ${(RUNS / done).toFixed(0)}/s`,
  );

  // start
  const starts = [];
  const startLines = workers.map((w) =>
    w.lines.on("line", (line) => {
      if (line.startsWith("start ")) starts.push(Number(line.slice(6)));
    }),
  );
  void startLines;
  for (let n = 0; n < STARTS; n++) {
    await utils.addJob("stamp", { sent: nowMicros() });
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  while (starts.length < STARTS) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  starts.sort((a, b) => a - b);
  const at = (q) => starts[Math.floor((starts.length - 1) * q)] / 1000;
  console.log(
    `graphile start: add -> task start in a worker process, ${STARTS} jobs at 100/s: p50 ${at(0.5).toFixed(2)} ms p99 ${at(0.99).toFixed(2)} ms max ${(starts[starts.length - 1] / 1000).toFixed(2)} ms`,
  );
  await utils.release();
  for (const w of workers) w.child.kill();
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
