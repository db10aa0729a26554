//! `prescale simulate`: a trace (or recorded history) replayed through the controller.

use std::path::PathBuf;

use anyhow::Context;

/// Where the replayed series comes from (one of them).
pub(super) struct Input {
    pub trace: Option<PathBuf>,
    pub from_history: Option<PathBuf>,
    pub fleet: Option<PathBuf>,
}

pub(super) fn simulate(
    Input { trace, from_history, fleet }: Input,
    endpoint: Option<String>,
    policy: &str,
    config: Option<PathBuf>,
    json: bool,
    svg: Option<PathBuf>,
) -> anyhow::Result<()> {
    use crate::simulate;
    use std::io::{IsTerminal, Write};
    let settings = match &config {
        Some(c) => simulate::SimSettings::load(c)?,
        None => simulate::SimSettings::default(),
    };
    let (name, series) = match (trace, from_history, endpoint) {
        (None, None, Some(ep)) if fleet.is_some() => {
            let cfg = fleet.as_deref().expect("checked");
            let settings = crate::config::load(cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
            let Some(cluster) = settings.cluster else {
                anyhow::bail!(
                    "{}: no [cluster] section: --fleet reads the fleet's history from its etcd",
                    cfg.display()
                )
            };
            let s = crate::fleet::fleet_series(&cluster, &ep).map_err(|e| anyhow::anyhow!("{e}"))?;
            (ep, s)
        }
        (Some(t), _, _) => {
            let text = std::fs::read_to_string(&t).with_context(|| format!("cannot read {}", t.display()))?;
            let s = crate::forecast::backtest::read_csv(&text).map_err(|e| anyhow::anyhow!("{}: {e}", t.display()))?;
            (t.file_stem().map_or("trace".into(), |s| s.to_string_lossy().into_owned()), s)
        }
        (None, Some(dir), Some(ep)) => {
            let s = crate::historian::import::recorded_series(&dir, &ep)?;
            (ep, s)
        }
        _ => anyhow::bail!("give --trace FILE, or --from-history DATA_DIR with --endpoint NAME"),
    };
    // Forecasts learn a daily pattern from at least two days: on less, their errors say more
    // about the trace's length than about the models.
    let span_h = series.values.len() as f64 * series.step_s as f64 / 3600.0;
    if span_h < 48.0 {
        eprintln!(
            "warning: the trace covers {span_h:.1} h; forecasts need two days to learn a daily pattern, so on this \
             trace expect forecast errors (MASE) well above 1 and the predictive policies to do little better than reactive"
        );
    }
    let policies: Vec<simulate::Policy> = if policy == "all" {
        simulate::Policy::ALL.to_vec()
    } else {
        policy.split(',').map(str::parse).collect::<Result<_, _>>()?
    };
    let tty = std::io::stderr().is_terminal();
    let started = std::time::Instant::now();
    let mut progress = |done: u64, total: u64| {
        if tty {
            let w = 30;
            let k = (done * w / total.max(1)) as usize;
            eprint!(
                "\r[{}{}] {:3}% {:.1}s",
                "#".repeat(k),
                " ".repeat(w as usize - k),
                done * 100 / total.max(1),
                started.elapsed().as_secs_f64()
            );
            if done >= total {
                eprintln!();
            }
            let _ = std::io::stderr().flush();
        }
    };
    let report = simulate::run(&name, &series, &settings, &policies, &mut progress)?;
    if let Some(path) = &svg {
        std::fs::write(path, simulate::svg::render(&report))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", simulate::table(&report));
        println!("settings: {}", serde_json::to_string(&report.settings)?);
        println!("replayed in {:.1} s", started.elapsed().as_secs_f64());
    }
    Ok(())
}
