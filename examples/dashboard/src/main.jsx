// A live dashboard of runcast runs, with the official Trigger.dev React hooks.
//
// The server (examples/dashboard.rs) hands the page, in /config.json, the task to trigger,
// the tag its runs carry, and two public access tokens it signed: one that triggers the task,
// one that reads the runs with the tag (their feed and their streams). The secret key never
// reaches the browser. The hooks talk to the server that served the page.
import { useEffect, useState } from "react";
import { createRoot } from "react-dom/client";
import {
  useRealtimeRun,
  useRealtimeRunsWithTag,
  useRealtimeStream,
  useTaskTrigger,
} from "@trigger.dev/react-hooks";

const baseURL = window.location.origin;

function App() {
  const [config, setConfig] = useState();
  const [error, setError] = useState();
  useEffect(() => {
    fetch("/config.json")
      .then((response) => {
        if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
        return response.json();
      })
      .then(setConfig, setError);
  }, []);
  if (error) return <p className="error">Could not load /config.json: {error.message}</p>;
  if (!config) return <p>Loading…</p>;
  return <Dashboard config={config} />;
}

function Dashboard({ config }) {
  const [prompt, setPrompt] = useState("What are realtime streams?");
  // Triggers with the trigger token; the handle carries a token that reads the run.
  const trigger = useTaskTrigger(config.task, { accessToken: config.triggerToken, baseURL });
  // Every run with the tag, as it changes (newest first below).
  const { runs, error } = useRealtimeRunsWithTag(config.tag, {
    accessToken: config.readToken,
    baseURL,
  });
  const submit = (event) => {
    event.preventDefault();
    trigger.submit({ prompt }, { tags: [config.tag] });
  };
  return (
    <main>
      <h1>runcast dashboard</h1>
      <form onSubmit={submit}>
        <input
          id="prompt"
          aria-label="Prompt"
          value={prompt}
          onChange={(event) => setPrompt(event.target.value)}
        />
        <button id="trigger" type="submit" disabled={trigger.isLoading}>
          Trigger {config.task}
        </button>
      </form>
      {trigger.error && <p className="error">Trigger failed: {trigger.error.message}</p>}
      <LatestRun handle={trigger.handle} />
      <section id="runs">
        <h2>
          Runs tagged <code>{config.tag}</code>
        </h2>
        {error && <p className="error">Feed: {error.message}</p>}
        {runs.length === 0 && <p>None yet: trigger one.</p>}
        {[...runs].reverse().map((run) => (
          <RunCard key={run.id} run={run} accessToken={config.readToken} />
        ))}
      </section>
    </main>
  );
}

/** The run this page triggered last, followed with the token its trigger answered. */
function LatestRun({ handle }) {
  const { run, error } = useRealtimeRun(handle?.id, {
    id: handle?.id,
    accessToken: handle?.publicAccessToken,
    baseURL,
    enabled: Boolean(handle),
  });
  if (!handle) return <p id="latest">No run triggered from this page yet.</p>;
  return (
    <p id="latest" data-run-id={handle.id} data-status={run?.status ?? ""}>
      Latest: <code>{handle.id}</code> <Status status={run?.status} />{" "}
      <Progress metadata={run?.metadata} />
      {error && <span className="error"> {error.message}</span>}
    </p>
  );
}

/** One run of the tag feed: its status, the progress in its metadata, its streamed text. */
function RunCard({ run, accessToken }) {
  const { parts, error } = useRealtimeStream(run.id, "text", { accessToken, baseURL });
  const timeline = useTimeline(run.status);
  return (
    <article className="run" data-run-id={run.id} data-status={run.status}>
      <header>
        <code>{run.id}</code> <Status status={run.status} />{" "}
        <span className="timeline">{timeline.join(" → ")}</span>
      </header>
      <p className="prompt">{run.payload?.prompt}</p>
      <Progress metadata={run.metadata} />
      <p className="text">{parts.join("")}</p>
      {run.output !== undefined && (
        <p className="output">
          Output: <q>{run.output}</q>
        </p>
      )}
      {error && <p className="error">Stream: {error.message}</p>}
    </article>
  );
}

/** Every status this page has shown for a run, in order, the current one last. */
function useTimeline(status) {
  const [seen, setSeen] = useState([status]);
  if (seen[seen.length - 1] === status) return seen;
  // Updated as it renders, so that it never shows a status that the timeline lacks.
  const now = [...seen, status];
  setSeen(now);
  return now;
}

function Status({ status }) {
  return <span className={`status ${(status ?? "").toLowerCase()}`}>{status ?? "…"}</span>;
}

function Progress({ metadata }) {
  const { tokens = 0, of = 0 } = metadata ?? {};
  return (
    <span className="progress">
      <progress max={of || 1} value={tokens} /> {tokens}/{of}
    </span>
  );
}

createRoot(document.getElementById("root")).render(<App />);
