//! One realtime stream of a run, read over server-sent events
//! (`GET /realtime/v1/streams/{run}/{key}`, `trigger-sdk-v4-wire.md` §7): v2 framing (each
//! `batch` event holds records, each record a chunk and its id) when the answer says
//! `X-Stream-Version: v2`, v1 (each event a chunk) otherwise. A connection that breaks is made
//! again after the last event read (`Last-Event-ID`); a clean end of the answer ends the
//! stream.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;

use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures_core::Stream;
use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::feed::encode;
use super::{Backoff, Client, error_message, retry_after};
use crate::FeedError;
use crate::model::{AnyChunk, Cursor, RunId};

/// What a stream reader reports, about the run it reads for.
pub(super) enum StreamEvent {
    Chunk(AnyChunk),
    /// The stream cannot be read; it ends next.
    Failed(FeedError),
    /// The stream ended.
    Ended,
}

type Events = Pin<Box<dyn Stream<Item = Result<Event, EventStreamError<reqwest::Error>>> + Send>>;

/// Reads stream `key` of run `run` (of task `task`) after the chunk `after` (a runcast
/// server's position), giving chunks of another server cursors in `epoch`.
pub(super) fn read(
    client: Client,
    run: RunId,
    task: Arc<str>,
    key: Arc<str>,
    after: Option<u64>,
    epoch: u64,
) -> impl Stream<Item = (RunId, StreamEvent)> + Send + 'static {
    let url = format!(
        "{}/realtime/v1/streams/{}/{}",
        client.inner.base,
        encode(run.as_str()),
        encode(&key)
    );
    let reader = Reader {
        client,
        url,
        run,
        task,
        key,
        last_id: after.map(|position| position.to_string()),
        events: None,
        v2: false,
        epoch,
        read: 0,
        ready: VecDeque::new(),
        backoff: Backoff::new(),
        state: State::Reading,
    };
    futures_util::stream::unfold(reader, |mut reader| async move {
        let event = reader.next().await?;
        Some(((reader.run.clone(), event), reader))
    })
}

struct Reader {
    client: Client,
    url: String,
    run: RunId,
    task: Arc<str>,
    key: Arc<str>,
    last_id: Option<String>,
    events: Option<Events>,
    v2: bool,
    epoch: u64,
    read: u64,
    ready: VecDeque<AnyChunk>,
    backoff: Backoff,
    state: State,
}

#[derive(PartialEq)]
enum State {
    Reading,
    /// Ended: `Ended` is reported next.
    Ending,
    Done,
}

#[derive(Deserialize)]
struct Batch {
    records: Vec<Record>,
}

#[derive(Deserialize)]
struct Record {
    seq_num: u64,
    #[serde(default)]
    headers: Vec<Vec<String>>,
    body: String,
}

#[derive(Deserialize)]
struct Envelope {
    data: Box<RawValue>,
    #[serde(default)]
    id: Option<String>,
}

impl Reader {
    async fn next(&mut self) -> Option<StreamEvent> {
        loop {
            if let Some(chunk) = self.ready.pop_front() {
                return Some(StreamEvent::Chunk(chunk));
            }
            match self.state {
                State::Reading => {}
                State::Ending => {
                    self.state = State::Done;
                    return Some(StreamEvent::Ended);
                }
                State::Done => return None,
            }
            let Some(events) = self.events.as_mut() else {
                if let Err(failed) = self.connect().await {
                    self.state = State::Ending;
                    return Some(StreamEvent::Failed(failed));
                }
                continue;
            };
            match events.next().await {
                None => self.state = State::Ending,
                Some(Err(error)) => {
                    tracing::debug!(url = %self.url, %error, "stream broke off; reading again");
                    self.events = None;
                    self.backoff.wait(None).await;
                }
                Some(Ok(event)) => {
                    if let Err(failed) = self.event(event) {
                        self.state = State::Ending;
                        return Some(StreamEvent::Failed(failed));
                    }
                }
            }
        }
    }

    /// Connects, after the last event read; a refusal ends the stream.
    async fn connect(&mut self) -> Result<(), FeedError> {
        loop {
            let mut request = self
                .client
                .url_request(Method::GET, &self.url)
                .header(reqwest::header::ACCEPT, "text/event-stream");
            if let Some(last) = &self.last_id {
                request = request.header("last-event-id", last);
            }
            let response = match request.send().await {
                Ok(response) => response,
                Err(error) => {
                    tracing::debug!(url = %self.url, %error, "stream request failed; trying again");
                    self.backoff.wait(None).await;
                    continue;
                }
            };
            let status = response.status();
            if status.is_success() {
                self.v2 = response
                    .headers()
                    .get("x-stream-version")
                    .is_some_and(|v| v.as_bytes() == b"v2");
                self.events = Some(Box::pin(response.bytes_stream().eventsource()));
                self.backoff.reset();
                return Ok(());
            }
            // As the SDK: these end the stream; anything else is tried again.
            let terminal = matches!(status.as_u16(), 400 | 401 | 403 | 404 | 409 | 410 | 422);
            if terminal {
                let message = error_message(response).await;
                return Err(FeedError::Remote {
                    status: Some(status.as_u16()),
                    message: format!(
                        "the server refused stream `{}` of run `{}` (HTTP {status}): {message}",
                        self.key, self.run
                    ),
                });
            }
            let after = retry_after(&response).filter(|_| status == StatusCode::TOO_MANY_REQUESTS);
            self.backoff.wait(after).await;
        }
    }

    /// Reads one event into chunks.
    fn event(&mut self, event: Event) -> Result<(), FeedError> {
        if !self.v2 {
            if !event.id.is_empty() {
                self.last_id = Some(event.id.clone());
            }
            // A chunk that is not JSON is kept as a string, as the SDK does.
            let data = RawValue::from_string(event.data.clone())
                .or_else(|_| serde_json::value::to_raw_value(&event.data))
                .map_err(|e| self.broken(&e.to_string()))?;
            self.read += 1;
            let cursor = Cursor::new(self.epoch, self.read);
            self.push(cursor, data);
            return Ok(());
        }
        match event.event.as_str() {
            "batch" => {
                let batch: Batch = serde_json::from_str(&event.data)
                    .map_err(|e| self.broken(&format!("a batch event is not one: {e}")))?;
                for record in batch.records {
                    self.last_id = Some(record.seq_num.to_string());
                    // Records whose first header has an empty name are the server's own.
                    if record
                        .headers
                        .first()
                        .and_then(|h| h.first())
                        .map(String::as_str)
                        == Some("")
                    {
                        continue;
                    }
                    let envelope: Envelope = serde_json::from_str(&record.body).map_err(|e| {
                        self.broken(&format!("a record's body is not a chunk: {e}"))
                    })?;
                    // A runcast server's chunk ids are the chunks' cursors.
                    let cursor = envelope
                        .id
                        .as_deref()
                        .and_then(|id| id.parse::<Cursor>().ok())
                        .filter(|c| c.epoch() == self.epoch)
                        .unwrap_or(Cursor::new(self.epoch, record.seq_num));
                    self.push(cursor, envelope.data);
                }
                Ok(())
            }
            "error" => Err(FeedError::Remote {
                status: None,
                message: format!(
                    "the server failed reading stream `{}` of run `{}`: {}",
                    self.key, self.run, event.data
                ),
            }),
            _ => Ok(()),
        }
    }

    fn push(&mut self, cursor: Cursor, data: Box<RawValue>) {
        self.ready.push_back(AnyChunk {
            cursor,
            run_id: self.run.clone(),
            task_identifier: Arc::clone(&self.task),
            stream: Arc::clone(&self.key),
            data: Arc::from(data),
        });
    }

    fn broken(&self, reason: &str) -> FeedError {
        FeedError::Remote {
            status: None,
            message: format!(
                "stream `{}` of run `{}` breaks the protocol: {reason}",
                self.key, self.run
            ),
        }
    }
}
