//! `prescale import`: history from a CSV or an access log into the historian's data_dir.

use std::process::ExitCode;

use anyhow::Context;

use crate::config;

use super::{EXIT_CONFIG, EXIT_START};

pub(super) fn import(
    config: &std::path::Path,
    endpoint: &str,
    input: &std::path::Path,
    format: Option<&str>,
    mut opts: crate::historian::import::ImportOptions,
) -> anyhow::Result<ExitCode> {
    use crate::historian::import::{self, Format};
    if let Some(problem) = config::name_problem(endpoint) {
        eprintln!("--endpoint {problem}");
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
    let settings = match config::load(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    let h = settings.historian.as_ref().context("the historian is disabled in this configuration")?;
    let dir = h.data_dir.as_ref().context("historian.data_dir is not set: there is nowhere to import to")?;
    if !settings.endpoints.iter().any(|e| e.name == endpoint) {
        eprintln!("warning: no endpoint named {endpoint:?} in {}; importing anyway", config.display());
    }
    opts.format = match format {
        None => None,
        Some("csv") => Some(Format::Csv),
        Some("log" | "clf") => Some(Format::AccessLog),
        Some(other) => anyhow::bail!("--format {other:?}: use csv or log"),
    };
    // What the next start keeps: rows older than the longest persisted tier are deleted then.
    let kept_s = h.store.tiers.iter().filter(|t| t.persist).map(|t| t.keep_s).max().unwrap_or(0);
    let now = crate::clock::now_us() / 1_000_000;
    opts.oldest_s = Some(now.saturating_sub(kept_s));
    let r = import::import(input, endpoint, dir, &h.store.tiers, &opts)
        .with_context(|| format!("importing {}", input.display()))?;
    // Every bad line the report kept (it keeps the first BAD_LINES_KEPT, each cut short).
    for (line, problem) in &r.bad_lines {
        eprintln!("{}:{line}: {problem}", input.display());
    }
    if r.bad_count > r.bad_lines.len() as u64 {
        eprintln!("… and {} more bad lines", r.bad_count - r.bad_lines.len() as u64);
    }
    if r.expired > 0 {
        eprintln!(
            "{}:{}: {} row(s) older than the history kept ({} days, the longest persisted tier in historian.tiers): \
             the next start would delete them. --shift-to-now moves an old trace forward by whole weeks",
            input.display(),
            r.expired_line.unwrap_or(0),
            r.expired,
            kept_s / 86_400
        );
    }
    if !r.written {
        eprintln!(
            "prescale import: nothing was written: {} of {} line(s) cannot be imported as they are. \
             Fix them, or pass --skip-bad to import the other {} call(s)",
            r.skipped(),
            r.lines,
            r.calls
        );
        return Ok(ExitCode::from(EXIT_START));
    }
    println!(
        "imported {} calls from {} lines into {} buckets for endpoint {endpoint:?} ({} to {}){}; {} line(s) skipped",
        r.calls,
        r.lines,
        r.buckets_written,
        r.first_s.map_or("-".into(), |t| t.to_string()),
        r.last_s.map_or("-".into(), |t| t.to_string()),
        r.csv_step_s.map_or(String::new(), |s| format!(", csv step {s}s")),
        r.skipped()
    );
    Ok(ExitCode::SUCCESS)
}
