//! `prescale run` and `prescale demo`: the servers, on their runtimes, until a signal.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::{app::App, config, demo};

use super::EXIT_START;

pub(super) fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("prescale: {e:#}");
            ExitCode::from(EXIT_START)
        }
    }
}

pub(super) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // The control runtime: signals, health checks, reloads. The data plane runs on its own
    // worker threads (see `proxy::listener`).
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the runtime")
}

pub(super) async fn run(settings: config::Settings, config: Option<PathBuf>) -> anyhow::Result<()> {
    let files = crate::app::raise_open_file_limit();
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

pub(super) async fn run_demo(opts: demo::DemoOptions) -> anyhow::Result<()> {
    demo::run(opts).await
}
