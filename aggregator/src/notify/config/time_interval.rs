//! `time_intervals:` (and the older `mute_time_intervals:`) with
//! Alertmanager's semantics: an interval contains an instant when every
//! field it sets matches, in its `location` (UTC by default); `times` are
//! `HH:MM` with the start included and the end excluded (`24:00` allowed);
//! ranges of weekdays, days of month (negative: from the end of the month,
//! `-1` the last day), months and years are inclusive.

use chrono::{DateTime, Datelike, NaiveDate, Timelike};
use chrono_tz::Tz;
use serde::Deserialize;

/// One named entry of `time_intervals:` as written.
#[derive(Debug, Clone, Deserialize)]
pub struct RawNamedInterval {
    /// Referenced by routes' `mute_time_intervals` / `active_time_intervals`.
    pub name: String,
    /// The instant is in the named interval when it is in any of these.
    #[serde(default)]
    pub time_intervals: Vec<RawInterval>,
}

/// One time interval as written.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawInterval {
    /// Ranges of the day, `HH:MM` to `HH:MM`.
    #[serde(default)]
    pub times: Vec<RawTimes>,
    /// `monday`, `monday:friday`, ...
    #[serde(default)]
    pub weekdays: Vec<String>,
    /// `1`, `1:5`, `-3:-1`, ...
    #[serde(default)]
    pub days_of_month: Vec<String>,
    /// `january`, `1:3`, `june:august`, ...
    #[serde(default)]
    pub months: Vec<String>,
    /// `2026`, `2026:2027`.
    #[serde(default)]
    pub years: Vec<String>,
    /// IANA time zone (`Europe/Berlin`); `Local` is not supported (the
    /// aggregator's zone is not a property of the config).
    #[serde(default)]
    pub location: Option<String>,
}

/// `start_time` / `end_time` of `times:`.
#[derive(Debug, Clone, Deserialize)]
pub struct RawTimes {
    pub start_time: String,
    pub end_time: String,
}

/// A compiled interval. Empty lists mean "any".
#[derive(Debug, Clone, PartialEq)]
pub struct TimeInterval {
    /// Minutes since midnight, `[start, end)`.
    times: Vec<(u32, u32)>,
    /// 0 = Sunday (Go's numbering), inclusive.
    weekdays: Vec<(u32, u32)>,
    days_of_month: Vec<(i32, i32)>,
    months: Vec<(u32, u32)>,
    years: Vec<(i32, i32)>,
    location: Tz,
}

const WEEKDAYS: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];
const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

impl RawInterval {
    /// Compiles; every problem is pushed to `problems` prefixed with `at`.
    pub fn compile(&self, at: &str, problems: &mut Vec<String>) -> Option<TimeInterval> {
        let before = problems.len();
        let mut times = Vec::new();
        for t in &self.times {
            match (minutes(&t.start_time), minutes(&t.end_time)) {
                (Ok(s), Ok(e)) if s < e => times.push((s, e)),
                (Ok(_), Ok(_)) => problems.push(format!(
                    "{at}: start_time {} must be before end_time {}",
                    t.start_time, t.end_time
                )),
                (Err(e), _) | (_, Err(e)) => problems.push(format!("{at}: {e}")),
            }
        }
        let named = |names: &[&str], s: &str, base: u32| -> Result<u32, String> {
            let lower = s.trim().to_ascii_lowercase();
            if let Some(i) = names.iter().position(|n| *n == lower) {
                return Ok(i as u32 + base);
            }
            Err(format!("unknown name {s:?}"))
        };
        let weekdays = ranges(&self.weekdays, at, "weekdays", problems, |s| {
            named(&WEEKDAYS, s, 0)
        });
        let months = ranges(&self.months, at, "months", problems, |s| {
            match s.trim().parse::<u32>() {
                Ok(n) if (1..=12).contains(&n) => Ok(n),
                Ok(n) => Err(format!("month {n} is not between 1 and 12")),
                Err(_) => named(&MONTHS, s, 1),
            }
        });
        let days_of_month = ranges(
            &self.days_of_month,
            at,
            "days_of_month",
            problems,
            |s| match s.trim().parse::<i32>() {
                Ok(n) if n != 0 && (-31..=31).contains(&n) => Ok(n),
                _ => Err(format!("{s:?} is not a day of month (1..31 or -31..-1)")),
            },
        );
        for &(b, e) in &days_of_month {
            // Mixed signs depend on the month's length; same signs must be ordered.
            if (b > 0) == (e > 0) && b > e {
                problems.push(format!("{at}: days_of_month range {b}:{e} is reversed"));
            }
        }
        let years = ranges(&self.years, at, "years", problems, |s| {
            s.trim()
                .parse::<i32>()
                .ok()
                .filter(|y| *y > 0)
                .ok_or_else(|| format!("{s:?} is not a year"))
        });
        for (name, list) in [("weekdays", &weekdays), ("months", &months)] {
            if list.iter().any(|(b, e)| b > e) {
                problems.push(format!("{at}: a {name} range is reversed"));
            }
        }
        if years.iter().any(|(b, e)| b > e) {
            problems.push(format!("{at}: a years range is reversed"));
        }
        let location = match self.location.as_deref() {
            None | Some("UTC") => Tz::UTC,
            Some(name) => match name.parse::<Tz>() {
                Ok(tz) => tz,
                Err(_) => {
                    problems.push(format!(
                        "{at}: unknown location {name:?} (use an IANA zone)"
                    ));
                    Tz::UTC
                }
            },
        };
        (problems.len() == before).then_some(TimeInterval {
            times,
            weekdays,
            days_of_month,
            months,
            years,
            location,
        })
    }
}

/// `HH:MM` as minutes since midnight (`24:00` allowed).
fn minutes(s: &str) -> Result<u32, String> {
    let bad = || format!("{s:?} is not a time of day HH:MM");
    let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// Parses `a` or `a:b` items with `one`, reporting each bad item.
fn ranges<T: Copy>(
    items: &[String],
    at: &str,
    field: &str,
    problems: &mut Vec<String>,
    one: impl Fn(&str) -> Result<T, String>,
) -> Vec<(T, T)> {
    let mut out = Vec::new();
    for item in items {
        let parsed = match item.split_once(':') {
            Some((a, b)) => one(a).and_then(|a| one(b).map(|b| (a, b))),
            None => one(item).map(|a| (a, a)),
        };
        match parsed {
            Ok(r) => out.push(r),
            Err(e) => problems.push(format!("{at}: {field}: {e}")),
        }
    }
    out
}

impl TimeInterval {
    /// Whether the instant `ms` (since the epoch) is inside.
    pub fn contains(&self, ms: i64) -> bool {
        let Some(utc) = DateTime::from_timestamp_millis(ms) else {
            return false;
        };
        let t = utc.with_timezone(&self.location);
        let minute = t.hour() * 60 + t.minute();
        if !self.times.is_empty() && !self.times.iter().any(|&(s, e)| s <= minute && minute < e) {
            return false;
        }
        let weekday = t.weekday().num_days_from_sunday();
        if !self.weekdays.is_empty()
            && !self
                .weekdays
                .iter()
                .any(|&(b, e)| b <= weekday && weekday <= e)
        {
            return false;
        }
        if !self.days_of_month.is_empty() {
            let len = days_in_month(t.year(), t.month()) as i32;
            let day = t.day() as i32;
            let hit = self.days_of_month.iter().any(|&(b, e)| {
                let b = if b < 0 { len + b + 1 } else { b };
                let e = if e < 0 { len + e + 1 } else { e };
                // A start past this month's end (e.g. 31 in April) never matches.
                b <= len && b <= day && day <= e.min(len)
            });
            if !hit {
                return false;
            }
        }
        let month = t.month();
        if !self.months.is_empty() && !self.months.iter().any(|&(b, e)| b <= month && month <= e) {
            return false;
        }
        let year = t.year();
        self.years.is_empty() || self.years.iter().any(|&(b, e)| b <= year && year <= e)
    }
}

fn days_in_month(year: i32, month: u32) -> u32 {
    let (ny, nm) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    match (
        NaiveDate::from_ymd_opt(year, month, 1),
        NaiveDate::from_ymd_opt(ny, nm, 1),
    ) {
        (Some(a), Some(b)) => (b - a).num_days() as u32,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339)
            .expect("time")
            .timestamp_millis()
    }

    fn compile(yaml: &str) -> Result<TimeInterval, Vec<String>> {
        let raw: RawInterval = serde_norway::from_str(yaml).expect("yaml");
        let mut problems = Vec::new();
        raw.compile("t", &mut problems).ok_or(problems)
    }

    #[test]
    fn weekday_and_time_ranges() {
        let i = compile(
            "times: [{start_time: '09:00', end_time: '17:00'}]\nweekdays: ['monday:friday']\n",
        )
        .expect("valid");
        // 2026-11-27 is a Friday.
        assert!(i.contains(ms("2026-11-27T09:00:00Z")));
        assert!(i.contains(ms("2026-11-27T16:59:59Z")));
        assert!(!i.contains(ms("2026-11-27T17:00:00Z")), "end is excluded");
        assert!(!i.contains(ms("2026-11-28T12:00:00Z")), "Saturday");
        assert!(!i.contains(ms("2026-11-27T08:59:00Z")));
    }

    #[test]
    fn location_shifts_the_day() {
        let i =
            compile("times: [{start_time: '09:00', end_time: '10:00'}]\nlocation: Asia/Tokyo\n")
                .expect("valid");
        // 09:30 in Tokyo is 00:30 UTC.
        assert!(i.contains(ms("2026-11-27T00:30:00Z")));
        assert!(!i.contains(ms("2026-11-27T09:30:00Z")));
        let i = compile("weekdays: [saturday]\nlocation: America/New_York\n").expect("valid");
        // Saturday 02:00 UTC is still Friday in New York.
        assert!(!i.contains(ms("2026-11-28T02:00:00Z")));
        assert!(i.contains(ms("2026-11-28T12:00:00Z")));
    }

    #[test]
    fn days_of_month_months_and_years() {
        let i = compile("days_of_month: ['-1']\nmonths: ['february']\nyears: ['2028']\n")
            .expect("valid");
        assert!(
            i.contains(ms("2028-02-29T12:00:00Z")),
            "leap year's last day"
        );
        assert!(!i.contains(ms("2028-02-28T12:00:00Z")));
        assert!(!i.contains(ms("2027-02-28T12:00:00Z")), "year outside");
        let i = compile("days_of_month: ['25:31']\nmonths: ['4:6']\n").expect("valid");
        assert!(i.contains(ms("2026-04-30T00:00:00Z")));
        assert!(!i.contains(ms("2026-07-30T00:00:00Z")));
        let i = compile("days_of_month: ['31']\n").expect("valid");
        assert!(!i.contains(ms("2026-04-30T00:00:00Z")), "no 31st in April");
    }

    #[test]
    fn every_bad_field_is_reported() {
        let e = compile(
            "times: [{start_time: '10:00', end_time: '09:00'}, {start_time: '25:00', end_time: '26:00'}]\nweekdays: [funday]\ndays_of_month: ['0', '5:2']\nmonths: ['13']\nyears: [x]\nlocation: Mars/Olympus\n",
        )
        .expect_err("invalid");
        let text = e.join("\n");
        for needle in [
            "before end_time",
            "25:00",
            "funday",
            "\"0\"",
            "5:2",
            "month 13",
            "\"x\"",
            "Mars/Olympus",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
    }
}
