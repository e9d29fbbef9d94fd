// The official SDK against the runcast-server binary, while a worker in another process runs
// the tasks: run by server/tests/binary.rs, which starts both and sets TRIGGER_API_URL and
// TRIGGER_SECRET_KEY. Prints one JSON object: what each step saw, or the error it met.
import { runs, tasks } from "@trigger.dev/sdk";
import { step } from "./steps.mjs";

const report = {};

report.follow = await step("trigger, then subscribeToRun", async () => {
  const handle = await tasks.trigger("count", { to: 3, pause: 5 }, { tags: ["binary"] });
  const seen = [];
  for await (const run of runs.subscribeToRun(handle.id)) {
    seen.push({ status: run.status, count: run.metadata?.count ?? null, output: run.output ?? null });
  }
  return seen;
});

report.mismatch = await step("a payload the task's schema refuses", () =>
  tasks.trigger("count", { to: "three", pause: 5 }),
);

report.unknown = await step("a task no worker published", () => tasks.trigger("resize", {}));

console.log(JSON.stringify(report));
