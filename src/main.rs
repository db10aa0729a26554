//! The `prescale` command: parse the command line, load and validate the configuration, start
//! the app, wait for signals. Exit codes: 0 ok, 1 failed to start or run, 2 invalid config.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

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
    /// Start local demo backends and the proxy in front of them; no configuration needed.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: String,
    },
}

const EXIT_START: u8 = 1;
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("PRESCALE_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
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
        Command::Demo { listen, admin } => report(runtime().and_then(|rt| rt.block_on(run_demo(listen, admin)))),
    }
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
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")
}

async fn run(settings: config::Settings, config: Option<PathBuf>) -> anyhow::Result<()> {
    let app = App::start(settings).await?;
    println!("prescale: proxy listening on http://{}, admin on http://{}", app.proxy_addr, app.admin_addr);
    app.run_until_signal(config).await?;
    Ok(())
}

async fn run_demo(listen: String, admin: String) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    let backends = [
        demo::start_backend("orders-1", stop.clone()).await?,
        demo::start_backend("orders-2", stop.clone()).await?,
        demo::start_backend("search-1", stop.clone()).await?,
    ];
    let settings = demo::settings(&listen, &admin, backends)
        .map_err(|errs| anyhow::anyhow!(errs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")))?;
    let app = App::start(settings).await?;
    let (p, a) = (app.proxy_addr, app.admin_addr);
    println!("prescale demo: proxy on http://{p}, admin on http://{a}");
    println!("  backends (stand-ins for VMs): orders {} {}, search {}", backends[0], backends[1], backends[2]);
    println!("  try:  curl -i http://{p}/api/orders/42");
    println!("        curl -i 'http://{p}/api/search?q=rust&delay_ms=20'");
    println!("        curl http://{a}/metrics");
    println!("        wrk -t2 -c64 -d10s http://{p}/api/orders/1");
    println!("  Ctrl-C stops.");
    let r = app.run_until_signal(None).await;
    stop.cancel();
    r?;
    Ok(())
}
