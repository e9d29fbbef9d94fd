//! Who a request comes from: the secret key, or a public access token (an HS256 JWT signed
//! with it) and the scopes it grants (`wire::scope`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use crate::support::lock;
use crate::wire::scope::{Resource, any_grants};
use crate::wire::{TOKEN_AUDIENCE, TOKEN_ISSUER};

/// The keys that sign and check tokens, from the secret key.
pub(super) struct Keys {
    secret: Vec<u8>,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Keys {
    /// The keys of `secret`; `None` if it is empty.
    pub(super) fn new(secret: &str) -> Option<Self> {
        let mut validation = Validation::new(Algorithm::HS256);
        // The SDK's tokens name Trigger.dev's audience; tokens of other issuers need not.
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp"]);
        Some(Keys {
            secret: secret.as_bytes().to_vec(),
            encoding: EncodingKey::from_secret(secret.as_bytes()).ok()?,
            decoding: DecodingKey::from_secret(secret.as_bytes()).ok()?,
            validation,
        })
    }

    /// Whether `token` is the secret key, compared in time that does not depend on where they
    /// differ.
    fn is_secret(&self, token: &str) -> bool {
        let token = token.as_bytes();
        token.len() == self.secret.len()
            && token
                .iter()
                .zip(&self.secret)
                .fold(0, |differ, (a, b)| differ | (a ^ b))
                == 0
    }

    /// A public access token for environment `sub` with `scopes`, valid for `seconds`.
    pub(super) fn mint(&self, sub: &str, scopes: Vec<String>, seconds: u64) -> String {
        self.mint_once(sub, scopes, seconds, false)
    }

    /// [`mint`](Self::mint) a token that triggers once (`otu`), if `one_time`.
    pub(super) fn mint_once(
        &self,
        sub: &str,
        scopes: Vec<String>,
        seconds: u64,
        one_time: bool,
    ) -> String {
        let now = unix_now();
        let claims = Claims {
            sub: Some(sub.to_owned()),
            public: true,
            scopes,
            otu: one_time,
            iss: Some(TOKEN_ISSUER.to_owned()),
            aud: Some(TOKEN_AUDIENCE.to_owned()),
            iat: Some(now),
            exp: now + seconds,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .unwrap_or_else(|error| unreachable!("HS256 signs any claims: {error}"))
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The claims of a public access token that the server reads and writes.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Claims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    #[serde(rename = "pub", default)]
    public: bool,
    #[serde(default)]
    scopes: Vec<String>,
    /// A token that triggers once (Trigger.dev's trigger tokens, unless made for many uses).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    otu: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
    exp: u64,
}

/// Who a request comes from.
#[derive(Debug)]
pub(super) enum Access {
    /// The secret key: everything.
    Secret,
    /// A public access token: what its scopes grant.
    Token {
        scopes: Vec<String>,
        /// For a token that triggers once: its signature (which names it) and when it
        /// expires.
        once: Option<(String, u64)>,
    },
}

impl Access {
    /// Refuses the request unless it may do `action` on one of `resources`.
    pub(super) fn allow(&self, action: &str, resources: &[Resource<'_>]) -> Result<(), ApiError> {
        match self {
            Access::Secret => Ok(()),
            Access::Token { scopes, .. } if any_grants(scopes, action, resources) => Ok(()),
            Access::Token { .. } => Err(ApiError::forbidden()),
        }
    }

    /// For a token that triggers once, takes its one trigger (refused if it was taken), and
    /// gives it back if `trigger` fails: a refused trigger does not use the token up.
    pub(super) async fn trigger_once<T>(
        &self,
        spent: &Spent,
        what: &str,
        trigger: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        let Access::Token {
            once: Some((signature, expires)),
            ..
        } = self
        else {
            return trigger.await;
        };
        {
            let mut used = lock(&spent.0);
            let now = unix_now();
            used.retain(|_, &mut expires| expires > now);
            if used.insert(signature.clone(), *expires).is_some() {
                return Err(ApiError::unprocessable(format!(
                    "Cannot trigger {what} with a one-time use token as it has already been used."
                )));
            }
        }
        let triggered = trigger.await;
        if triggered.is_err() {
            lock(&spent.0).remove(signature);
        }
        triggered
    }

    /// Refuses the request unless it carries the secret key.
    pub(super) fn secret(&self) -> Result<(), ApiError> {
        match self {
            Access::Secret => Ok(()),
            Access::Token { .. } => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "This route takes the secret key, not a public access token",
            )),
        }
    }
}

impl FromRequestParts<AppState> for Access {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let missing = || ApiError::new(StatusCode::UNAUTHORIZED, "Invalid or Missing API key");
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(missing)?;
        let header = header.to_str().map_err(|_| missing())?;
        let (scheme, token) = header.split_once(' ').ok_or_else(missing)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(missing());
        }
        let token = token.trim();
        let keys = &state.config.keys;
        if keys.is_secret(token) {
            return Ok(Access::Secret);
        }
        // Not the key: a public access token, or nothing.
        if token.split('.').count() != 3 {
            return Err(missing());
        }
        let claims = keys.verify(token)?;
        let once = claims.otu.then(|| {
            (
                token.rsplit('.').next().unwrap_or(token).to_owned(),
                claims.exp,
            )
        });
        Ok(Access::Token {
            scopes: claims.scopes,
            once,
        })
    }
}

/// The one-time tokens used, until they expire.
#[derive(Debug, Default)]
pub(super) struct Spent(Mutex<HashMap<String, u64>>);

impl Keys {
    /// The scopes of a public access token signed with these keys, or why it is refused
    /// (`401`).
    pub(super) fn scopes(&self, token: &str) -> Result<Vec<String>, ApiError> {
        Ok(self.verify(token)?.scopes)
    }

    /// The claims of a public access token signed with these keys, or why it is refused
    /// (`401`).
    fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let invalid = |reason: &dyn std::fmt::Display| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                format!("Public Access Token is invalid: {reason}"),
            )
        };
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|error| invalid(&error))?
            .claims;
        if !claims.public {
            return Err(invalid(&"it is not public (`pub: true`)"));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn no_token_but_a_signed_one_passes(a in "[A-Za-z0-9_-]{0,40}", b in "[A-Za-z0-9_-]{0,80}", c in "[A-Za-z0-9_-]{0,60}", text in ".{0,100}") {
            let keys = Keys::new("tr_dev_secret").unwrap();
            let token = format!("{a}.{b}.{c}");
            prop_assert!(keys.scopes(&token).is_err());
            prop_assert!(keys.scopes(&text).is_err());
        }
    }

    #[test]
    fn minted_tokens_read_back_and_foreign_ones_do_not() {
        let keys = Keys::new("tr_dev_secret").unwrap();
        let token = keys.mint("env", vec!["read:runs:run_1".into()], 60);
        let claims = jsonwebtoken::decode::<Claims>(&token, &keys.decoding, &keys.validation)
            .unwrap()
            .claims;
        assert!(claims.public);
        assert_eq!(claims.scopes, ["read:runs:run_1"]);
        let other = Keys::new("tr_dev_other").unwrap();
        assert!(Keys::new("").is_none());
        assert!(
            jsonwebtoken::decode::<Claims>(&token, &other.decoding, &other.validation).is_err()
        );
        assert!(keys.is_secret("tr_dev_secret"));
        assert!(!keys.is_secret("tr_dev_secreT"));
        assert!(!keys.is_secret("tr_dev_secret2"));
    }
}
