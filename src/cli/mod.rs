//! The `prescale` command line: the subcommands and their bodies, one file each; the binary's
//! `main` only calls [`main`]. Exit codes: 0 ok, 1 failed to start or run, 2 invalid input.

mod backtest;
mod import;
mod run;
mod simulate;
mod status;

use backtest::backtest;
use import::import;
use run::{report, run, run_demo, runtime};
use simulate::simulate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::{config, demo};

#[derive(Parser)]
#[command(name = "prescale", version, about = "A reverse proxy that scales its VM backends ahead of the load")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
        #[arg(long, required_unless_present_any = ["from_history", "fleet"], conflicts_with_all = ["from_history", "fleet"])]
        trace: Option<PathBuf>,
        /// Replay what prescale recorded: the historian's data_dir …
        #[arg(long, requires = "endpoint", conflicts_with = "fleet")]
        from_history: Option<PathBuf>,
        /// … or what a whole fleet recorded (every instance's calls, summed), read from the
        /// etcd of this proxy.toml's `[cluster]`
        #[arg(long, requires = "endpoint")]
        fleet: Option<PathBuf>,
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
    /// Show a running instance's pools, VMs, forecasts for the next hour and last decisions
    /// (from its admin API) as a compact table.
    Status {
        #[command(flatten)]
        admin: AdminArgs,
        /// Print one JSON object instead of the table
        #[arg(long)]
        json: bool,
    },
    /// Exclude a period of an endpoint's history from what its models learn and how they are
    /// scored (an incident, a load test), on a running instance; it is kept in the data_dir.
    Exclude {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        endpoint: String,
        /// Start: RFC 3339 (2026-11-27T08:00:00Z) or epoch seconds
        #[arg(long)]
        from: String,
        /// End (excluded)
        #[arg(long)]
        to: String,
        /// Why (shown on the admin charts)
        #[arg(long)]
        reason: String,
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

/// How the commands that talk to a running instance reach its admin API.
#[derive(clap::Args)]
pub struct AdminArgs {
    /// The configuration the instance runs with: its [admin] address, token and TLS
    /// certificate say how to reach it
    #[arg(long, short, default_value = "proxy.toml")]
    config: PathBuf,
    /// The admin URL instead (http://host:port or https://host:port)
    #[arg(long)]
    admin: Option<String>,
    /// A file holding the admin token (default: PRESCALE_ADMIN_TOKEN, or the config's)
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// PEM certificates to trust when the admin speaks HTTPS (default: the config's admin.tls.cert)
    #[arg(long)]
    ca: Option<PathBuf>,
}

impl AdminArgs {
    fn target(self) -> anyhow::Result<status::Target> {
        status::Target::resolve(self.admin, &self.config, self.token_file, self.ca)
    }
}

pub(crate) const EXIT_START: u8 = 1;
pub(crate) const EXIT_CONFIG: u8 = 2;

/// The log filter: `PRESCALE_LOG` (tracing's `EnvFilter` syntax), default `info`. rustls is held
/// to errors unless the filter names it: it warns once per TLS handshake about what a client
/// sent (an IP address as SNI, as wrk and curl send), so any client could fill the log.
fn log_filter(env: Option<&str>) -> tracing_subscriber::EnvFilter {
    let spec = env.unwrap_or("info");
    let filter = tracing_subscriber::EnvFilter::try_new(spec).unwrap_or_else(|_| "info".into());
    if spec.contains("rustls") {
        return filter;
    }
    match "rustls=error".parse() {
        Ok(d) => filter.add_directive(d),
        Err(_) => filter,
    }
}

/// Parses the command line and runs the subcommand.
pub fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(log_filter(std::env::var("PRESCALE_LOG").ok().as_deref()))
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
        Command::Check { .. }
            | Command::Import { .. }
            | Command::Backtest { .. }
            | Command::Simulate { .. }
            | Command::Status { .. }
            | Command::Exclude { .. }
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
            let now = crate::clock::now_us() / 1_000_000;
            let opts = crate::historian::import::ImportOptions {
                format: None,
                path_prefix: path_prefix.as_deref(),
                shift_to_s: shift_to_now.then_some(now),
                latest_s: (!allow_future).then_some(now + crate::historian::import::FUTURE_TOLERANCE_S),
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
        Command::Simulate { trace, from_history, fleet, endpoint, policy, config, json, svg } => {
            match simulate(simulate::Input { trace, from_history, fleet }, endpoint, &policy, config, json, svg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("prescale simulate: {e:#}");
                    ExitCode::from(EXIT_CONFIG)
                }
            }
        }
        Command::Status { admin, json } => match admin.target().and_then(|t| status::status(&t, json)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("prescale status: {e:#}");
                ExitCode::from(EXIT_START)
            }
        },
        Command::Exclude { admin, endpoint, from, to, reason } => {
            match admin.target().and_then(|t| status::exclude(&t, &endpoint, &from, &to, &reason)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("prescale exclude: {e:#}");
                    ExitCode::from(EXIT_START)
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

#[cfg(test)]
mod tests {
    use super::log_filter;

    /// Regression: with `PRESCALE_LOG=warn`, every TLS handshake from a client that sends an IP
    /// address as SNI logged a rustls warning.
    #[test]
    fn rustls_is_held_to_errors_unless_the_filter_names_it() {
        for spec in [None, Some("warn"), Some("prescale=debug,info")] {
            let f = log_filter(spec).to_string();
            assert!(f.contains("rustls=error"), "{spec:?} → {f}");
        }
        let f = log_filter(Some("rustls=debug")).to_string();
        assert!(!f.contains("rustls=error"), "{f}");
        assert!(f.contains("rustls=debug"), "{f}");
    }
}
