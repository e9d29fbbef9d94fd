// The official SDK's own row-to-run transform (`RunSubscription.transformRunShape`, in
// @trigger.dev/core), timed on the rows in the file named by the first argument: one row per
// line, each as the SDK holds it once Electric's client has parsed it (numbers, booleans and
// arrays typed by the schema). Run by runtime/benches/rows.rs, which times runcast's decoder
// on the same rows; prints `{"rows": n, "best_rows_per_sec": x}`.
//
// Each round reads every row once with an empty packet cache (the SDK caches packets per run
// and field, and every row here is of another run), awaiting each transform as the SDK does.
import { readFileSync } from "node:fs";
import { RunSubscription } from "./node_modules/@trigger.dev/core/dist/esm/v3/apiClient/runStream.js";

const rows = readFileSync(process.argv[2], "utf8")
  .split("\n")
  .filter((line) => line.length > 0)
  .map((line) => JSON.parse(line));
const rounds = Number(process.argv[3] ?? 5);

async function round() {
  // The transform needs only the packet cache and the options (no client: packets are inline).
  const subscription = Object.create(RunSubscription.prototype);
  subscription.packetCache = new Map();
  subscription.options = {};
  let checksum = 0;
  const start = process.hrtime.bigint();
  for (const row of rows) {
    const run = await subscription.transformRunShape(row);
    checksum += run.status.length;
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  if (checksum === 0) throw new Error("nothing transformed");
  return rows.length / seconds;
}

// A first round warms the JIT up and loads superjson.
await round();
let best = 0;
for (let i = 0; i < rounds; i++) best = Math.max(best, await round());
console.log(JSON.stringify({ rows: rows.length, best_rows_per_sec: best }));
