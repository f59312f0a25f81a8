//! Six-field NCRONTAB expressions (the Functions timer format: sec min hour day month weekday),
//! evaluated in UTC like the Functions host does by default.

use chrono::{DateTime, Utc};
use std::str::FromStr;

#[derive(Debug, Clone)]
pub struct Schedule {
    expr: String,
    inner: cron::Schedule,
}

/// NCRONTAB numbers weekdays 0–6 from Sunday (7 is Sunday too); the `cron` crate numbers them
/// 1–7 from Sunday. Names mean the same in both, so rewrite numbers as names.
fn weekday_field(field: &str) -> Result<String, String> {
    const NAMES: [&str; 8] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];
    let mut out = String::new();
    let mut num = String::new();
    let flush = |num: &mut String, out: &mut String, after_slash: bool| -> Result<(), String> {
        if num.is_empty() {
            return Ok(());
        }
        if after_slash {
            out.push_str(num);
        } else {
            let n: usize = num.parse().map_err(|_| format!("bad weekday {num}"))?;
            out.push_str(NAMES.get(n).ok_or(format!("weekday {n} out of range 0-7"))?);
        }
        num.clear();
        Ok(())
    };
    let mut after_slash = false;
    for c in field.chars() {
        if c.is_ascii_digit() {
            num.push(c);
        } else {
            flush(&mut num, &mut out, after_slash)?;
            after_slash = c == '/';
            out.push(c);
        }
    }
    flush(&mut num, &mut out, after_slash)?;
    Ok(out)
}

impl Schedule {
    pub fn parse(expr: &str) -> Result<Self, String> {
        let fields: Vec<&str> = expr.split_whitespace().collect();
        if fields.len() != 6 {
            return Err(format!(
                "{expr:?} has {} fields; NCRONTAB needs six: second minute hour day month weekday (e.g. \"0 */15 * * * *\")",
                fields.len()
            ));
        }
        let weekday = weekday_field(fields[5])?;
        let translated = format!("{} {} {} {} {} {}", fields[0], fields[1], fields[2], fields[3], fields[4], weekday);
        let inner = cron::Schedule::from_str(&translated).map_err(|e| format!("{expr:?}: {e}"))?;
        Ok(Schedule { expr: expr.to_string(), inner })
    }

    /// The first firing strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.inner.after(&after).next()
    }

    pub fn expression(&self) -> &str {
        &self.expr
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone, Timelike, Weekday};

    #[test]
    fn every_fifteen_minutes() {
        let s = Schedule::parse("0 */15 * * * *").unwrap();
        let t = Utc.with_ymd_and_hms(2026, 11, 26, 1, 46, 3).unwrap();
        assert_eq!(s.next_after(t).unwrap(), Utc.with_ymd_and_hms(2026, 11, 26, 2, 0, 0).unwrap());
    }

    #[test]
    fn weekdays_use_ncrontab_numbering() {
        // "1-5" is Monday to Friday in NCRONTAB; 2026-11-28 is a Saturday.
        let s = Schedule::parse("0 30 9 * * 1-5").unwrap();
        let next = s.next_after(Utc.with_ymd_and_hms(2026, 11, 28, 0, 0, 0).unwrap()).unwrap();
        assert_eq!(next.weekday(), Weekday::Mon);
        assert_eq!((next.hour(), next.minute()), (9, 30));
        let sunday = Schedule::parse("0 0 3 * * 0").unwrap();
        assert_eq!(sunday.next_after(next).unwrap().weekday(), Weekday::Sun);
        assert_eq!(Schedule::parse("0 0 3 * * 7").unwrap().next_after(next).unwrap().weekday(), Weekday::Sun);
    }

    #[test]
    fn five_fields_are_refused_with_a_hint() {
        let e = Schedule::parse("*/15 * * * *").unwrap_err();
        assert!(e.contains("six"), "{e}");
        assert!(Schedule::parse("0 0 3 * * 9").is_err());
    }
}
