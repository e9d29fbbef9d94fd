//! Real HTTP over loopback for the server's tests: a server on an ephemeral port, and
//! requests written and read as bytes, one connection each.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use runcast::http::ServerConfig;
use runcast::{Engine, MetadataOp, TaskContext, task};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The secret key of the test servers.
pub const SECRET: &str = "tr_dev_server_tests_secret";

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Counting {
    pub to: u32,
    /// Milliseconds between two counts.
    pub pause: u64,
}

/// Counts in its metadata, one change per count, then returns the count.
#[task(id = "count")]
pub async fn count(payload: Counting, ctx: TaskContext) -> Result<u32, String> {
    for n in 1..=payload.to {
        ctx.update_metadata([MetadataOp::Set("count".into(), n.into())])
            .await
            .map_err(|e| e.to_string())?;
        tokio::time::sleep(Duration::from_millis(payload.pause)).await;
    }
    Ok(payload.to)
}

/// Returns its payload, whatever JSON it is.
#[task(id = "echo")]
pub async fn echo(payload: Value, _ctx: TaskContext) -> Result<Value, String> {
    Ok(payload)
}

/// Writes each word on its stream `words`, a pause apart, then returns how many it wrote.
#[task(id = "write", streams(words = String))]
pub async fn write(payload: Vec<String>, ctx: TaskContext) -> Result<usize, String> {
    let words = ctx.stream(Write::WORDS);
    for word in &payload {
        words.append(word).await.map_err(|e| e.to_string())?;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(payload.len())
}

/// Serves `runcast::http::router` over `engine` on a loopback port, for the rest of the test.
pub async fn serve(engine: Engine, config: ServerConfig) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = runcast::http::router(engine, config);
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// An HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// One request on a connection of its own (`Connection: close`), with the token as
/// `Authorization: Bearer` and the body as JSON.
pub async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Reply {
    call_headers(addr, method, path, token, &[], body).await
}

/// [`call`] with more headers.
pub async fn call_headers(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let body = body.unwrap_or_default();
    let mut extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    if let Some(token) = token {
        extra.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // A server that refuses a body (too large) may answer and close before it is all written.
    let _ = stream.write_all(request.as_bytes()).await;
    let mut raw = Vec::new();
    // The server may close before reading a body it refused: what it answered is still read.
    let _ = stream.read_to_end(&mut raw).await;
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Reply {
        status,
        headers,
        body,
    }
}

/// The events of a server-sent events body: each one's fields (`event`, `id`, `data`).
pub fn events(body: &str) -> Vec<Vec<(String, String)>> {
    body.split("\n\n")
        .map(|event| {
            event
                .lines()
                .filter(|line| !line.starts_with(':'))
                .filter_map(|line| line.split_once(':'))
                .map(|(field, value)| (field.to_owned(), value.trim_start().to_owned()))
                .collect::<Vec<_>>()
        })
        .filter(|fields| !fields.is_empty())
        .collect()
}

/// The body of a chunked response.
fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        body.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
    body
}
