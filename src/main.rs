//! The `prescale` command: parse the command line, load and validate the configuration, start
//! the app, wait for signals. Exit codes: 0 ok, 1 failed to start or run, 2 invalid config.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use prescale::{app::App, config, demo};

#[derive(Parser)]
#[command(name = "prescale", version, about = "A reverse proxy that scales its VM backends ahead of the load")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy with a configuration file (SIGHUP reloads it, SIGTERM/SIGINT stop gracefully).
    Run {
        #[arg(long, short, default_value = "proxy.toml")]
        config: PathBuf,
    },
    /// Validate a configuration file: prints a summary, or every problem (one per line).
    Check {
        #[arg(long, short, default_value = "proxy.toml")]
        config: PathBuf,
    },
    /// Load history for an endpoint from a `timestamp,count` CSV or an access log (Common or
    /// Combined Log Format) into the historian's data_dir. Stop prescale first: the data_dir is
    /// locked while it runs. Any bad line, or a row older than the history kept, makes the
    /// import fail without writing anything, unless --skip-bad.
    Import {
        #[arg(long, short, default_value = "proxy.toml")]
        config: PathBuf,
        /// The endpoint (as named in the config) whose history this is
        #[arg(long)]
        endpoint: String,
        /// The CSV (`timestamp,count`; epoch seconds or ISO-8601) or access log to read
        #[arg(long)]
        input: PathBuf,
        /// csv or log (default: detected from the first line)
        #[arg(long)]
        format: Option<String>,
        /// Only count access-log requests whose path starts with this
        #[arg(long)]
        path_prefix: Option<String>,
        /// Move an old trace forward by whole weeks so it ends within the last week
        #[arg(long)]
        shift_to_now: bool,
        /// Accept rows dated after now (refused by default: they would sit after every live call)
        #[arg(long)]
        allow_future: bool,
        /// Import the good rows even when some lines are bad or too old (listed, exit 0)
        #[arg(long)]
        skip_bad: bool,
    },
    /// Score forecast models on a `timestamp,value` trace with the project's rolling-origin
    /// protocol (origins hourly over the last 48 h, horizons 5 and 60 min).
    Backtest {
        /// The trace: a `timestamp,value` CSV at a regular step (epoch seconds, values per step)
        #[arg(long)]
        input: PathBuf,
        /// auto, hw, hw_mul, dshw, arima, prophet, snaive, holt, naive, or all
        #[arg(long, default_value = "all")]
        model: String,
        /// Print the scores as one JSON object instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Replay a trace on a virtual clock through the forecast engine and the planner with a
    /// simulated hypervisor, comparing scaling policies (reactive HPA, static, predictive,
    /// predictive+reactive, oracle).
    Simulate {
        /// `timestamp,value` CSV (requests per step)
        #[arg(long, required_unless_present = "from_history", conflicts_with = "from_history")]
        trace: Option<PathBuf>,
        /// Replay what prescale recorded: the historian's data_dir …
        #[arg(long, requires = "endpoint")]
        from_history: Option<PathBuf>,
        /// … and the endpoint to replay
        #[arg(long)]
        endpoint: Option<String>,
        /// reactive, static, predictive, predictive+reactive, oracle, or all
        #[arg(long, default_value = "all")]
        policy: String,
        /// A TOML file with a `[simulate]` table overriding the defaults
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the report as one JSON object instead of a table
        #[arg(long)]
        json: bool,
        /// Write a chart of the replay
        #[arg(long)]
        svg: Option<PathBuf>,
    },
    /// Seed a week of history, run prescale on an accelerated clock in front of simulated VMs
    /// (libvirt's test driver + in-process servers) and replay the next day through it; no
    /// configuration, root or daemon needed.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: String,
        /// Virtual seconds per real second (144: a day in ten minutes)
        #[arg(long, default_value_t = 144.0)]
        speed: f64,
        /// Seed and replay the `orders` endpoint from this `timestamp,value` trace
        #[arg(long)]
        trace: Option<PathBuf>,
        /// Stop after this many seconds (default: run until Ctrl-C)
        #[arg(long)]
        seconds: Option<u64>,
    },
}

const EXIT_START: u8 = 1;
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("PRESCALE_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: in a file or a log collector they are noise.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    // The one-shot commands behave like Unix filters: output into a closed pipe (`… | head`)
    // ends them quietly, as SIGPIPE does, instead of a panic on EPIPE (exit 101). The servers
    // (`run`, `demo`) keep SIGPIPE ignored: a client that hangs up must never stop them.
    if matches!(
        cli.command,
        Command::Check { .. } | Command::Import { .. } | Command::Backtest { .. } | Command::Simulate { .. }
    ) {
        // SAFETY: restoring a signal's default action before any thread of ours exists.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match cli.command {
        Command::Check { config } => match config::load(&config) {
            Ok(s) => {
                println!("{}: {}", config.display(), s.summary());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                eprintln!("{} problem(s) found", e.errors.len());
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Run { config } => {
            let settings = match config::load(&config) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            report(runtime().and_then(|rt| rt.block_on(run(settings, Some(config)))))
        }
        Command::Import { config, endpoint, input, format, path_prefix, shift_to_now, allow_future, skip_bad } => {
            let now = prescale::clock::now_us() / 1_000_000;
            let opts = prescale::historian::import::ImportOptions {
                format: None,
                path_prefix: path_prefix.as_deref(),
                shift_to_s: shift_to_now.then_some(now),
                latest_s: (!allow_future).then_some(now + prescale::historian::import::FUTURE_TOLERANCE_S),
                oldest_s: None,
                skip_bad,
            };
            match import(&config, &endpoint, &input, format.as_deref(), opts) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("prescale import: {e:#}");
                    ExitCode::from(EXIT_START)
                }
            }
        }
        Command::Backtest { input, model, json } => match backtest(&input, &model, json) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("prescale backtest: {e:#}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Simulate { trace, from_history, endpoint, policy, config, json, svg } => {
            match simulate(trace, from_history, endpoint, &policy, config, json, svg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("prescale simulate: {e:#}");
                    ExitCode::from(EXIT_CONFIG)
                }
            }
        }
        Command::Demo { listen, admin, speed, trace, seconds } => {
            if !(1.0..=10_000.0).contains(&speed) {
                eprintln!("prescale demo: --speed {speed} is out of range (1 … 10000)");
                return ExitCode::from(EXIT_CONFIG);
            }
            let opts = demo::DemoOptions {
                listen,
                admin,
                speed,
                trace,
                duration: seconds.map(std::time::Duration::from_secs),
                ..demo::DemoOptions::default()
            };
            // The demo's VMs and load generator share the control runtime: give it two threads.
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
            report(rt.map_err(anyhow::Error::from).and_then(|rt| rt.block_on(run_demo(opts))))
        }
    }
}

fn import(
    config: &std::path::Path,
    endpoint: &str,
    input: &std::path::Path,
    format: Option<&str>,
    mut opts: prescale::historian::import::ImportOptions,
) -> anyhow::Result<ExitCode> {
    use prescale::historian::import::{self, Format};
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
    let now = prescale::clock::now_us() / 1_000_000;
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

fn backtest(input: &std::path::Path, model: &str, json: bool) -> anyhow::Result<()> {
    use prescale::forecast::backtest;
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

fn simulate(
    trace: Option<PathBuf>,
    from_history: Option<PathBuf>,
    endpoint: Option<String>,
    policy: &str,
    config: Option<PathBuf>,
    json: bool,
    svg: Option<PathBuf>,
) -> anyhow::Result<()> {
    use prescale::simulate;
    use std::io::{IsTerminal, Write};
    let settings = match &config {
        Some(c) => simulate::SimSettings::load(c)?,
        None => simulate::SimSettings::default(),
    };
    let (name, series) = match (trace, from_history, endpoint) {
        (Some(t), _, _) => {
            let text = std::fs::read_to_string(&t).with_context(|| format!("cannot read {}", t.display()))?;
            let s =
                prescale::forecast::backtest::read_csv(&text).map_err(|e| anyhow::anyhow!("{}: {e}", t.display()))?;
            (t.file_stem().map_or("trace".into(), |s| s.to_string_lossy().into_owned()), s)
        }
        (None, Some(dir), Some(ep)) => {
            let s = prescale::historian::import::recorded_series(&dir, &ep)?;
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

fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("prescale: {e:#}");
            ExitCode::from(EXIT_START)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // The control runtime: signals, health checks, reloads. The data plane runs on its own
    // worker threads (see `proxy::listener`).
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the runtime")
}

async fn run(settings: config::Settings, config: Option<PathBuf>) -> anyhow::Result<()> {
    let files = prescale::app::raise_open_file_limit();
    // Each client connection may hold an upstream one too; the admin's connections are capped
    // apart (admin.max_connections, plus as many briefly read for probes) so they never take
    // the data plane's descriptors; 256 more for data files, health checks and libvirt.
    let wanted = settings.listen.max_connections as u64 * 2 + settings.admin.max_connections as u64 * 2 + 256;
    if files < wanted {
        tracing::warn!(
            limit = files,
            max_connections = settings.listen.max_connections,
            admin_max_connections = settings.admin.max_connections,
            "the open-file limit is below 2 × listen.max_connections + 2 × admin.max_connections + 256: beyond it, accepts back off"
        );
    }
    let app = App::start(settings).await?;
    println!("prescale: proxy listening on http://{}, admin on http://{}", app.proxy_addr, app.admin_addr);
    app.run_until_signal(config).await?;
    Ok(())
}

async fn run_demo(opts: demo::DemoOptions) -> anyhow::Result<()> {
    demo::run(opts).await
}
