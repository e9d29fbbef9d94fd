//! Payloads the SDK uploads apart (128 KiB and more, `trigger-sdk-v4-wire.md` §1): it asks
//! `PUT /api/v2/packets/{path}` where to put one, `PUT`s the packet there, then triggers with
//! the path as an `application/store` packet. The server keeps uploaded packets (an hour,
//! within a total size: `ServerConfig::max_packet_bytes`; see `held`, in memory or in the
//! database), and a trigger that names one reads it as the packet it holds, so runs whose
//! payloads the SDK offloads work as any other. (Run rows carry payloads and outputs whole,
//! whatever their size: the SDK reads them from the feed as they are.)

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::{CONTENT_TYPE, HOST};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::AppState;
use super::auth::Access;
use super::error::ApiError;
use super::held::Packet;
use crate::wire::packet;
use crate::wire::scope::{Resource, any_grants};

/// How long an upload URL may be used.
const UPLOAD_SECONDS: u64 = 60 * 60;

/// `PUT /api/v2/packets/{path}`: where to upload a packet.
pub(super) async fn upload_url(
    State(state): State<AppState>,
    access: Access,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    access.secret()?;
    if path.is_empty() || path.len() > 1_024 || path.split('/').any(|part| part == "..") {
        return Err(ApiError::bad_request(format!(
            "invalid packet path `{path}`"
        )));
    }
    let config = &state.config;
    let scope = format!("write:packets:{path}");
    let token = config
        .keys
        .mint(&config.environment, vec![scope], UPLOAD_SECONDS);
    let origin = match &config.public_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let host = headers.get(HOST).and_then(|h| h.to_str().ok());
            let host = host.ok_or_else(|| ApiError::bad_request("no Host header"))?;
            let scheme = headers
                .get("x-forwarded-proto")
                .and_then(|h| h.to_str().ok())
                .unwrap_or("http");
            format!("{scheme}://{host}")
        }
    };
    Ok(Json(json!({
        "presignedUrl": format!("{origin}/api/v1/packets/upload/{token}"),
        "storagePath": path,
    })))
}

/// `PUT /api/v1/packets/upload/{token}`: the packet itself, at the URL `upload_url` gave (its
/// token is the credential).
pub(super) async fn upload(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let scopes = state.config.keys.scopes(&token)?;
    let path = scopes
        .iter()
        .find_map(|scope| scope.strip_prefix("write:packets:"))
        .ok_or_else(ApiError::forbidden)?
        .to_owned();
    if !any_grants(&scopes, "write", &[Resource::one("packets", &path)]) {
        return Err(ApiError::forbidden());
    }
    let data = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_request("a packet is UTF-8 text"))?;
    let kind = headers
        .get(CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or(packet::JSON)
        .to_owned();
    let packet = Packet { data, kind };
    let limit = state.config.max_packet_bytes;
    state.held.put_packet(&path, packet, limit).await?;
    Ok(StatusCode::OK)
}
