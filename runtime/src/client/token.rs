//! Public access tokens, minted as the SDK's `auth.createPublicToken` mints them: the claims
//! the server names (`POST /api/v1/auth/jwt/claims`), the scopes asked, signed here with the
//! secret key (HS256).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::{Client, ClientError};
use crate::model::{BatchId, RunId};
use crate::typed::Task;
use crate::wire::{TOKEN_AUDIENCE, TOKEN_ISSUER};

/// What a public access token grants, and for how long: give it to a browser or another
/// service, which then reaches only that.
///
/// ```
/// use std::time::Duration;
/// use runcast::client::PublicToken;
/// # use runcast::RunId;
///
/// let token = PublicToken::new()
///     .read_run(&RunId::from("run_1"))
///     .read_tag("user:42")
///     .expires_in(Duration::from_secs(3_600));
/// assert_eq!(token.scopes(), ["read:runs:run_1", "read:tags:user:42"]);
/// ```
#[derive(Debug, Clone)]
pub struct PublicToken {
    scopes: Vec<String>,
    expires_in: Duration,
    one_time: bool,
}

impl Default for PublicToken {
    fn default() -> Self {
        Self::new()
    }
}

impl PublicToken {
    /// A token with no scope, valid 15 minutes (the SDK's default).
    pub fn new() -> Self {
        PublicToken {
            scopes: Vec::new(),
            expires_in: Duration::from_secs(15 * 60),
            one_time: false,
        }
    }

    /// Reads run `id` (its feed, its streams, its object).
    pub fn read_run(self, id: &RunId) -> Self {
        self.scope(format!("read:runs:{id}"))
    }

    /// Reads every run.
    pub fn read_all_runs(self) -> Self {
        self.scope("read:runs")
    }

    /// Reads the runs tagged `tag`, and their tag feed.
    pub fn read_tag(self, tag: &str) -> Self {
        self.scope(format!("read:tags:{tag}"))
    }

    /// Reads the runs of batch `id`, and its feed.
    pub fn read_batch(self, id: &BatchId) -> Self {
        self.scope(format!("read:batch:{id}"))
    }

    /// Reads the runs of task `T`.
    pub fn read_task<T: Task>(self) -> Self {
        self.scope(format!("read:tasks:{}", T::ID))
    }

    /// Triggers runs of `T` (once, with [`one_time_use`](Self::one_time_use)).
    pub fn trigger_task<T: Task>(self) -> Self {
        self.scope(format!("trigger:tasks:{}", T::ID))
    }

    /// Triggers batches of runs of `T`.
    pub fn batch_trigger_task<T: Task>(self) -> Self {
        self.scope(format!("batchTrigger:tasks:{}", T::ID))
    }

    /// Any scope, in Trigger.dev's grammar (`action:type[:id]`).
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scopes.push(scope.into());
        self
    }

    /// How long the token lasts.
    pub fn expires_in(mut self, duration: Duration) -> Self {
        self.expires_in = duration;
        self
    }

    /// The token triggers once (`otu`), as the SDK's trigger tokens unless made for many
    /// uses.
    pub fn one_time_use(mut self) -> Self {
        self.one_time = true;
        self
    }

    /// The scopes granted.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }
}

impl Client {
    /// Mints a public access token as the SDK's `auth.createPublicToken` does: asks the server
    /// for the claims to sign (`POST /api/v1/auth/jwt/claims`), adds the scopes and times,
    /// and signs with this client's key, which must be the server's secret key. Refuses a
    /// token with no scope, or a blank one.
    pub async fn create_public_token(&self, token: &PublicToken) -> Result<String, ClientError> {
        if token.scopes.is_empty() || token.scopes.iter().any(|s| s.trim().is_empty()) {
            return Err(ClientError::Response {
                url: "(no request)".to_owned(),
                reason: "a public token needs at least one scope, none blank".to_owned(),
            });
        }
        let base: Value = self
            .call(Method::POST, "/api/v1/auth/jwt/claims", None, true)
            .await?;
        let mut claims = match base {
            Value::Object(claims) => claims,
            other => {
                return Err(ClientError::Response {
                    url: "/api/v1/auth/jwt/claims".to_owned(),
                    reason: format!("the claims are not an object: {other}"),
                });
            }
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let extra: Map<String, Value> = [
            ("iss", json!(TOKEN_ISSUER)),
            ("aud", json!(TOKEN_AUDIENCE)),
            ("iat", json!(now)),
            ("exp", json!(now + token.expires_in.as_secs().max(1))),
            ("scopes", json!(token.scopes)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .chain(token.one_time.then(|| ("otu".to_owned(), json!(true))))
        .collect();
        claims.extend(extra);
        let unsigned = |e: jsonwebtoken::errors::Error| ClientError::Response {
            url: "(signing)".to_owned(),
            reason: format!("could not sign the token: {e}"),
        };
        let key = EncodingKey::from_secret(self.inner.key.as_bytes()).map_err(unsigned)?;
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).map_err(unsigned)
    }
}
