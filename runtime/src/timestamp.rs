//! [`Timestamp`]: a UTC instant with millisecond precision.
//!
//! This mirrors JavaScript's `Date` and the `timestamp(3)` columns Trigger.dev
//! stores run times in: an `i64` count of milliseconds since the Unix epoch
//! (`1970-01-01T00:00:00.000Z`), which may be negative.
//!
//! The text form is exactly what `Date.prototype.toISOString()` produces, e.g.
//! `2024-11-01T12:34:56.789Z`. Parsing accepts that form plus the common
//! variants sent by Trigger.dev, Postgres and Electric (see
//! [`Timestamp`'s `FromStr` implementation](Timestamp#impl-FromStr-for-Timestamp)).
//!
//! The calendar arithmetic is the proleptic Gregorian calendar, implemented with
//! Howard Hinnant's `days_from_civil` / `civil_from_days` algorithms
//! (<https://howardhinnant.github.io/date_algorithms.html>), so no date/time
//! crate is needed.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const MILLIS_PER_SECOND: i64 = 1_000;
const MILLIS_PER_MINUTE: i64 = 60 * MILLIS_PER_SECOND;
const MILLIS_PER_HOUR: i64 = 60 * MILLIS_PER_MINUTE;
const MILLIS_PER_DAY: i64 = 24 * MILLIS_PER_HOUR;

/// Largest year magnitude accepted by the parser.
///
/// `i64` milliseconds span roughly ±292 million years, so anything beyond this
/// is certainly out of range; capping it early keeps the calendar arithmetic
/// free of overflow.
const MAX_ABS_YEAR: i64 = 300_000_000;

/// Longest prefix of the offending input kept in a [`ParseTimestampError`].
const MAX_ERROR_INPUT_BYTES: usize = 64;

/// A UTC instant with millisecond precision, like JavaScript's `Date`.
///
/// Internally this is the number of milliseconds since the Unix epoch
/// (`1970-01-01T00:00:00.000Z`); negative values are instants before the epoch.
/// Ordering, equality and hashing follow that number.
///
/// * [`Display`](fmt::Display) and [`Serialize`] produce exactly
///   `Date.prototype.toISOString()`: `YYYY-MM-DDTHH:MM:SS.sssZ`, always with
///   three fraction digits. Years outside `0..=9999` are written as a sign
///   followed by (at least) six digits, e.g. `+010000-01-01T00:00:00.000Z` or
///   `-000001-01-01T00:00:00.000Z`.
/// * [`FromStr`] and [`Deserialize`] accept ISO-8601 / RFC 3339 date-times
///   and the Postgres text form; see the [`FromStr`] implementation.
/// * The JSON schema is `{"type": "string", "format": "date-time"}`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    millis: i64,
}

impl Timestamp {
    /// Creates a timestamp from milliseconds since the Unix epoch (may be
    /// negative), the same number as JavaScript's `Date.prototype.getTime()`.
    #[must_use]
    pub const fn from_unix_millis(ms: i64) -> Self {
        Self { millis: ms }
    }

    /// Returns the number of milliseconds since the Unix epoch (negative
    /// before 1970), the same number as JavaScript's `Date.prototype.getTime()`.
    #[must_use]
    pub const fn unix_millis(self) -> i64 {
        self.millis
    }

    /// Returns the current time from the system clock, truncated to whole
    /// milliseconds.
    ///
    /// A clock outside the representable range (±2^63 ms around the epoch,
    /// about ±292 million years) is clamped to the nearest representable value.
    #[must_use]
    pub fn now() -> Self {
        let millis = match system_time_to_millis(SystemTime::now()) {
            Ok(millis) => millis,
            Err(Overflow::Future) => i64::MAX,
            Err(Overflow::Past) => i64::MIN,
        };
        Self { millis }
    }

    /// Returns `self + d`, or `None` if the result is not representable.
    ///
    /// `d` is truncated to whole milliseconds before it is added.
    #[must_use]
    pub fn checked_add(self, d: Duration) -> Option<Self> {
        let delta = i64::try_from(d.as_millis()).ok()?;
        self.millis.checked_add(delta).map(Self::from_unix_millis)
    }

    /// Returns the time elapsed from `earlier` to `self`, or
    /// [`Duration::ZERO`] if `earlier` is not actually earlier than `self`.
    #[must_use]
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        if self.millis <= earlier.millis {
            Duration::ZERO
        } else {
            Duration::from_millis(self.millis.abs_diff(earlier.millis))
        }
    }
}

/// Which way a conversion from [`SystemTime`] left the `i64` range.
enum Overflow {
    Past,
    Future,
}

/// Converts a `SystemTime` to whole milliseconds since the epoch, rounding
/// towards negative infinity (so sub-millisecond parts are dropped the same
/// way on both sides of the epoch).
fn system_time_to_millis(time: SystemTime) -> Result<i64, Overflow> {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).map_err(|_| Overflow::Future),
        Err(before) => {
            let before = before.duration();
            let mut millis = before.as_millis();
            if before.subsec_nanos() % 1_000_000 != 0 {
                millis += 1;
            }
            // `millis` is at most ~1.8e22, far inside i128.
            let negated = i128::try_from(millis).map_or(i128::MIN, |m| -m);
            i64::try_from(negated).map_err(|_| Overflow::Past)
        }
    }
}

/// Applies `op` (`checked_add` or `checked_sub`) with as much of `d` as the
/// platform's `SystemTime` can hold, instead of failing or panicking.
fn saturating_system_time_op(
    base: SystemTime,
    d: Duration,
    op: fn(&SystemTime, Duration) -> Option<SystemTime>,
) -> SystemTime {
    let mut time = base;
    let mut remaining = d;
    let mut step = d;
    // Each failure halves `step`; each success shrinks `remaining` below
    // `step`, so this ends after at most ~2 * 94 iterations.
    while !remaining.is_zero() && !step.is_zero() {
        step = step.min(remaining);
        match op(&time, step) {
            Some(next) => {
                time = next;
                remaining -= step;
            }
            None => step /= 2,
        }
    }
    time
}

impl From<Timestamp> for SystemTime {
    /// Converts to a `SystemTime`.
    ///
    /// Every `Timestamp` fits on platforms whose `SystemTime` counts signed
    /// 64-bit seconds (Linux, macOS); where the platform range is narrower
    /// (e.g. Windows) the result is clamped to the nearest representable time
    /// instead of panicking.
    fn from(ts: Timestamp) -> Self {
        let magnitude = Duration::from_millis(ts.millis.unsigned_abs());
        if ts.millis >= 0 {
            saturating_system_time_op(SystemTime::UNIX_EPOCH, magnitude, SystemTime::checked_add)
        } else {
            saturating_system_time_op(SystemTime::UNIX_EPOCH, magnitude, SystemTime::checked_sub)
        }
    }
}

impl TryFrom<SystemTime> for Timestamp {
    type Error = ParseTimestampError;

    /// Converts from a `SystemTime`, truncating to whole milliseconds (towards
    /// the past). Fails with [`ParseTimestampErrorKind::OutOfRange`] if the
    /// time is more than 2^63 milliseconds away from the Unix epoch.
    fn try_from(time: SystemTime) -> Result<Self, Self::Error> {
        system_time_to_millis(time)
            .map(Self::from_unix_millis)
            .map_err(|_| {
                ParseTimestampError::new(&format!("{time:?}"), ParseTimestampErrorKind::OutOfRange)
            })
    }
}

// ---------------------------------------------------------------------------
// Civil calendar arithmetic (proleptic Gregorian), after Howard Hinnant.
// ---------------------------------------------------------------------------

/// Days since 1970-01-01 of the civil date `year-month-day`.
///
/// Requires `1 <= month <= 12`, `1 <= day <= 31` and `|year| <= MAX_ABS_YEAR`
/// (which keeps every intermediate value far from overflow).
const fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // [0, 399]
    let mp = (month + 9) % 12; // March = 0, ..., February = 11
    let doy = (153 * mp + 2) / 5 + day - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// Civil date `(year, month, day)` of the given number of days since
/// 1970-01-01.
///
/// Valid for `|days| <= i64::MAX / MILLIS_PER_DAY + 1`, i.e. every day an
/// `i64` of milliseconds can land on.
const fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let day = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    (year, month, day)
}

/// Whether `year` is a leap year in the proleptic Gregorian calendar.
const fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// Number of days in `month` (1..=12) of `year`.
const fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// ---------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------

impl fmt::Display for Timestamp {
    /// Formats exactly like JavaScript's `Date.prototype.toISOString()`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.millis.div_euclid(MILLIS_PER_DAY);
        let ms_of_day = self.millis.rem_euclid(MILLIS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        let hour = ms_of_day / MILLIS_PER_HOUR;
        let minute = ms_of_day % MILLIS_PER_HOUR / MILLIS_PER_MINUTE;
        let second = ms_of_day % MILLIS_PER_MINUTE / MILLIS_PER_SECOND;
        let milli = ms_of_day % MILLIS_PER_SECOND;
        if (0..=9999).contains(&year) {
            write!(f, "{year:04}")?;
        } else {
            // Sign plus at least six digits, like JS extended years.
            write!(f, "{year:+07}")?;
        }
        write!(
            f,
            "-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z"
        )
    }
}

impl fmt::Debug for Timestamp {
    /// Formats as `Timestamp(2024-11-01T12:34:56.789Z)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

/// Error returned when a string is not a valid [`Timestamp`], or when a
/// [`SystemTime`] is outside the range a `Timestamp` can represent.
///
/// The message names the problem and quotes the input, e.g.
///
/// ```text
/// invalid timestamp `2024-13-01T00:00:00Z`: month out of range (expected an
/// ISO-8601 / RFC 3339 date-time such as `2024-11-01T12:34:56.789Z`)
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid timestamp `{}`: {}{}",
    .input.escape_debug(),
    .kind,
    .kind.hint()
)]
pub struct ParseTimestampError {
    input: String,
    kind: ParseTimestampErrorKind,
}

impl ParseTimestampError {
    fn new(input: &str, kind: ParseTimestampErrorKind) -> Self {
        let input = if input.len() <= MAX_ERROR_INPUT_BYTES {
            input.to_owned()
        } else {
            let mut end = MAX_ERROR_INPUT_BYTES;
            while !input.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}…", input.get(..end).unwrap_or_default())
        };
        Self { input, kind }
    }

    /// The rejected input (for long inputs, only the first 64 bytes followed by
    /// `…`).
    #[must_use]
    pub fn input(&self) -> &str {
        &self.input
    }

    /// What was wrong with the input.
    #[must_use]
    pub fn kind(&self) -> ParseTimestampErrorKind {
        self.kind
    }
}

/// The reason a [`ParseTimestampError`] was returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ParseTimestampErrorKind {
    /// The input was the empty string.
    Empty,
    /// The input does not have the expected shape.
    Syntax {
        /// Description of what was expected, e.g. ``"`:` after the hour"``.
        expected: &'static str,
        /// Byte offset in the input where it was expected.
        offset: usize,
    },
    /// The year `-000000` (negative zero), which ISO 8601 forbids.
    NegativeZeroYear,
    /// The month is not in `1..=12`.
    MonthOutOfRange,
    /// The day is not a day of the given month (leap years included).
    DayOutOfRange,
    /// The hour is not in `0..=23`.
    HourOutOfRange,
    /// The minute is not in `0..=59`.
    MinuteOutOfRange,
    /// The second is not in `0..=59`; leap seconds (`60`) are rejected, as
    /// JavaScript's `Date` does.
    SecondOutOfRange,
    /// The fractional seconds have more than 9 digits.
    FractionTooLong,
    /// The UTC offset's hours are not in `0..=23` or its minutes in `0..=59`.
    OffsetOutOfRange,
    /// Characters follow an otherwise complete timestamp.
    TrailingCharacters {
        /// Byte offset of the first unexpected character.
        offset: usize,
    },
    /// The instant is more than 2^63 milliseconds (about 292 million years)
    /// away from the Unix epoch.
    OutOfRange,
}

impl ParseTimestampErrorKind {
    /// Format reminder appended to syntax and field-range errors.
    fn hint(self) -> &'static str {
        match self {
            Self::OutOfRange => "",
            _ => " (expected an ISO-8601 / RFC 3339 date-time such as `2024-11-01T12:34:56.789Z`)",
        }
    }
}

impl fmt::Display for ParseTimestampErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty string"),
            Self::Syntax { expected, offset } => {
                write!(f, "expected {expected} at byte offset {offset}")
            }
            Self::NegativeZeroYear => f.write_str("the year -000000 is not allowed"),
            Self::MonthOutOfRange => f.write_str("month out of range"),
            Self::DayOutOfRange => f.write_str("day out of range for the month"),
            Self::HourOutOfRange => f.write_str("hour out of range"),
            Self::MinuteOutOfRange => f.write_str("minute out of range"),
            Self::SecondOutOfRange => {
                f.write_str("second out of range (leap seconds are not supported)")
            }
            Self::FractionTooLong => f.write_str("more than 9 fractional-second digits"),
            Self::OffsetOutOfRange => f.write_str("UTC offset out of range"),
            Self::TrailingCharacters { offset } => {
                write!(f, "unexpected trailing characters at byte offset {offset}")
            }
            Self::OutOfRange => f.write_str(
                "outside the representable range (±2^63 milliseconds around the Unix epoch)",
            ),
        }
    }
}

/// Byte cursor over the input being parsed.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn syntax(&self, expected: &'static str) -> ParseTimestampErrorKind {
        ParseTimestampErrorKind::Syntax {
            expected,
            offset: self.pos,
        }
    }

    fn expect_byte(
        &mut self,
        byte: u8,
        expected: &'static str,
    ) -> Result<(), ParseTimestampErrorKind> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.syntax(expected))
        }
    }

    /// Consumes exactly `n` ASCII digits (n <= 4) and returns their value.
    fn digits(&mut self, n: usize, expected: &'static str) -> Result<i64, ParseTimestampErrorKind> {
        let mut value = 0;
        for i in 0..n {
            match self.bytes.get(self.pos + i) {
                Some(b @ b'0'..=b'9') => value = value * 10 + i64::from(b - b'0'),
                _ => return Err(self.syntax(expected)),
            }
        }
        self.pos += n;
        Ok(value)
    }

    /// Consumes the longest run of ASCII digits (possibly empty).
    fn digit_run(&mut self) -> &'a [u8] {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.bytes.get(start..self.pos).unwrap_or_default()
    }
}

/// Parses `s` to milliseconds since the epoch.
fn parse_millis(s: &str) -> Result<i64, ParseTimestampErrorKind> {
    use ParseTimestampErrorKind as K;

    if s.is_empty() {
        return Err(K::Empty);
    }
    let mut cur = Cursor {
        bytes: s.as_bytes(),
        pos: 0,
    };

    // Year: `YYYY`, or a sign and at least six digits (JS extended years).
    let year = match cur.peek() {
        Some(sign @ (b'+' | b'-')) => {
            cur.pos += 1;
            let run = cur.digit_run();
            if run.len() < 6 {
                cur.pos -= run.len();
                return Err(cur.syntax("six year digits after the sign"));
            }
            let mut magnitude: i64 = 0;
            for &b in run {
                magnitude = magnitude * 10 + i64::from(b - b'0');
                if magnitude > MAX_ABS_YEAR {
                    return Err(K::OutOfRange);
                }
            }
            if sign == b'-' {
                if magnitude == 0 {
                    return Err(K::NegativeZeroYear);
                }
                -magnitude
            } else {
                magnitude
            }
        }
        _ => cur.digits(4, "a four-digit year")?,
    };
    cur.expect_byte(b'-', "`-` after the year")?;
    let month = cur.digits(2, "a two-digit month")?;
    if !(1..=12).contains(&month) {
        return Err(K::MonthOutOfRange);
    }
    cur.expect_byte(b'-', "`-` after the month")?;
    let day = cur.digits(2, "a two-digit day")?;
    if day < 1 || day > days_in_month(year, month) {
        return Err(K::DayOutOfRange);
    }

    match cur.peek() {
        Some(b'T' | b't' | b' ') => cur.pos += 1,
        _ => return Err(cur.syntax("`T` or a space between the date and the time")),
    }

    let hour = cur.digits(2, "a two-digit hour")?;
    if hour > 23 {
        return Err(K::HourOutOfRange);
    }
    cur.expect_byte(b':', "`:` after the hour")?;
    let minute = cur.digits(2, "a two-digit minute")?;
    if minute > 59 {
        return Err(K::MinuteOutOfRange);
    }
    cur.expect_byte(b':', "`:` after the minute")?;
    let second = cur.digits(2, "a two-digit second")?;
    if second > 59 {
        return Err(K::SecondOutOfRange);
    }

    // Fraction: 1..=9 digits; milliseconds are kept, finer digits truncated.
    let mut milli = 0;
    if cur.peek() == Some(b'.') {
        cur.pos += 1;
        let run = cur.digit_run();
        if run.is_empty() {
            return Err(cur.syntax("a digit after `.`"));
        }
        if run.len() > 9 {
            return Err(K::FractionTooLong);
        }
        for i in 0..3 {
            let digit = run.get(i).map_or(0, |b| i64::from(b - b'0'));
            milli = milli * 10 + digit;
        }
    }

    // Offset: none (UTC), `Z`/`z`, or `±HH`, `±HH:MM`, `±HHMM`.
    let offset_millis = match cur.peek() {
        None => 0,
        Some(b'Z' | b'z') => {
            cur.pos += 1;
            0
        }
        Some(sign @ (b'+' | b'-')) => {
            cur.pos += 1;
            let hours = cur.digits(2, "two-digit offset hours")?;
            let minutes = match cur.peek() {
                Some(b':') => {
                    cur.pos += 1;
                    cur.digits(2, "two-digit offset minutes")?
                }
                Some(b'0'..=b'9') => cur.digits(2, "two-digit offset minutes")?,
                _ => 0,
            };
            if hours > 23 || minutes > 59 {
                return Err(K::OffsetOutOfRange);
            }
            let magnitude = hours * MILLIS_PER_HOUR + minutes * MILLIS_PER_MINUTE;
            if sign == b'-' { -magnitude } else { magnitude }
        }
        Some(_) => {
            return Err(cur.syntax("`Z`, `+HH:MM`, `-HH:MM` or the end of the input"));
        }
    };
    if cur.pos != cur.bytes.len() {
        return Err(K::TrailingCharacters { offset: cur.pos });
    }

    let time_of_day =
        hour * MILLIS_PER_HOUR + minute * MILLIS_PER_MINUTE + second * MILLIS_PER_SECOND + milli;
    // i128 because the first day of the `i64` range starts before `i64::MIN`.
    let millis = i128::from(days_from_civil(year, month, day)) * i128::from(MILLIS_PER_DAY)
        + i128::from(time_of_day)
        - i128::from(offset_millis);
    i64::try_from(millis).map_err(|_| K::OutOfRange)
}

impl FromStr for Timestamp {
    type Err = ParseTimestampError;

    /// Parses an ISO-8601 / RFC 3339 date-time.
    ///
    /// Accepted shape: `DATE SEP TIME [FRACTION] [OFFSET]` where
    ///
    /// * `DATE` is `YYYY-MM-DD`, or with a JS extended year `+YYYYYY-MM-DD` /
    ///   `-YYYYYY-MM-DD` (six or more digits after the sign; `-000000` is
    ///   rejected). The day must exist in that month (leap years included).
    /// * `SEP` is `T`, `t` or a single space (the Postgres text form).
    /// * `TIME` is `HH:MM:SS` with hour `00..=23`, minute and second
    ///   `00..=59`. Leap seconds (`60`) are rejected, as by JavaScript's `Date`.
    /// * `FRACTION` is `.` and 1 to 9 digits; digits beyond milliseconds are
    ///   truncated (towards the past), never rounded.
    /// * `OFFSET` is `Z`, `z`, `+HH:MM`, `-HH:MM`, `+HHMM`/`-HHMM` or `+HH`/`-HH`
    ///   (the Postgres `timestamptz` form), and is applied. With no offset the
    ///   time is taken as UTC, which is how Postgres / Electric send
    ///   `timestamp without time zone` columns.
    ///
    /// Leading or trailing whitespace and any other trailing characters are
    /// rejected, as are instants outside the `i64` millisecond range.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_millis(s)
            .map(Self::from_unix_millis)
            .map_err(|kind| ParseTimestampError::new(s, kind))
    }
}

// ---------------------------------------------------------------------------
// serde / schemars
// ---------------------------------------------------------------------------

impl Serialize for Timestamp {
    /// Serializes as the [`Display`](fmt::Display) string, e.g.
    /// `"2024-11-01T12:34:56.789Z"`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    /// Deserializes from a string accepted by [`FromStr`].
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TimestampVisitor)
    }
}

/// Serde visitor for [`Timestamp`] strings.
struct TimestampVisitor;

impl Visitor<'_> for TimestampVisitor {
    type Value = Timestamp;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an ISO-8601 / RFC 3339 date-time string such as `2024-11-01T12:34:56.789Z`")
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
    use super::*;

    fn ts(ms: i64) -> Timestamp {
        Timestamp::from_unix_millis(ms)
    }

    fn parse(s: &str) -> Result<Timestamp, ParseTimestampError> {
        s.parse()
    }

    fn parse_ok(s: &str) -> Timestamp {
        match parse(s) {
            Ok(t) => t,
            Err(e) => panic!("failed to parse {s:?}: {e}"),
        }
    }

    fn parse_err(s: &str) -> ParseTimestampError {
        match parse(s) {
            Ok(t) => panic!("{s:?} unexpectedly parsed as {t:?}"),
            Err(e) => e,
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
        (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
        (253_402_300_800_000, "+010000-01-01T00:00:00.000Z"),
        (-62_135_596_800_000, "0001-01-01T00:00:00.000Z"),
        (-62_135_596_800_001, "0000-12-31T23:59:59.999Z"),
        (-62_198_755_200_000, "-000001-01-01T00:00:00.000Z"),
        (-62_198_755_200_001, "-000002-12-31T23:59:59.999Z"),
        (8_640_000_000_000_000, "+275760-09-13T00:00:00.000Z"),
        (-8_640_000_000_000_000, "-271821-04-20T00:00:00.000Z"),
    ];

    #[test]
    fn display_matches_js_to_iso_string() {
        for &(ms, text) in KNOWN {
            assert_eq!(ts(ms).to_string(), text, "millis {ms}");
        }
    }

    #[test]
    fn parse_known_values() {
        for &(ms, text) in KNOWN {
            assert_eq!(parse_ok(text), ts(ms), "{text}");
        }
    }

    #[test]
    fn round_trip_selected_values() {
        let values = [
            0,
            1,
            -1,
            999,
            -999,
            1_000,
            -1_000,
            86_399_999,
            86_400_000,
            -86_400_000,
            -86_400_001,
            1_730_464_496_789,
            1_709_164_800_000,
            951_868_799_999,
            -2_203_891_200_000,
            253_402_300_799_999,
            253_402_300_800_000,
            -62_198_755_200_001,
            8_640_000_000_000_000,
            -8_640_000_000_000_000,
            i64::MAX,
            i64::MIN,
            i64::MAX - 1,
            i64::MIN + 1,
        ];
        for ms in values {
            let text = ts(ms).to_string();
            assert_eq!(parse_ok(&text), ts(ms), "{text}");
        }
    }

    #[test]
    fn extreme_values_display() {
        assert_eq!(ts(i64::MAX).to_string(), "+292278994-08-17T07:12:55.807Z");
        assert_eq!(ts(i64::MIN).to_string(), "-292275055-05-16T16:47:04.192Z");
    }

    #[test]
    fn debug_format() {
        assert_eq!(
            format!("{:?}", ts(1_730_464_496_789)),
            "Timestamp(2024-11-01T12:34:56.789Z)"
        );
    }

    #[test]
    fn civil_known_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2000, 2, 29), 11_016);
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(days_from_civil(0, 3, 1), -719_468);
        assert_eq!(civil_from_days(-719_468), (0, 3, 1));
        assert_eq!(civil_from_days(-719_469), (0, 2, 29)); // year 0 is a leap year
    }

    #[test]
    fn every_day_1600_to_2400() {
        let first = days_from_civil(1600, 1, 1);
        let last = days_from_civil(2400, 12, 31);
        let mut expected = (1600, 1, 1);
        for days in first..=last {
            let civil = civil_from_days(days);
            assert_eq!(civil, expected, "day {days}");
            let (y, m, d) = civil;
            assert_eq!(days_from_civil(y, m, d), days);

            // Display -> FromStr identity, at a time of day that exercises
            // every field.
            let t = ts(days * MILLIS_PER_DAY + 45_296_789);
            let text = t.to_string();
            assert_eq!(parse_ok(&text), t, "{text}");

            // Advance the expected date independently of the algorithms.
            expected = if d < days_in_month(y, m) {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
        }
        assert_eq!(expected, (2401, 1, 1));
        assert_eq!(last - first + 1, 292_560); // 801 years incl. 195 leap days
    }

    #[test]
    fn civil_round_trip_across_full_range() {
        let min_day = i64::MIN.div_euclid(MILLIS_PER_DAY);
        let max_day = i64::MAX.div_euclid(MILLIS_PER_DAY);
        let mut days = min_day;
        // ~10k samples spread over the whole range, plus the ends.
        let step = (max_day / 5_000).max(1);
        while days < max_day {
            let (y, m, d) = civil_from_days(days);
            assert!((1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m));
            assert_eq!(days_from_civil(y, m, d), days);
            days += step;
        }
        let (y, m, d) = civil_from_days(max_day);
        assert_eq!(days_from_civil(y, m, d), max_day);
    }

    #[test]
    fn leap_year_rules() {
        assert!(is_leap_year(2024));
        assert!(is_leap_year(2000));
        assert!(!is_leap_year(1900));
        assert!(!is_leap_year(2023));
        assert!(is_leap_year(0));
        assert!(is_leap_year(-4));
        assert!(!is_leap_year(-100));
        assert!(is_leap_year(-400));
        assert_eq!(parse_ok("2024-02-29T00:00:00Z"), ts(1_709_164_800_000));
        assert_eq!(parse_ok("2000-02-29T23:59:59.999Z"), ts(951_868_799_999));
        assert_eq!(
            parse_err("1900-02-29T00:00:00Z").kind(),
            ParseTimestampErrorKind::DayOutOfRange
        );
        assert_eq!(
            parse_err("2023-02-29T00:00:00Z").kind(),
            ParseTimestampErrorKind::DayOutOfRange
        );
        assert_eq!(parse_ok("1900-03-01T00:00:00Z"), ts(-2_203_891_200_000));
    }

    #[test]
    fn accepted_variants() {
        let z = parse_ok("2024-11-01T12:34:56.789Z");
        assert_eq!(z, ts(1_730_464_496_789));
        // Postgres `timestamp` text form, and no offset at all: UTC.
        assert_eq!(parse_ok("2024-11-01 12:34:56.789"), z);
        assert_eq!(parse_ok("2024-11-01T12:34:56.789"), z);
        // Lower-case separators.
        assert_eq!(parse_ok("2024-11-01t12:34:56.789z"), z);
        // Offsets are applied.
        assert_eq!(parse_ok("2024-11-01T18:04:56.789+05:30"), z);
        assert_eq!(parse_ok("2024-11-01T04:34:56.789-08:00"), z);
        assert_eq!(parse_ok("2024-11-01T12:34:56.789+00:00"), z);
        assert_eq!(parse_ok("2024-11-01T12:34:56.789-00:00"), z);
        // Postgres `timestamptz` (`+HH`) and basic (`+HHMM`) offsets.
        assert_eq!(parse_ok("2024-11-01 12:34:56.789+00"), z);
        assert_eq!(parse_ok("2024-11-01 14:34:56.789+02"), z);
        assert_eq!(parse_ok("2024-11-01T18:04:56.789+0530"), z);
        // JS: Date.parse("2024-11-01T12:34:56.789+05:30") === 1730444696789.
        assert_eq!(
            parse_ok("2024-11-01T12:34:56.789+05:30"),
            ts(1_730_444_696_789)
        );
        // Offsets may cross a day, month and year boundary.
        assert_eq!(
            parse_ok("2025-01-01T05:29:59.999+05:30"),
            parse_ok("2024-12-31T23:59:59.999Z")
        );
        assert_eq!(
            parse_ok("2024-12-31T16:00:00-08:00"),
            parse_ok("2025-01-01T00:00:00Z")
        );
    }

    #[test]
    fn fraction_digits() {
        let base = 1_730_464_496_000;
        assert_eq!(parse_ok("2024-11-01T12:34:56Z"), ts(base));
        assert_eq!(parse_ok("2024-11-01T12:34:56.7Z"), ts(base + 700));
        assert_eq!(parse_ok("2024-11-01T12:34:56.78Z"), ts(base + 780));
        assert_eq!(parse_ok("2024-11-01T12:34:56.789Z"), ts(base + 789));
        // Finer digits are truncated, not rounded.
        assert_eq!(parse_ok("2024-11-01T12:34:56.7891Z"), ts(base + 789));
        assert_eq!(parse_ok("2024-11-01 12:34:56.789999"), ts(base + 789));
        assert_eq!(parse_ok("2024-11-01T12:34:56.999999999Z"), ts(base + 999));
        // Before the epoch, truncation still goes towards the past.
        assert_eq!(parse_ok("1969-12-31T23:59:59.9999Z"), ts(-1));
    }

    #[test]
    fn extended_years() {
        assert_eq!(
            parse_ok("+010000-01-01T00:00:00.000Z"),
            ts(253_402_300_800_000)
        );
        assert_eq!(parse_ok("-000001-01-01T00:00:00Z"), ts(-62_198_755_200_000));
        assert_eq!(
            parse_ok("+002024-11-01T12:34:56.789Z"),
            ts(1_730_464_496_789)
        );
        assert_eq!(
            parse_ok("+000000-01-01T00:00:00Z"),
            parse_ok("0000-01-01T00:00:00Z")
        );
        assert_eq!(
            ts(253_402_300_800_000).to_string(),
            "+010000-01-01T00:00:00.000Z"
        );
    }

    fn assert_error(input: &str, kind: ParseTimestampErrorKind) {
        let err = parse_err(input);
        assert_eq!(err.kind(), kind, "{input:?}: {err}");
        assert_eq!(err.input(), input);
        let message = err.to_string();
        assert!(
            message.contains(&format!("`{input}`")),
            "message for {input:?} does not quote it: {message}"
        );
        assert!(message.starts_with("invalid timestamp "), "{message}");
    }

    fn syntax_at(offset: usize) -> impl Fn(ParseTimestampErrorKind) -> bool {
        move |kind| matches!(kind, ParseTimestampErrorKind::Syntax { offset: o, .. } if o == offset)
    }

    #[test]
    fn error_message_format() {
        let err = parse_err("2024-13-01T00:00:00Z");
        assert_eq!(
            err.to_string(),
            "invalid timestamp `2024-13-01T00:00:00Z`: month out of range (expected an \
             ISO-8601 / RFC 3339 date-time such as `2024-11-01T12:34:56.789Z`)"
        );
        let err = parse_err("2024-11-01X");
        assert_eq!(
            err.to_string(),
            "invalid timestamp `2024-11-01X`: expected `T` or a space between the date and \
             the time at byte offset 10 (expected an ISO-8601 / RFC 3339 date-time such as \
             `2024-11-01T12:34:56.789Z`)"
        );
    }

    #[test]
    fn range_errors() {
        use ParseTimestampErrorKind as K;
        assert_error("", K::Empty);
        assert_error("2024-00-01T00:00:00Z", K::MonthOutOfRange);
        assert_error("2024-13-01T00:00:00Z", K::MonthOutOfRange);
        assert_error("2024-11-00T00:00:00Z", K::DayOutOfRange);
        assert_error("2024-11-31T00:00:00Z", K::DayOutOfRange);
        assert_error("2024-01-32T00:00:00Z", K::DayOutOfRange);
        assert_error("2023-02-29T00:00:00Z", K::DayOutOfRange);
        assert_error("2024-11-01T24:00:00Z", K::HourOutOfRange);
        assert_error("2024-11-01T12:60:00Z", K::MinuteOutOfRange);
        assert_error("2024-11-01T23:59:60Z", K::SecondOutOfRange);
        assert_error("2024-11-01T12:34:56.1234567891Z", K::FractionTooLong);
        assert_error("2024-11-01T12:34:56+24:00", K::OffsetOutOfRange);
        assert_error("2024-11-01T12:34:56+05:60", K::OffsetOutOfRange);
        assert_error("-000000-01-01T00:00:00Z", K::NegativeZeroYear);
    }

    #[test]
    fn syntax_errors() {
        let cases: &[(&str, usize)] = &[
            (" ", 0),
            ("x", 0),
            ("24-11-01T00:00:00Z", 0),
            (" 2024-11-01T00:00:00Z", 0),
            ("20245-11-01T00:00:00Z", 4),
            ("2024/11/01T00:00:00Z", 4),
            ("2024-1-01T00:00:00Z", 5),
            ("2024-11-1T00:00:00Z", 8),
            ("2024-11-01", 10),
            ("2024-11-01X00:00:00Z", 10),
            ("2024-11-01  00:00:00Z", 11),
            ("2024-11-01T0:00:00Z", 11),
            ("2024-11-01T00-00:00Z", 13),
            ("2024-11-01T00:00Z", 16),
            ("2024-11-01T00:00:0Z", 17),
            ("2024-11-01T00:00:00.Z", 20),
            ("2024-11-01T00:00:00,5Z", 19),
            ("2024-11-01T00:00:00 UTC", 19),
            ("2024-11-01T00:00:00+5:30", 20),
            ("2024-11-01T00:00:00+05:3", 23),
            ("+2024-11-01T00:00:00Z", 1),
            ("-02024-11-01T00:00:00Z", 1),
            ("+-02024-11-01T00:00:00Z", 1),
            ("2024-11-01T00:00:00\u{e9}", 19),
        ];
        for &(input, offset) in cases {
            let err = parse_err(input);
            assert!(syntax_at(offset)(err.kind()), "{input:?}: {err:?}");
            assert_error(input, err.kind());
        }
    }

    #[test]
    fn trailing_characters() {
        use ParseTimestampErrorKind as K;
        assert_error(
            "2024-11-01T00:00:00Zjunk",
            K::TrailingCharacters { offset: 20 },
        );
        assert_error(
            "2024-11-01T00:00:00Z ",
            K::TrailingCharacters { offset: 20 },
        );
        assert_error(
            "2024-11-01T00:00:00+05:30:00",
            K::TrailingCharacters { offset: 25 },
        );
        assert_error(
            "2024-11-01T00:00:00.123+00:00Z",
            K::TrailingCharacters { offset: 29 },
        );
    }

    #[test]
    fn out_of_i64_range() {
        use ParseTimestampErrorKind as K;
        // One millisecond past either end of the i64 range.
        assert_error("+292278994-08-17T07:12:55.808Z", K::OutOfRange);
        assert_error("-292275055-05-16T16:47:04.191Z", K::OutOfRange);
        // The offset can push an in-range local time out of range.
        assert_error("+292278994-08-17T07:12:55.807-00:01", K::OutOfRange);
        assert_error("+999999999-01-01T00:00:00Z", K::OutOfRange);
        assert_error("-99999999999999999999999999-01-01T00:00:00Z", K::OutOfRange);
        // ...while the exact ends parse.
        assert_eq!(parse_ok("+292278994-08-17T07:12:55.807Z"), ts(i64::MAX));
        assert_eq!(parse_ok("-292275055-05-16T16:47:04.192Z"), ts(i64::MIN));
    }

    #[test]
    fn long_input_is_truncated_in_error() {
        let input = format!("2024-11-01T00:00:00Z{}", "é".repeat(100));
        let err = parse_err(&input);
        assert!(err.input().len() <= MAX_ERROR_INPUT_BYTES + '…'.len_utf8());
        assert!(err.input().ends_with('…'));
        assert!(input.starts_with(err.input().trim_end_matches('…')));
    }

    #[test]
    fn control_characters_are_escaped_in_error() {
        let err = parse_err("2024-11-01\n");
        assert!(err.to_string().contains("`2024-11-01\\n`"), "{err}");
    }

    #[test]
    fn unix_millis_accessors() {
        const T: Timestamp = Timestamp::from_unix_millis(-42);
        const MS: i64 = T.unix_millis();
        assert_eq!(MS, -42);
        assert!(ts(-1) < ts(0));
        assert!(ts(i64::MIN) < ts(i64::MAX));
    }

    #[test]
    fn checked_add_and_duration_since() {
        let t = ts(1_000);
        assert_eq!(t.checked_add(Duration::from_millis(500)), Some(ts(1_500)));
        assert_eq!(t.checked_add(Duration::from_micros(1_999)), Some(ts(1_001)));
        assert_eq!(
            ts(-1_000).checked_add(Duration::from_secs(2)),
            Some(ts(1_000))
        );
        assert_eq!(ts(i64::MAX).checked_add(Duration::from_millis(1)), None);
        assert_eq!(ts(i64::MAX).checked_add(Duration::ZERO), Some(ts(i64::MAX)));
        assert_eq!(ts(0).checked_add(Duration::MAX), None);

        assert_eq!(
            ts(1_500).saturating_duration_since(ts(1_000)),
            Duration::from_millis(500)
        );
        assert_eq!(
            ts(1_000).saturating_duration_since(ts(1_500)),
            Duration::ZERO
        );
        assert_eq!(ts(7).saturating_duration_since(ts(7)), Duration::ZERO);
        assert_eq!(
            ts(i64::MAX).saturating_duration_since(ts(i64::MIN)),
            Duration::from_millis(u64::MAX)
        );
    }

    #[test]
    fn system_time_conversions() {
        use std::time::UNIX_EPOCH;

        for ms in [0, 1, -1, 1_730_464_496_789, -2_203_891_200_000] {
            let st = SystemTime::from(ts(ms));
            assert_eq!(Timestamp::try_from(st), Ok(ts(ms)));
        }
        assert_eq!(
            SystemTime::from(ts(1_500)),
            UNIX_EPOCH + Duration::from_millis(1_500)
        );
        assert_eq!(
            SystemTime::from(ts(-1_500)),
            UNIX_EPOCH - Duration::from_millis(1_500)
        );
        // Sub-millisecond parts are truncated towards the past.
        assert_eq!(
            Timestamp::try_from(UNIX_EPOCH + Duration::from_micros(1_999)),
            Ok(ts(1))
        );
        assert_eq!(
            Timestamp::try_from(UNIX_EPOCH - Duration::from_micros(1)),
            Ok(ts(-1))
        );
        assert_eq!(
            Timestamp::try_from(UNIX_EPOCH - Duration::from_micros(1_000)),
            Ok(ts(-1))
        );
        assert_eq!(
            Timestamp::try_from(UNIX_EPOCH - Duration::from_micros(1_001)),
            Ok(ts(-2))
        );
        // Out of range, where the platform can represent it.
        if let Some(far) = UNIX_EPOCH.checked_add(Duration::from_secs(u64::MAX / 1_000)) {
            let err = Timestamp::try_from(far).err();
            assert_eq!(
                err.map(|e| e.kind()),
                Some(ParseTimestampErrorKind::OutOfRange)
            );
        }
        if let Some(far) = UNIX_EPOCH.checked_sub(Duration::from_secs(u64::MAX / 1_000)) {
            let err = Timestamp::try_from(far).err();
            assert_eq!(
                err.map(|e| e.kind()),
                Some(ParseTimestampErrorKind::OutOfRange)
            );
        }
        // Extreme timestamps convert without panicking.
        let _ = SystemTime::from(ts(i64::MAX));
        let _ = SystemTime::from(ts(i64::MIN));
        assert_eq!(
            Timestamp::try_from(SystemTime::from(ts(i64::MAX))),
            Ok(ts(i64::MAX))
        );
        assert_eq!(
            Timestamp::try_from(SystemTime::from(ts(i64::MIN))),
            Ok(ts(i64::MIN))
        );
    }

    #[test]
    fn now_is_plausible() {
        let before = Timestamp::try_from(SystemTime::now());
        let now = Timestamp::now();
        // After 2024-01-01 and before 2200-01-01.
        assert!(now > parse_ok("2024-01-01T00:00:00Z"));
        assert!(now < parse_ok("2200-01-01T00:00:00Z"));
        assert!(before.is_ok_and(|b| b <= now));
    }

    #[test]
    fn serde_json_round_trip() {
        let t = ts(1_730_464_496_789);
        let json = serde_json::to_string(&t).ok();
        assert_eq!(json.as_deref(), Some("\"2024-11-01T12:34:56.789Z\""));

        let back: Option<Timestamp> = serde_json::from_str("\"2024-11-01T12:34:56.789Z\"").ok();
        assert_eq!(back, Some(t));

        // Owned strings (from a `Value`) and escaped strings work too.
        let value = serde_json::Value::String("2024-11-01 12:34:56.789".to_owned());
        assert_eq!(serde_json::from_value::<Timestamp>(value).ok(), Some(t));
        let escaped: Option<Timestamp> =
            serde_json::from_str("\"2024-11-01T12:34:56.789\\u005a\"").ok();
        assert_eq!(escaped, Some(t));

        // Inside a struct-like container.
        let list: Option<Vec<Timestamp>> =
            serde_json::from_str(r#"["1970-01-01T00:00:00.000Z","+010000-01-01T00:00:00.000Z"]"#)
                .ok();
        assert_eq!(list, Some(vec![ts(0), ts(253_402_300_800_000)]));
    }

    #[test]
    fn serde_json_errors() {
        let err = serde_json::from_str::<Timestamp>("\"2024-13-01T00:00:00Z\"")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("invalid timestamp `2024-13-01T00:00:00Z`: month out of range"),
            "{err}"
        );
        let err = serde_json::from_str::<Timestamp>("1730464496789")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("ISO-8601 / RFC 3339 date-time string"),
            "{err}"
        );
    }

    #[test]
    fn json_schema() {
        let schema = schemars::schema_for!(Timestamp);
        let value = schema.as_value();
        assert_eq!(value.get("type"), Some(&serde_json::json!("string")));
        assert_eq!(value.get("format"), Some(&serde_json::json!("date-time")));
        assert_eq!(Timestamp::schema_name(), "Timestamp");
    }
}
