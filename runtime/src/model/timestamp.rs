//! [`Timestamp`]: a UTC instant with millisecond precision, as JavaScript's `Date` and the
//! `timestamp(3)` columns Trigger.dev stores run times in. The calendar and the text forms come
//! from [`jiff`].

use std::borrow::Cow;
use std::fmt;
use std::num::NonZeroU64;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use jiff::fmt::temporal::{DateTimePrinter, Pieces};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest prefix of the offending input kept in a [`ParseTimestampError`].
const MAX_ERROR_INPUT_BYTES: usize = 64;

/// The earliest and latest milliseconds jiff represents (`-009999-01-02T01:59:59Z` and
/// `9999-12-30T22:00:00Z`: the years -9999 to 9999, less a day for any offset).
const MIN_MILLIS: i64 = -377_705_023_201_000;
const MAX_MILLIS: i64 = 253_402_207_200_000;

/// A UTC instant with millisecond precision, like JavaScript's `Date`: the number of
/// milliseconds since the Unix epoch (`1970-01-01T00:00:00.000Z`), negative before it.
/// Ordering, equality and hashing follow that number.
///
/// * [`Display`](fmt::Display) and [`Serialize`] write exactly what
///   `Date.prototype.toISOString()` writes: `YYYY-MM-DDTHH:MM:SS.sssZ`, always with three
///   fraction digits, and years before 0 as `-YYYYYY`.
/// * [`FromStr`] and [`Deserialize`] read ISO 8601 / RFC 3339 date-times and the Postgres text
///   form; see the [`FromStr`] implementation.
/// * Its range is jiff's: the years -9999 to 9999. Text outside it is refused with a clear error.
/// * Its JSON Schema is `{"type": "string", "format": "date-time"}`.
///
/// ```
/// use runcast::Timestamp;
///
/// let t: Timestamp = "2024-11-01 12:34:56.789+00".parse()?;
/// assert_eq!(t.to_string(), "2024-11-01T12:34:56.789Z");
/// assert_eq!(t.unix_millis(), 1_730_464_496_789);
/// # Ok::<(), runcast::ParseTimestampError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    /// The milliseconds, within jiff's range (see [`Timestamp::from_unix_millis`]), with the
    /// sign bit flipped: ordered as the milliseconds are, and never zero, so that an
    /// `Option<Timestamp>` (a run has five) takes no more room than a `Timestamp`.
    biased: NonZeroU64,
}

/// Flips the sign bit: turns `i64` order into `u64` order, and back.
const SIGN: u64 = 1 << 63;

impl Timestamp {
    /// `millis`, clamped to jiff's range.
    const fn clamped(millis: i64) -> Self {
        let millis = if millis < MIN_MILLIS {
            MIN_MILLIS
        } else if millis > MAX_MILLIS {
            MAX_MILLIS
        } else {
            millis
        };
        // Zero only for `i64::MIN`, far outside jiff's range.
        let biased = match NonZeroU64::new(millis.cast_unsigned() ^ SIGN) {
            Some(biased) => biased,
            None => NonZeroU64::MIN,
        };
        Self { biased }
    }

    /// The timestamp `ms` milliseconds after the Unix epoch (before it if negative), the number
    /// JavaScript's `Date.prototype.getTime()` gives; `None` outside the years -9999 to 9999.
    #[must_use]
    pub const fn from_unix_millis(ms: i64) -> Option<Self> {
        if MIN_MILLIS <= ms && ms <= MAX_MILLIS {
            Some(Self::clamped(ms))
        } else {
            None
        }
    }

    /// Milliseconds since the Unix epoch (negative before 1970), the number JavaScript's
    /// `Date.prototype.getTime()` gives.
    #[must_use]
    pub const fn unix_millis(self) -> i64 {
        (self.biased.get() ^ SIGN).cast_signed()
    }

    /// Now, by the system clock, truncated to whole milliseconds.
    #[must_use]
    pub fn now() -> Self {
        // Read directly: this is on every change's path, and needs no calendar.
        let millis = match SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
            Ok(since) => i64::try_from(since.as_millis()).unwrap_or(MAX_MILLIS),
            Err(before) => i64::try_from(before.duration().as_millis()).map_or(MIN_MILLIS, |m| -m),
        };
        Self::clamped(millis)
    }

    /// `self + d` (truncated to whole milliseconds), or `None` past the year 9999.
    #[must_use]
    pub fn checked_add(self, d: Duration) -> Option<Self> {
        let delta = i64::try_from(d.as_millis()).ok()?;
        Self::from_unix_millis(self.unix_millis().checked_add(delta)?)
    }

    /// The time from `earlier` to `self`, or [`Duration::ZERO`] if `earlier` is not earlier.
    #[must_use]
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        if self <= earlier {
            Duration::ZERO
        } else {
            Duration::from_millis(self.unix_millis().abs_diff(earlier.unix_millis()))
        }
    }

    fn to_jiff(self) -> jiff::Timestamp {
        // Within range: every constructor checks it.
        jiff::Timestamp::from_millisecond(self.unix_millis()).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    }
}

impl From<jiff::Timestamp> for Timestamp {
    /// Truncates to whole milliseconds, towards the past.
    fn from(t: jiff::Timestamp) -> Self {
        let millis = t.as_millisecond();
        // `as_millisecond` truncates towards zero; before the epoch, a leftover fraction of a
        // millisecond goes one millisecond further into the past.
        let past = t.subsec_nanosecond() < 0 && t.subsec_nanosecond() % 1_000_000 != 0;
        let millis = millis - i64::from(past);
        // jiff's last nanoseconds are past its last whole millisecond: clamped to it.
        Self::clamped(millis)
    }
}

impl From<Timestamp> for jiff::Timestamp {
    fn from(t: Timestamp) -> Self {
        t.to_jiff()
    }
}

impl From<Timestamp> for SystemTime {
    fn from(t: Timestamp) -> Self {
        t.to_jiff().into()
    }
}

impl TryFrom<SystemTime> for Timestamp {
    type Error = ParseTimestampError;

    /// Truncates to whole milliseconds, towards the past; fails outside the years -9999 to 9999.
    fn try_from(time: SystemTime) -> Result<Self, Self::Error> {
        jiff::Timestamp::try_from(time)
            .map(Self::from)
            .map_err(|e| ParseTimestampError::new(&format!("{time:?}"), &e))
    }
}

impl fmt::Display for Timestamp {
    /// Writes exactly what JavaScript's `Date.prototype.toISOString()` writes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const PRINTER: DateTimePrinter = DateTimePrinter::new().precision(Some(3));
        let mut text = String::with_capacity(24);
        PRINTER
            .print_timestamp(&self.to_jiff(), &mut text)
            .map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

impl fmt::Debug for Timestamp {
    /// Writes `Timestamp(2024-11-01T12:34:56.789Z)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

/// Text that is not a [`Timestamp`], or a [`SystemTime`] outside its range.
///
/// The message quotes the input and says what is wrong with it:
///
/// ```text
/// invalid timestamp `2024-13-01T00:00:00Z`: failed to parse month ... (expected an ISO 8601 /
/// RFC 3339 date-time such as `2024-11-01T12:34:56.789Z`)
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid timestamp `{}`: {reason} (expected an ISO 8601 / RFC 3339 date-time such as `2024-11-01T12:34:56.789Z`)",
    .input.escape_debug()
)]
pub struct ParseTimestampError {
    input: String,
    reason: String,
}

impl ParseTimestampError {
    fn new(input: &str, reason: &dyn fmt::Display) -> Self {
        let input = if input.len() <= MAX_ERROR_INPUT_BYTES {
            input.to_owned()
        } else {
            let mut end = MAX_ERROR_INPUT_BYTES;
            while !input.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}…", input.get(..end).unwrap_or_default())
        };
        Self {
            input,
            reason: reason.to_string(),
        }
    }

    /// The refused input (for long inputs, its first 64 bytes and `…`).
    #[must_use]
    pub fn input(&self) -> &str {
        &self.input
    }
}

impl FromStr for Timestamp {
    type Err = ParseTimestampError;

    /// Reads an ISO 8601 / RFC 3339 date-time, as jiff reads them, with or without an offset:
    ///
    /// * `2024-11-01T12:34:56.789Z`, with `T`, `t` or a space between date and time;
    /// * offsets `Z`, `+05:30`, `+0530` and `+05` (Postgres' `timestamptz`), applied;
    /// * no offset (Postgres' and Electric's `timestamp without time zone`): UTC;
    /// * 0 to 9 fraction digits, truncated to milliseconds towards the past, never rounded;
    /// * a date alone, at midnight UTC, as JavaScript's `Date.parse` reads it.
    ///
    /// A leap second (`:60`) reads as `:59`, as jiff reads it. A time zone annotation
    /// (`[Europe/Paris]`), other trailing text and years past ±9999 are refused.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let error = |e: &dyn fmt::Display| ParseTimestampError::new(s, e);
        let pieces = Pieces::parse(s).map_err(|e| error(&e))?;
        if pieces.time_zone_annotation().is_some() {
            return Err(error(&"a time zone annotation is not supported"));
        }
        let instant = if pieces.offset().is_some() {
            s.parse::<jiff::Timestamp>().map_err(|e| error(&e))?
        } else {
            let time = pieces.time().unwrap_or(jiff::civil::Time::midnight());
            let civil = pieces.date().to_datetime(time);
            jiff::tz::Offset::UTC
                .to_timestamp(civil)
                .map_err(|e| error(&e))?
        };
        Ok(Self::from(instant))
    }
}

impl Serialize for Timestamp {
    /// Writes the [`Display`](fmt::Display) text, such as `"2024-11-01T12:34:56.789Z"`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    /// Reads a string [`FromStr`] accepts.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TimestampVisitor)
    }
}

struct TimestampVisitor;

impl Visitor<'_> for TimestampVisitor {
    type Value = Timestamp;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an ISO 8601 / RFC 3339 date-time string such as `2024-11-01T12:34:56.789Z`")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        v.parse().map_err(E::custom)
    }
}

impl JsonSchema for Timestamp {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Timestamp".into()
    }

    fn schema_id() -> Cow<'static, str> {
        concat!(module_path!(), "::Timestamp").into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        schemars::json_schema!({
            "type": "string",
            "format": "date-time"
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ts(ms: i64) -> Timestamp {
        Timestamp::from_unix_millis(ms).unwrap()
    }

    #[test]
    fn an_absent_timestamp_takes_no_room() {
        assert_eq!(size_of::<Option<Timestamp>>(), size_of::<i64>());
    }

    proptest! {
        /// Timestamps keep their milliseconds, and compare as their milliseconds do, across
        /// the whole range (before and after the epoch, at both ends).
        #[test]
        fn timestamps_keep_and_order_their_milliseconds(
            a in prop_oneof![MIN_MILLIS..=MAX_MILLIS, Just(MIN_MILLIS), Just(MAX_MILLIS), -2i64..2],
            b in prop_oneof![MIN_MILLIS..=MAX_MILLIS, Just(MIN_MILLIS), Just(MAX_MILLIS), -2i64..2],
        ) {
            let (ta, tb) = (ts(a), ts(b));
            prop_assert_eq!(ta.unix_millis(), a);
            prop_assert_eq!(ta.cmp(&tb), a.cmp(&b));
            prop_assert_eq!(ta == tb, a == b);
        }
    }

    fn parse_ok(s: &str) -> Timestamp {
        match s.parse() {
            Ok(t) => t,
            Err(e) => panic!("failed to parse {s:?}: {e}"),
        }
    }

    /// (millis, JS `new Date(millis).toISOString()`), checked against Node.
    const KNOWN: &[(i64, &str)] = &[
        (0, "1970-01-01T00:00:00.000Z"),
        (1, "1970-01-01T00:00:00.001Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (1_730_464_496_789, "2024-11-01T12:34:56.789Z"),
        (1_709_164_800_000, "2024-02-29T00:00:00.000Z"),
        (951_868_799_999, "2000-02-29T23:59:59.999Z"),
        (-2_203_891_200_000, "1900-03-01T00:00:00.000Z"),
        (-14_182_940_000, "1969-07-20T20:17:40.000Z"),
        (-11_676_096_000_000, "1600-01-01T00:00:00.000Z"),
        (-62_135_596_800_000, "0001-01-01T00:00:00.000Z"),
        (-62_135_596_800_001, "0000-12-31T23:59:59.999Z"),
        (-62_198_755_200_000, "-000001-01-01T00:00:00.000Z"),
        (-62_198_755_200_001, "-000002-12-31T23:59:59.999Z"),
    ];

    #[test]
    fn writes_what_javascript_writes_and_reads_it_back() {
        for &(ms, text) in KNOWN {
            assert_eq!(ts(ms).to_string(), text, "millis {ms}");
            assert_eq!(parse_ok(text), ts(ms), "{text}");
        }
        assert_eq!(
            format!("{:?}", ts(1_730_464_496_789)),
            "Timestamp(2024-11-01T12:34:56.789Z)"
        );
    }

    #[test]
    fn reads_the_forms_trigger_dev_postgres_and_electric_send() {
        let z = parse_ok("2024-11-01T12:34:56.789Z");
        assert_eq!(z, ts(1_730_464_496_789));
        for same in [
            "2024-11-01 12:34:56.789",
            "2024-11-01T12:34:56.789",
            "2024-11-01t12:34:56.789z",
            "2024-11-01T18:04:56.789+05:30",
            "2024-11-01T04:34:56.789-08:00",
            "2024-11-01T12:34:56.789-00:00",
            "2024-11-01 12:34:56.789+00",
            "2024-11-01 14:34:56.789+02",
            "2024-11-01T18:04:56.789+0530",
            "2024-11-01 12:34:56.789999",
            "2024-11-01T12:34:56.7891Z",
        ] {
            assert_eq!(parse_ok(same), z, "{same}");
        }
        assert_eq!(parse_ok("2024-11-01"), parse_ok("2024-11-01T00:00:00Z"));
        assert_eq!(
            parse_ok("2025-01-01T05:29:59.999+05:30"),
            parse_ok("2024-12-31T23:59:59.999Z")
        );
        // Before the epoch, truncation still goes towards the past.
        assert_eq!(parse_ok("1969-12-31T23:59:59.9999Z"), ts(-1));
        assert_eq!(parse_ok("1969-12-31T23:59:59.999999999Z"), ts(-1));
    }

    #[test]
    fn refuses_what_is_not_a_timestamp_and_says_what() {
        for bad in [
            "",
            "2024-13-01T00:00:00Z",
            "2024-02-30T00:00:00Z",
            "2024-11-01T24:00:00Z",
            "2024-11-01T12:34:56Zjunk",
            " 2024-11-01T12:34:56Z",
            "2024-11-01T12:34:56+99:00",
            "2024-11-01T12:34:56Z[Europe/Paris]",
            "2024-11-01T12:34:56[Europe/Paris]",
            "+010000-01-01T00:00:00.000Z",
            "1730464496789",
        ] {
            let err = bad.parse::<Timestamp>().unwrap_err();
            let message = err.to_string();
            assert!(
                message.starts_with("invalid timestamp `"),
                "{bad:?}: {message}"
            );
            assert!(message.contains("2024-11-01T12:34:56.789Z"), "{message}");
        }
        let long = format!("2024-11-01T00:00:00Z{}", "é".repeat(100));
        let err = long.parse::<Timestamp>().unwrap_err();
        assert!(err.input().ends_with('…') && err.input().len() <= MAX_ERROR_INPUT_BYTES + 3);
    }

    #[test]
    fn arithmetic_and_conversions_stay_in_range() {
        assert_eq!(
            ts(1_000).checked_add(Duration::from_millis(1_500)),
            Some(ts(2_500))
        );
        assert_eq!(ts(0).checked_add(Duration::from_secs(u64::MAX)), None);
        assert_eq!(
            ts(0).checked_add(Duration::from_secs(20_000 * 366 * 86_400)),
            None
        );
        assert_eq!(
            ts(2_500).saturating_duration_since(ts(1_000)),
            Duration::from_millis(1_500)
        );
        assert_eq!(
            ts(1_000).saturating_duration_since(ts(1_500)),
            Duration::ZERO
        );
        assert_eq!(Timestamp::from_unix_millis(i64::MAX), None);
        for (edge, outside) in [(MIN_MILLIS, MIN_MILLIS - 1), (MAX_MILLIS, MAX_MILLIS + 1)] {
            assert!(jiff::Timestamp::from_millisecond(edge).is_ok());
            assert!(jiff::Timestamp::from_millisecond(outside).is_err());
            assert_eq!(Timestamp::from_unix_millis(outside), None);
            assert_eq!(parse_ok(&ts(edge).to_string()), ts(edge));
        }
        assert_eq!(Timestamp::from(jiff::Timestamp::MAX), ts(MAX_MILLIS));
        assert_eq!(Timestamp::from(jiff::Timestamp::MIN), ts(MIN_MILLIS));
        for ms in [0, 1, -1, 1_730_464_496_789, -2_203_891_200_000] {
            assert_eq!(Timestamp::try_from(SystemTime::from(ts(ms))), Ok(ts(ms)));
            assert_eq!(Timestamp::from(jiff::Timestamp::from(ts(ms))), ts(ms));
        }
        let before = std::time::UNIX_EPOCH - Duration::from_micros(1_001);
        assert_eq!(Timestamp::try_from(before), Ok(ts(-2)));
        let now = Timestamp::now();
        assert!(now > parse_ok("2024-01-01T00:00:00Z") && now < parse_ok("2200-01-01T00:00:00Z"));
    }

    #[test]
    fn serde_and_schema() {
        let t = ts(1_730_464_496_789);
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"2024-11-01T12:34:56.789Z\""
        );
        let escaped: Timestamp =
            serde_json::from_str("\"2024-11-01T12:34:56.789\\u005a\"").unwrap();
        assert_eq!(escaped, t);
        let value = serde_json::Value::String("2024-11-01 12:34:56.789".to_owned());
        assert_eq!(serde_json::from_value::<Timestamp>(value).unwrap(), t);
        let err = serde_json::from_str::<Timestamp>("1730464496789").unwrap_err();
        assert!(err.to_string().contains("date-time string"), "{err}");
        let schema = schemars::schema_for!(Timestamp);
        assert_eq!(schema.as_value()["format"], "date-time");
    }
}
