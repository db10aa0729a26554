//! Known events (`[[pool.schedule]]`): what the forecast cannot know — a launch, a sale, a
//! holiday — told to the planner as a window (once, or weekly in UTC) with a capacity floor
//! and/or a multiplier on the forecast, and a reason the decision log cites. The planner applies
//! an event from the moment it overlaps the span it plans for (now until the end of the
//! lead-time window), so capacity is in place when the event starts. The floor holds until the
//! event ends; the multiplier anticipates it (it scales the forecast for the event's minutes
//! until the event starts — from then on the forecast sees the event's own traffic, and scaling
//! it again would count the event twice).

use serde::{Deserialize, Serialize};

/// When an event applies.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum When {
    /// `[from, to)`, epoch seconds.
    Once { from: u64, to: u64 },
    /// Every week on `days` (bit 0 = Monday … bit 6 = Sunday) from `from_s` to `to_s` seconds
    /// after midnight UTC; `to_s <= from_s` runs past midnight into the next day.
    Weekly { days: u8, from_s: u32, to_s: u32 },
}

impl std::fmt::Display for When {
    /// `2026-11-27 08:00 – 2026-11-27 20:00 UTC`, `mon, fri 08:00–10:00 UTC`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = |t: u64| {
            let (y, mo, d, h, mi, _) = crate::clock::utc(t);
            format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}")
        };
        let hm = |s: u32| format!("{:02}:{:02}", s / 3600, s % 3600 / 60);
        match *self {
            When::Once { from, to } => write!(f, "{} – {} UTC", at(from), at(to)),
            When::Weekly { days, from_s, to_s } => {
                let names: Vec<&str> = (0..7).filter(|k| days & (1 << k) != 0).map(|k| DAYS[k]).collect();
                write!(f, "{} {}–{} UTC", names.join(", "), hm(from_s), hm(to_s))
            }
        }
    }
}

/// A known event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub reason: String,
    pub when: When,
    /// The pool's capacity (requests/s) is kept at least this while the event applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_capacity_rps: Option<f64>,
    /// The forecast is multiplied by this for the minutes inside the event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forecast_multiplier: Option<f64>,
}

const DAY: u64 = 86_400;
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Monday = 0 (1970-01-01 was a Thursday).
fn weekday(day: u64) -> u32 {
    ((day + 3) % 7) as u32
}

impl Event {
    /// The occurrences of the event that could touch `[a, b)`, as `[start, end)` spans.
    fn spans(&self, a: u64, b: u64) -> Vec<(u64, u64)> {
        match self.when {
            When::Once { from, to } => vec![(from, to)],
            When::Weekly { days, from_s, to_s } => {
                let len = if to_s > from_s { to_s - from_s } else { to_s + DAY as u32 - from_s } as u64;
                // An occurrence starting the day before `a` may still run.
                ((a / DAY).saturating_sub(1)..=b / DAY)
                    .filter(|d| days & (1 << weekday(*d)) != 0)
                    .map(|d| (d * DAY + from_s as u64, d * DAY + from_s as u64 + len))
                    .collect()
            }
        }
    }

    /// True when the event applies at some instant of `[a, b)`.
    pub fn overlaps(&self, a: u64, b: u64) -> bool {
        self.spans(a, b).iter().any(|(s, e)| *s < b && *e > a)
    }

    /// True at `t`.
    pub fn active_at(&self, t: u64) -> bool {
        self.overlaps(t, t + 1)
    }

    /// The end of the occurrence running at `t`, or the start of the next one within a week.
    pub fn next_change(&self, t: u64) -> Option<u64> {
        let mut spans = self.spans(t, t + 8 * DAY);
        spans.sort_unstable();
        spans.into_iter().find_map(|(s, e)| {
            if s <= t && t < e {
                Some(e)
            } else if s > t {
                Some(s)
            } else {
                None
            }
        })
    }
}

/// `[[pool.schedule]]` as written (also `[[simulate.schedule]]`).
/// Unknown keys are reported by the reader (the configuration's, the simulator's), by path.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct RawEvent {
    pub reason: Option<String>,
    /// One-off: RFC 3339 / ISO 8601 (`2026-12-24T08:00:00Z`) or epoch seconds, as text.
    pub from: Option<String>,
    pub to: Option<String>,
    pub weekly: Option<RawWeekly>,
    pub min_capacity_rps: Option<f64>,
    pub forecast_multiplier: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct RawWeekly {
    /// `["mon", "fri"]`
    pub days: Vec<String>,
    /// `"HH:MM"` UTC.
    pub from: String,
    pub to: String,
}

fn hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 && s.len() == 5).then_some(h * 3600 + m * 60)
}

impl RawEvent {
    /// The event, or every problem as `(key, message)` (keys relative to the entry).
    pub fn check(&self) -> Result<Event, Vec<(String, String)>> {
        let mut errs: Vec<(String, String)> = Vec::new();
        let reason = match self.reason.as_deref().map(str::trim) {
            Some(r) if !r.is_empty() && r.len() <= 200 => r.to_string(),
            _ => {
                errs.push(("reason".into(), "required: a few words the decision log cites (≤ 200 bytes)".into()));
                String::new()
            }
        };
        let time = |errs: &mut Vec<(String, String)>, key: &str, v: &Option<String>| match v {
            None => {
                errs.push((key.into(), "required with a one-off event (or give `weekly`)".into()));
                None
            }
            Some(s) => match crate::historian::import::parse_time(s) {
                Ok(t) => Some(t),
                Err(_) => {
                    errs.push((key.into(), format!("{s:?} is not a time such as \"2026-12-24T08:00:00Z\"")));
                    None
                }
            },
        };
        let when = match (&self.weekly, self.from.is_some() || self.to.is_some()) {
            (Some(_), true) => {
                errs.push(("weekly".into(), "give either from/to (once) or weekly, not both".into()));
                None
            }
            (None, _) => match (time(&mut errs, "from", &self.from), time(&mut errs, "to", &self.to)) {
                (Some(from), Some(to)) if from < to => Some(When::Once { from, to }),
                (Some(_), Some(_)) => {
                    errs.push(("to".into(), "must be after from".into()));
                    None
                }
                _ => None,
            },
            (Some(w), false) => {
                let mut days = 0u8;
                for (i, d) in w.days.iter().enumerate() {
                    match DAYS.iter().position(|x| x.eq_ignore_ascii_case(d.get(..3).unwrap_or(d))) {
                        Some(k) if d.len() == 3 || d.to_ascii_lowercase().starts_with(DAYS[k]) => days |= 1 << k,
                        _ => errs.push((
                            format!("weekly.days[{i}]"),
                            format!("{d:?}: use mon, tue, wed, thu, fri, sat, sun"),
                        )),
                    }
                }
                if w.days.is_empty() {
                    errs.push(("weekly.days".into(), "name at least one day".into()));
                }
                let from = hhmm(&w.from).or_else(|| {
                    errs.push(("weekly.from".into(), format!("{:?} is not HH:MM (UTC)", w.from)));
                    None
                });
                let to = hhmm(&w.to).or_else(|| {
                    errs.push(("weekly.to".into(), format!("{:?} is not HH:MM (UTC)", w.to)));
                    None
                });
                match (from, to) {
                    (Some(f), Some(t)) if f == t => {
                        errs.push(("weekly.to".into(), "must differ from weekly.from".into()));
                        None
                    }
                    (Some(from_s), Some(to_s)) if days != 0 => Some(When::Weekly { days, from_s, to_s }),
                    _ => None,
                }
            }
        };
        if let Some(f) = self.min_capacity_rps
            && !(f.is_finite() && f >= 0.0)
        {
            errs.push(("min_capacity_rps".into(), format!("{f} must be a non-negative number of requests/s")));
        }
        if let Some(m) = self.forecast_multiplier
            && !(m.is_finite() && m > 0.0 && m <= 100.0)
        {
            errs.push(("forecast_multiplier".into(), format!("{m} must be in (0, 100]")));
        }
        if self.min_capacity_rps.is_none() && self.forecast_multiplier.is_none() {
            errs.push(("min_capacity_rps".into(), "give min_capacity_rps, forecast_multiplier, or both".into()));
        }
        match when {
            Some(when) if errs.is_empty() => Ok(Event {
                reason,
                when,
                min_capacity_rps: self.min_capacity_rps,
                forecast_multiplier: self.forecast_multiplier,
            }),
            _ => Err(errs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weekly(days: &[&str], from: &str, to: &str) -> Event {
        RawEvent {
            reason: Some("r".into()),
            weekly: Some(RawWeekly {
                days: days.iter().map(|d| d.to_string()).collect(),
                from: from.into(),
                to: to.into(),
            }),
            forecast_multiplier: Some(2.0),
            ..Default::default()
        }
        .check()
        .unwrap()
    }

    #[test]
    fn one_off_windows() {
        let e = RawEvent {
            reason: Some("sale".into()),
            from: Some("2026-11-27T08:00:00Z".into()),
            to: Some("2026-11-27T20:00:00Z".into()),
            min_capacity_rps: Some(50.0),
            ..Default::default()
        }
        .check()
        .unwrap();
        let start = 1_795_766_400; // 2026-11-27T08:00:00Z
        assert_eq!(e.when, When::Once { from: start, to: start + 12 * 3600 });
        assert!(!e.active_at(start - 1) && e.active_at(start) && !e.active_at(start + 12 * 3600));
        // Seen ahead: a planning span that reaches into it overlaps it.
        assert!(e.overlaps(start - 300, start + 1) && !e.overlaps(start - 300, start));
        assert_eq!(e.next_change(start - 10), Some(start));
        assert_eq!(e.next_change(start + 10), Some(start + 12 * 3600));
        assert_eq!(e.when.to_string(), "2026-11-27 08:00 – 2026-11-27 20:00 UTC");
    }

    #[test]
    fn weekly_windows_in_utc_including_past_midnight() {
        // 2026-11-30 is a Monday.
        let monday = 1_795_996_800;
        let e = weekly(&["mon", "fri"], "08:00", "10:00");
        assert!(e.active_at(monday + 9 * 3600));
        assert!(!e.active_at(monday + 10 * 3600));
        assert!(!e.active_at(monday + DAY + 9 * 3600), "Tuesday");
        assert!(e.active_at(monday + 4 * DAY + 8 * 3600), "Friday");
        assert!(e.active_at(monday + 7 * DAY + 8 * 3600), "next Monday");
        assert_eq!(e.next_change(monday + DAY), Some(monday + 4 * DAY + 8 * 3600));
        assert_eq!(e.when.to_string(), "mon, fri 08:00–10:00 UTC");
        // Saturday 22:00 → Sunday 02:00.
        let night = weekly(&["sat"], "22:00", "02:00");
        assert!(night.active_at(monday + 5 * DAY + 23 * 3600));
        assert!(night.active_at(monday + 6 * DAY + 3600), "past midnight, into Sunday");
        assert!(!night.active_at(monday + 6 * DAY + 3 * 3600));
        assert!(!night.active_at(monday + 3600), "not after Sunday night");
    }

    #[test]
    fn problems_are_named_by_key() {
        let errs =
            RawEvent { from: Some("tomorrow".into()), to: Some("2026-11-27T20:00:00Z".into()), ..Default::default() }
                .check()
                .unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(keys, ["reason", "from", "min_capacity_rps"], "{errs:?}");
        let errs = RawEvent {
            reason: Some("x".into()),
            weekly: Some(RawWeekly {
                days: vec!["mon".into(), "funday".into()],
                from: "8:00".into(),
                to: "10:00".into(),
            }),
            forecast_multiplier: Some(-1.0),
            ..Default::default()
        }
        .check()
        .unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(keys, ["weekly.days[1]", "weekly.from", "forecast_multiplier"], "{errs:?}");
        let backwards = RawEvent {
            reason: Some("x".into()),
            from: Some("2026-11-27T20:00:00Z".into()),
            to: Some("2026-11-27T08:00:00Z".into()),
            min_capacity_rps: Some(1.0),
            ..Default::default()
        };
        assert_eq!(backwards.check().unwrap_err()[0].0, "to");
    }
}
