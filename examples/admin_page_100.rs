//! How fast the `/admin` page is with 100 endpoints: imports three days of 1-minute history for
//! each, starts prescale (historian + forecasts), waits for forecasts, then fetches the page
//! repeatedly and prints the median and range of the response time and its size.
//!
//! `cargo run --release --example admin_page_100 [ROUNDS]`

use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn fetch(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("admin answers");
    write!(s, "GET {path} HTTP/1.0\r\nHost: a\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args().nth(1).and_then(|r| r.parse().ok()).unwrap_or(30);
    let dir = tempfile::tempdir()?;
    let mut cfg = String::from(
        "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n[historian]\ndata_dir = \"data\"\n[[pool]]\nname = \"p\"\nmembers = [\"127.0.0.1:9\"]\n",
    );
    for i in 0..100 {
        cfg.push_str(&format!("[[endpoint]]\nname = \"ep{i:03}\"\npath_prefix = \"/e{i:03}\"\npool = \"p\"\n"));
    }
    let path = dir.path().join("p.toml");
    std::fs::write(&path, &cfg)?;
    let settings = prescale::config::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let h = settings.historian.clone().expect("historian");
    let now_min = prescale::clock::now_us() / 60_000_000;
    let t = Instant::now();
    for i in 0..100u64 {
        let mut csv = String::from("timestamp,value\n");
        for m in now_min - 3 * 1440..now_min {
            let v = 50.0 + 40.0 * (((m % 1440) as f64 / 1440.0 + i as f64 / 100.0) * std::f64::consts::TAU).sin();
            csv.push_str(&format!("{},{}\n", m * 60, v.round()));
        }
        let f = dir.path().join("h.csv");
        std::fs::write(&f, csv)?;
        prescale::historian::import::import(
            &f,
            &format!("ep{i:03}"),
            h.data_dir.as_ref().unwrap(),
            &h.store.tiers,
            &Default::default(),
        )?;
    }
    println!("imported 3 days × 100 endpoints in {:.1} s", t.elapsed().as_secs_f64());
    let app = prescale::app::App::start(settings).await?;
    let addr = app.admin_addr;
    let t = Instant::now();
    loop {
        let body = tokio::task::spawn_blocking(move || fetch(addr, "/admin/api/forecast?endpoint=ep099")).await?;
        if body.contains("\"points\":[{") || t.elapsed() > Duration::from_secs(240) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    println!("forecasts for all 100 endpoints after {:.0} s", t.elapsed().as_secs_f64());
    let mut ms = Vec::new();
    let mut size = 0;
    for _ in 0..rounds {
        let t = Instant::now();
        let page = tokio::task::spawn_blocking(move || fetch(addr, "/admin?refresh=0")).await?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        size = page.len();
        assert!(page.contains("ep099") && page.contains("class=\"forecast\""));
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    println!(
        "/admin with 100 endpoints (60 charts shown): median {:.1} ms [{:.1}–{:.1}] over {rounds} fetches, {} KiB",
        ms[ms.len() / 2],
        ms[0],
        ms[ms.len() - 1],
        size / 1024
    );
    app.stop().await;
    Ok(())
}
