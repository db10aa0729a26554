//! A regular series of counts per step (a trace): what the backtest, the simulator and the
//! import of recorded history exchange. `timestamp,value` CSV in, checked.

/// Why a trace was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TraceError {
    #[error("line {line}: {what}")]
    Line { line: usize, what: String },
    #[error("too short: {0} data rows")]
    TooShort(usize),
}

/// A regular series read from a `timestamp,value` CSV.
#[derive(Debug, Clone)]
pub struct Series {
    pub step_s: u64,
    pub start_s: u64,
    pub values: Vec<f64>,
}

/// Reads and checks a trace: header optional, epoch seconds, sorted, regular spacing.
pub fn read_csv(text: &str) -> Result<Series, TraceError> {
    let mut rows: Vec<(usize, u64, f64)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split(',').map(str::trim);
        let (Some(a), Some(b), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(TraceError::Line { line: i + 1, what: format!("expected `timestamp,value`, got {line:?}") });
        };
        match (a.parse::<u64>(), b.parse::<f64>()) {
            (Ok(t), Ok(v)) if v.is_finite() && v >= 0.0 => rows.push((i + 1, t, v)),
            (Ok(_), _) => {
                return Err(TraceError::Line {
                    line: i + 1,
                    what: format!("value {b:?} is not a non-negative number"),
                });
            }
            _ if rows.is_empty() && a.chars().all(|c| c.is_ascii_alphabetic() || c == '_') => {}
            _ => return Err(TraceError::Line { line: i + 1, what: format!("timestamp {a:?} is not epoch seconds") }),
        }
    }
    if rows.len() < 3 {
        return Err(TraceError::TooShort(rows.len()));
    }
    let step = rows[1]
        .1
        .checked_sub(rows[0].1)
        .filter(|s| *s > 0)
        .ok_or(TraceError::Line { line: rows[1].0, what: "timestamps not increasing".into() })?;
    for w in rows.windows(2) {
        if w[1].1 <= w[0].1 {
            return Err(TraceError::Line { line: w[1].0, what: "timestamps not increasing".into() });
        }
        if w[1].1 - w[0].1 != step {
            return Err(TraceError::Line {
                line: w[1].0,
                what: format!(
                    "irregular step ({} s after {} s steps); a regular series is needed",
                    w[1].1 - w[0].1,
                    step
                ),
            });
        }
    }
    Ok(Series { step_s: step, start_s: rows[0].1, values: rows.into_iter().map(|r| r.2).collect() })
}
