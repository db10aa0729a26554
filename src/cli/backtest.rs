//! `prescale backtest`: the forecast models scored on a trace.

use anyhow::Context;

pub(super) fn backtest(input: &std::path::Path, model: &str, json: bool) -> anyhow::Result<()> {
    use crate::forecast::backtest;
    let text = std::fs::read_to_string(input).with_context(|| format!("cannot read {}", input.display()))?;
    let series = backtest::read_csv(&text).map_err(|e| anyhow::anyhow!("{}: {e}", input.display()))?;
    let models: Vec<&str> = match model {
        "all" => backtest::MODELS.to_vec(),
        m if backtest::MODELS.contains(&m) => vec![m],
        m => anyhow::bail!("--model {m:?}: use one of {:?} or all", backtest::MODELS),
    };
    let all = model == "all";
    let mut results = Vec::new();
    for m in models {
        match backtest::run(&series, m) {
            Ok(r) => results.extend(r),
            // With `all`, a model that does not apply to the trace (too short, zeros for a
            // multiplicative season) is skipped, and said so.
            Err(e) if all => eprintln!("{m}: skipped ({e})"),
            Err(e) => anyhow::bail!("{m}: {e}"),
        }
    }
    if json {
        let out =
            serde_json::json!({ "input": input.display().to_string(), "step": series.step_s, "results": results });
        println!("{out}");
    } else {
        println!("{} ({} points, step {} s)", input.display(), series.values.len(), series.step_s);
        println!(
            "{:<8} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>9}  chosen at refits",
            "model", "horizon", "MASE", "sMAPE", "under", "cov80", "cov95", "fit ms"
        );
        for r in &results {
            println!(
                "{:<8} {:>5}m {:>7.3} {:>7.2} {:>7.3} {:>7.3} {:>7.3} {:>9.1}  {}",
                r.model,
                r.horizon_minutes,
                r.mase,
                r.smape,
                r.under_rate,
                r.coverage80,
                r.coverage95,
                r.fit_ms,
                r.selected.as_ref().map_or(String::new(), |s| s.join(", "))
            );
        }
    }
    Ok(())
}
