//! One run feed read in Electric's shape protocol (`electric-shape-protocol.md`,
//! `trigger-sdk-v4-wire.md` §6.2): requests, offsets and handles, and the messages of each
//! answer read as run changes.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::BuildHasher;

use reqwest::{Method, Response, StatusCode, Url};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Backoff, Client, error_message, retry_after, retryable};
use crate::model::{AnyRun, Cursor, Update};
use crate::wire::row::{self, RowError};
use crate::wire::shape;
use crate::{FeedError, Scope};

/// How many times a subscription tries to reach its server before it gives up (about 4 s);
/// once subscribed, it tries as long as it is read.
const FIRST_ATTEMPTS: u32 = 10;

/// What one answer gave: its changes, each read or the reason it could not be.
pub(super) type Changes = Vec<Result<Update<AnyRun>, FeedError>>;

/// A feed being read: where it is (handle, offset, live), and what it needs to read the next
/// answer (the rows seen, for updates that carry only the columns that changed).
pub(super) struct Shape {
    client: Client,
    /// The feed's URL, with its own parameters (`tags`, ...).
    url: Url,
    scope: Scope,
    handle: Option<String>,
    offset: String,
    /// The last `electric-cursor`, sent back with live requests.
    live_cursor: String,
    /// Up to date once: the next requests are live.
    live: bool,
    /// The latest row of each key, as JSON, to complete partial updates.
    rows: HashMap<String, Box<str>>,
    history: History,
    /// The next changes follow a must-refetch: some changes may have been missed.
    refetched: bool,
    backoff: Backoff,
    /// Attempts that failed in a row.
    failures: u32,
}

/// Whose history the offsets are in.
#[derive(Debug, Clone, Copy)]
pub(super) enum History {
    /// A runcast server's: its handle is the epoch, its offsets `<position>_0`; items carry
    /// the engine's cursors.
    Runcast { epoch: u64 },
    /// Another server's: items get cursors in the order read, in an epoch named after the
    /// handle.
    Other { epoch: u64, read: u64 },
}

impl History {
    /// The history of a feed answered with `handle` and `offset`.
    fn of(handle: &str, offset: &str) -> Self {
        match (shape::handle_parts(handle), shape::position(offset)) {
            (Some((epoch, _)), Some(_)) => History::Runcast { epoch },
            _ => History::Other {
                epoch: foreign_epoch(handle),
                read: 0,
            },
        }
    }

    /// The epoch the items' cursors are in.
    pub(super) fn epoch(self) -> u64 {
        match self {
            History::Runcast { epoch } | History::Other { epoch, .. } => epoch,
        }
    }
}

/// An epoch for another server's handle: never 0 (which is [`Cursor::START`]'s).
pub(super) fn foreign_epoch(handle: &str) -> u64 {
    foldhash::fast::FixedState::with_seed(0x0072_756e_6361_7374).hash_one(handle) | 1
}

/// One message of an answer.
#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    key: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    value: Option<&'a RawValue>,
    #[serde(borrow, default)]
    headers: Option<MessageHeaders<'a>>,
}

#[derive(Deserialize)]
struct MessageHeaders<'a> {
    #[serde(borrow, default)]
    operation: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    control: Option<Cow<'a, str>>,
    /// A runcast server's: the position of the change.
    #[serde(borrow, default)]
    lsn: Option<&'a RawValue>,
}

/// Why an answer ends the feed.
fn refused(status: Option<StatusCode>, message: impl Into<String>) -> FeedError {
    FeedError::Remote {
        status: status.map(|s| s.as_u16()),
        message: message.into(),
    }
}

impl Shape {
    /// The feed of `scope` from `from`: from the start (offset `-1`), or, from a runcast
    /// cursor, after it.
    pub(super) fn new(client: Client, scope: Scope, from: Cursor) -> Result<Self, FeedError> {
        let base = &client.inner.base;
        let url = match &scope {
            Scope::Run(id) => format!("{base}/realtime/v1/runs/{}", encode(id.as_str())),
            Scope::Tags(tags) if tags.is_empty() => return Err(FeedError::NoTags),
            Scope::Tags(_) => format!("{base}/realtime/v1/runs"),
            Scope::Batch(id) => format!("{base}/realtime/v1/batches/{}", encode(id.as_str())),
        };
        let mut url = Url::parse(&url).map_err(|e| refused(None, format!("bad URL: {e}")))?;
        if let Scope::Tags(tags) = &scope {
            url.query_pairs_mut().append_pair("tags", &tags.join(","));
        }
        let (handle, offset, history) = if from == Cursor::START {
            (None, "-1".to_owned(), None)
        } else {
            let epoch = from.epoch();
            let history = History::Runcast { epoch };
            (
                Some(format!("{epoch:x}")),
                shape::offset(from.position()),
                Some(history),
            )
        };
        Ok(Shape {
            client,
            url,
            scope,
            handle,
            offset,
            live_cursor: String::new(),
            live: false,
            rows: HashMap::new(),
            history: history.unwrap_or(History::Other { epoch: 1, read: 0 }),
            refetched: false,
            backoff: Backoff::new(),
            failures: 0,
        })
    }

    pub(super) fn history(&self) -> History {
        self.history
    }

    /// The first answer: a refusal, a server that cannot be reached (after a few seconds of
    /// trying: a wrong URL or port should not wait forever), or a must-refetch of the cursor
    /// subscribed from, is an error of the subscription itself.
    pub(super) async fn first(&mut self, from: Cursor) -> Result<Changes, FeedError> {
        match self.request(Some(FIRST_ATTEMPTS)).await? {
            Answered::Changes(changes) => Ok(changes),
            Answered::Refetch if from != Cursor::START => Err(FeedError::UnknownCursor(from)),
            Answered::Refetch => Ok(Vec::new()),
        }
    }

    /// The next answer's changes: retried until the server answers, or refuses (the error,
    /// after which the feed ends).
    pub(super) async fn next(&mut self) -> Result<Changes, FeedError> {
        match self.request(None).await? {
            Answered::Changes(changes) => Ok(changes),
            Answered::Refetch => Ok(Vec::new()),
        }
    }

    /// Asks for the changes after the offset, until an answer comes, or, with `attempts`, until
    /// that many attempts could not reach the server.
    async fn request(&mut self, attempts: Option<u32>) -> Result<Answered, FeedError> {
        let mut unreachable = 0;
        loop {
            let mut url = self.url.clone();
            {
                let mut query = url.query_pairs_mut();
                if self.live {
                    query.append_pair("cursor", &self.live_cursor);
                }
                if let Some(handle) = &self.handle {
                    query.append_pair("handle", handle);
                }
                if self.live {
                    query.append_pair("live", "true");
                }
                query.append_pair("log", "full");
                query.append_pair("offset", &self.offset);
            }
            let mut request = self
                .client
                .url_request(Method::GET, url.as_str())
                .header("x-trigger-electric-version", "1.0.0-beta.1");
            if self.live {
                request = request.timeout(self.client.inner.live_timeout);
            } else {
                request = request.timeout(std::time::Duration::from_secs(60));
            }
            let response = match request.send().await {
                Ok(response) => response,
                Err(error) => {
                    unreachable += 1;
                    if attempts.is_some_and(|attempts| unreachable >= attempts) {
                        return Err(refused(
                            None,
                            format!(
                                "could not reach the server for the feed of {}: {error}",
                                scope_name(&self.scope)
                            ),
                        ));
                    }
                    self.failed(&url, &error);
                    self.backoff.wait(None).await;
                    continue;
                }
            };
            let status = response.status();
            if status == StatusCode::CONFLICT {
                self.must_refetch(&response);
                // The body says the same (`must-refetch`); nothing else is in it.
                return Ok(Answered::Refetch);
            }
            if retryable(status) {
                let after = retry_after(&response);
                self.failed(&url, &status);
                self.backoff.wait(after).await;
                continue;
            }
            if !status.is_success() {
                return Err(self.refusal(status, response).await);
            }
            match self.read(response).await {
                Ok(changes) => {
                    self.backoff.reset();
                    self.failures = 0;
                    return Ok(Answered::Changes(changes));
                }
                // The body broke off: the offset did not move, so asking again loses nothing.
                Err(Read::Broken(error)) => {
                    self.failed(&url, &error);
                    self.backoff.wait(None).await;
                }
                Err(Read::Refused(error)) => return Err(error),
            }
        }
    }

    /// Counts a failed attempt, to be made again: logged, as a warning every tenth in a row.
    fn failed(&mut self, url: &Url, error: &dyn std::fmt::Display) {
        self.failures += 1;
        if self.failures.is_multiple_of(10) {
            let failures = self.failures;
            tracing::warn!(%url, %error, failures, "the feed's server does not answer; trying again");
        } else {
            tracing::debug!(%url, %error, "feed request failed; trying again");
        }
    }

    /// A `409`: start over from the start, with the new handle the server names (or one that
    /// differs from the old, as Electric's client does).
    fn must_refetch(&mut self, response: &Response) {
        let new = header(response, "electric-handle")
            .map(str::to_owned)
            .or_else(|| self.handle.as_ref().map(|old| format!("{old}-next")));
        self.handle = new;
        self.offset = "-1".to_owned();
        self.live = false;
        self.live_cursor.clear();
        self.rows.clear();
        self.refetched = true;
    }

    async fn refusal(&self, status: StatusCode, response: Response) -> FeedError {
        let message = error_message(response).await;
        match (&self.scope, status) {
            (Scope::Run(id), StatusCode::NOT_FOUND) => FeedError::UnknownRun(id.clone()),
            _ => refused(
                Some(status),
                format!(
                    "the server refused the feed of {} (HTTP {status}): {message}",
                    scope_name(&self.scope)
                ),
            ),
        }
    }

    /// Reads an answer: its headers move the feed on, its messages become changes.
    async fn read(&mut self, response: Response) -> Result<Changes, Read> {
        let status = response.status();
        let handle = header(&response, "electric-handle").map(str::to_owned);
        let offset = header(&response, "electric-offset").map(str::to_owned);
        let live_cursor = header(&response, "electric-cursor").map(str::to_owned);
        let (Some(handle), Some(offset)) = (handle, offset) else {
            let missing = if header(&response, "electric-handle").is_none() {
                "electric-handle"
            } else {
                "electric-offset"
            };
            return Err(Read::Refused(refused(
                Some(status),
                format!(
                    "the server's answer to the feed of {} has no `{missing}` header, which the shape protocol requires (a proxy that drops headers, or not a feed?)",
                    scope_name(&self.scope)
                ),
            )));
        };
        let body = response.bytes().await.map_err(Read::Broken)?;
        let body = std::str::from_utf8(&body).map_err(|_| {
            Read::Refused(refused(Some(status), "the feed's answer is not UTF-8 text"))
        })?;
        let body = if body.trim().is_empty() { "[]" } else { body };
        let messages: Vec<Message<'_>> = serde_json::from_str(body).map_err(|e| {
            Read::Refused(refused(
                Some(status),
                format!(
                    "the feed's answer is not an array of shape messages: {e}: {}",
                    body.chars().take(100).collect::<String>()
                ),
            ))
        })?;
        if self.handle.as_deref() != Some(handle.as_str()) || self.offset == "-1" {
            // A new history (the first answer, or after a must-refetch).
            let history = History::of(&handle, &offset);
            self.history = match (self.history, history) {
                (History::Other { epoch, read }, History::Other { epoch: new, .. })
                    if epoch == new =>
                {
                    History::Other { epoch, read }
                }
                (_, history) => history,
            };
        }
        let end = shape::position(&offset);
        let coalesced = std::mem::take(&mut self.refetched);
        let mut changes = Vec::new();
        for message in messages {
            let headers = message.headers.as_ref();
            let control = headers.and_then(|h| h.control.as_deref());
            match control {
                Some("up-to-date") => self.live = true,
                Some("must-refetch") => self.rows.clear(),
                _ => {}
            }
            let (Some(key), Some(value)) = (message.key, message.value) else {
                continue;
            };
            let operation = headers.and_then(|h| h.operation.as_deref());
            if operation == Some("delete") {
                self.rows.remove(key.as_ref());
                continue;
            }
            let lsn = headers
                .and_then(|h| h.lsn)
                .and_then(|lsn| serde_json::from_str::<Cow<'_, str>>(lsn.get()).ok())
                .and_then(|lsn| lsn.parse::<u64>().ok());
            let cursor = match &mut self.history {
                // Each change at its position; the offset names the last one read.
                History::Runcast { epoch } => Cursor::new(*epoch, lsn.or(end).unwrap_or(0)),
                History::Other { epoch, read } => {
                    *read += 1;
                    Cursor::new(*epoch, *read)
                }
            };
            let run = self.row(&key, value.get(), operation == Some("update"));
            changes.push(run.map(|run| Update {
                cursor,
                run,
                coalesced,
            }));
        }
        self.handle = Some(handle);
        self.offset = offset;
        if let Some(live_cursor) = live_cursor {
            self.live_cursor = live_cursor;
        }
        Ok(changes)
    }

    /// Reads the row of `key`: `value` whole, or, for an update that carries only the columns
    /// that changed, over the row seen before.
    fn row(&mut self, key: &str, value: &str, update: bool) -> Result<AnyRun, FeedError> {
        let read = match row::read(value) {
            Err(RowError::Missing { .. }) if update && self.rows.contains_key(key) => {
                let merged = self.rows.get(key).and_then(|old| merge(old, value));
                match merged {
                    Some(merged) => {
                        let run = row::read(&merged);
                        self.rows.insert(key.to_owned(), merged.into());
                        return run.map_err(unreadable);
                    }
                    None => row::read(value),
                }
            }
            read => read,
        };
        if read.is_ok() {
            match self.rows.get_mut(key) {
                Some(row) => *row = value.into(),
                None => {
                    self.rows.insert(key.to_owned(), value.into());
                }
            }
        }
        read.map_err(unreadable)
    }
}

/// `update`'s columns over `old`'s.
fn merge(old: &str, update: &str) -> Option<String> {
    let mut row: serde_json::Map<String, serde_json::Value> = serde_json::from_str(old).ok()?;
    let update: serde_json::Map<String, serde_json::Value> = serde_json::from_str(update).ok()?;
    row.extend(update);
    serde_json::to_string(&row).ok()
}

pub(super) fn unreadable(error: RowError) -> FeedError {
    refused(
        None,
        format!("a change of the feed cannot be read: {error}"),
    )
}

/// What a request got.
enum Answered {
    Changes(Changes),
    /// `409`: the feed starts over.
    Refetch,
}

/// Why an answer could not be read.
enum Read {
    /// The body broke off: ask again.
    Broken(reqwest::Error),
    /// The answer breaks the protocol: the feed ends.
    Refused(FeedError),
}

fn header<'r>(response: &'r Response, name: &str) -> Option<&'r str> {
    response.headers().get(name)?.to_str().ok()
}

fn scope_name(scope: &Scope) -> String {
    match scope {
        Scope::Run(id) => format!("run `{id}`"),
        Scope::Tags(tags) => format!("the runs tagged {tags:?}"),
        Scope::Batch(id) => format!("batch `{id}`"),
    }
}

/// `segment` as one path segment of a URL.
pub(super) fn encode(segment: &str) -> String {
    let mut url = Url::parse("http://x/").unwrap_or_else(|_| unreachable!("a valid URL"));
    url.path_segments_mut()
        .map(|mut path| {
            path.push(segment);
        })
        .ok();
    url.path().trim_start_matches('/').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runcast_handles_and_offsets_name_its_history() {
        assert!(matches!(
            History::of("1f", "42_0"),
            History::Runcast { epoch: 0x1f }
        ));
        assert!(matches!(
            History::of("1f-1780000000000", "42_0"),
            History::Runcast { epoch: 0x1f }
        ));
        assert!(matches!(
            History::of("run-abc", "1780000000000_0"),
            History::Other { .. }
        ));
        assert!(matches!(History::of("1f", "42_2"), History::Other { .. }));
        assert_ne!(foreign_epoch("a"), foreign_epoch("b"));
        assert_ne!(foreign_epoch(""), 0);
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode("run_1"), "run_1");
        assert_eq!(encode("a/b c?"), "a%2Fb%20c%3F");
    }

    #[test]
    fn updates_merge_over_the_row_seen() {
        let merged = merge(r#"{"a":"1","b":"2"}"#, r#"{"b":"3","c":null}"#).unwrap();
        assert_eq!(merged, r#"{"a":"1","b":"3","c":null}"#);
        assert_eq!(merge("[", "{}"), None);
    }
}
