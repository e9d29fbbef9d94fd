//! Packets: how Trigger.dev's SDK sends a payload, a string with its type beside it.
//!
//! The SDK writes every value that is not a string with superjson
//! (`application/super+json`): `{"json": <value>, "meta": <how to revive some values>}`.
//! runcast keeps the `json` part as the payload and ignores `meta`, so a value superjson marks
//! arrives as its JSON form: a `Date` as its ISO-8601 string (which runcast's [`Timestamp`]
//! and any string field read), a `BigInt` as its decimal string, a `Map` as an array of
//! `[key, value]` pairs, a `Set` as an array, a `RegExp` as its source string, and an
//! `undefined` property as `null` (which an `Option` field reads as `None`). A string payload comes as `text/plain` and is
//! kept as a JSON string.
//!
//! [`Timestamp`]: crate::Timestamp

use std::borrow::Cow;

use serde_json::value::RawValue;

/// The packet types a payload may come in.
pub(crate) const JSON: &str = "application/json";
const SUPERJSON: &str = "application/super+json";
const TEXT: &str = "text/plain";
/// A payload the SDK uploaded first (128 KiB or more) and sends as the path where it lies.
pub(crate) const STORE: &str = "application/store";

/// Why a packet cannot be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PacketError {
    #[error("the payload is not valid {kind}: {source}")]
    Invalid {
        kind: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("a superjson payload must be an object with a `json` property")]
    NoJson,
    #[error("a packet uploaded apart (`application/store`) holds a path, not a payload")]
    Stored,
    #[error(
        "unknown payload type `{0}`; expected application/json, application/super+json or text/plain"
    )]
    UnknownType(String),
}

/// The payload a packet carries, as JSON; `null` when the packet has none.
pub(crate) fn payload(
    data: Option<&str>,
    kind: Option<&str>,
) -> Result<Box<RawValue>, PacketError> {
    payload_of(data.map(Cow::Borrowed), kind)
}

/// [`payload`], taking the packet's text by value: an owned JSON packet becomes the payload
/// without a copy.
pub(crate) fn payload_of(
    data: Option<Cow<'_, str>>,
    kind: Option<&str>,
) -> Result<Box<RawValue>, PacketError> {
    let kind = kind.unwrap_or(JSON);
    let Some(data) = data else {
        return Ok(null());
    };
    let invalid = |kind| move |source| PacketError::Invalid { kind, source };
    match kind {
        JSON => RawValue::from_string(data.into_owned()).map_err(invalid("JSON")),
        SUPERJSON => {
            #[derive(serde::Deserialize)]
            struct SuperJson<'a> {
                #[serde(borrow)]
                json: Option<&'a RawValue>,
            }
            // Not an array: serde reads a struct from one too.
            if !data.trim_start().starts_with('{') {
                return Err(PacketError::NoJson);
            }
            let packet: SuperJson<'_> =
                serde_json::from_str(&data).map_err(invalid("superjson"))?;
            let json = packet.json.ok_or(PacketError::NoJson)?;
            Ok(json.to_owned())
        }
        TEXT => serde_json::value::to_raw_value(&data).map_err(invalid("text")),
        STORE => Err(PacketError::Stored),
        other => Err(PacketError::UnknownType(other.chars().take(64).collect())),
    }
}

fn null() -> Box<RawValue> {
    RawValue::from_string("null".to_owned()).unwrap_or_else(|_| unreachable!("`null` is JSON"))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn any_packet_is_read_or_refused_without_panicking(data in ".{0,100}", kind in prop::sample::select(vec![JSON, SUPERJSON, TEXT, STORE, "x/y"])) {
            if let Ok(raw) = payload(Some(&data), Some(kind)) {
                // What it reads is JSON.
                prop_assert!(serde_json::from_str::<serde_json::Value>(raw.get()).is_ok());
            }
        }
    }

    #[test]
    fn packets_give_their_json() {
        let read = |data, kind| payload(data, kind).map(|raw| raw.get().to_owned());
        assert_eq!(read(Some(r#"{"a":1}"#), Some(JSON)).unwrap(), r#"{"a":1}"#);
        assert_eq!(read(Some("[1]"), None).unwrap(), "[1]");
        let superjson = r#"{"json":{"at":"2026-01-01T00:00:00.000Z","n":"12"},"meta":{"values":{"at":["Date"],"n":["bigint"]}}}"#;
        assert_eq!(
            read(Some(superjson), Some(SUPERJSON)).unwrap(),
            r#"{"at":"2026-01-01T00:00:00.000Z","n":"12"}"#
        );
        assert_eq!(
            read(Some("hi \"you\""), Some(TEXT)).unwrap(),
            r#""hi \"you\"""#
        );
        assert_eq!(read(None, Some(JSON)).unwrap(), "null");
    }

    #[test]
    fn bad_packets_are_refused_with_the_reason() {
        let refused = |data, kind| payload(Some(data), Some(kind)).unwrap_err().to_string();
        assert!(refused("{", JSON).contains("not valid JSON"));
        assert!(refused("{", SUPERJSON).contains("not valid superjson"));
        assert!(refused("[1]", SUPERJSON).contains("`json` property"));
        assert!(refused("{}", SUPERJSON).contains("`json` property"));
        assert!(refused("a/b", STORE).contains("holds a path"));
        assert!(refused("1", "application/xml").contains("unknown payload type"));
    }
}
