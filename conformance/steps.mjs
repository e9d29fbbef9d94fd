// What the conformance scripts share: steps with a deadline, since the SDK waits forever on
// some server errors, and errors as the SDK reports them.

const DEADLINE_MS = 20_000;

function within(label, promise) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${label}: no answer in ${DEADLINE_MS} ms`)), DEADLINE_MS);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/** The error's HTTP status and message, as the SDK reports them. */
export function failure(error) {
  return { status: error.status ?? null, name: error.constructor?.name, message: String(error.message) };
}

/** What `body` returns, or how it failed, within the deadline. */
export async function step(label, body) {
  try {
    return await within(label, body());
  } catch (error) {
    return { failed: failure(error) };
  }
}
