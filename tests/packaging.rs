//! Packaging for hosts without containers: `cargo deb` (the cargo-deb tool, which `scripts/deps
//! --tests` installs) builds a .deb from this test run's binary; `dpkg -i` installs it into a
//! scratch root whose package database holds the host's own entries for the package's
//! dependencies (so dpkg checks them for real and touches nothing of the host); the packaged
//! `prescale check` passes on the packaged configuration; `systemd-analyze verify` accepts the
//! hardened unit without a single warning, and `systemd-analyze security` rates it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn tool(name: &str) -> PathBuf {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let also: Vec<PathBuf> = cargo_home.map(|c| c.join("bin")).into_iter().collect();
    crate::util::find_tool(name, &also, "cargo-deb, from crates.io")
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// The paragraphs of the host's dpkg status for these packages.
fn host_status(packages: &[&str]) -> String {
    let status = std::fs::read_to_string("/var/lib/dpkg/status").expect("a Debian/Ubuntu host");
    let mut out = String::new();
    for para in status.split("\n\n") {
        let name = para.lines().find_map(|l| l.strip_prefix("Package: ")).unwrap_or_default();
        if packages.contains(&name) && para.contains("Status: install ok installed") {
            out.push_str(para.trim_end());
            out.push_str("\n\n");
        }
    }
    out
}

#[test]
fn the_deb_installs_and_its_config_and_unit_pass_their_checks() {
    let dir = tempfile::tempdir().unwrap();
    // The binary this test run built (cargo-deb strips it), not a second release build.
    run(Command::new(tool("cargo-deb"))
        .args(["--no-build", "--profile", "dev", "--fast", "-o"])
        .arg(dir.path())
        .current_dir(repo()));
    let deb = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .expect("cargo deb wrote a .deb");

    // What it holds and what it needs.
    let info = run(Command::new("dpkg-deb").arg("--info").arg(&deb));
    let depends = info.lines().find_map(|l| l.trim().strip_prefix("Depends: ")).expect("Depends").to_string();
    assert!(depends.contains("libvirt0"), "{depends}");
    let files = run(Command::new("dpkg-deb").arg("--contents").arg(&deb));
    for f in [
        "./usr/bin/prescale",
        "./etc/prescale/proxy.toml",
        "./lib/systemd/system/prescale.service",
        "./usr/share/doc/prescale/prometheus/rules.yml",
    ] {
        assert!(files.contains(f), "{f} missing:\n{files}");
    }
    let conffiles = run(Command::new("dpkg-deb").arg("--info").arg(&deb).arg("conffiles"));
    assert_eq!(conffiles.trim(), "/etc/prescale/proxy.toml", "the config survives upgrades");

    // dpkg -i into a scratch root that knows the host's dependency packages.
    let root = dir.path().join("root");
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let needed: Vec<&str> =
        depends.split(',').map(|d| d.split_whitespace().next().unwrap_or_default().trim_end_matches(":any")).collect();
    std::fs::write(root.join("var/lib/dpkg/status"), host_status(&needed)).unwrap();
    run(Command::new("dpkg").arg(format!("--root={}", root.display())).arg("-i").arg(&deb));
    let status = run(Command::new("dpkg").arg(format!("--root={}", root.display())).args(["-s", "prescale"]));
    assert!(status.contains("Status: install ok installed"), "{status}");

    // The packaged binary accepts the packaged configuration.
    let prescale = root.join("usr/bin/prescale");
    let config = root.join("etc/prescale/proxy.toml");
    let check = run(Command::new(&prescale).arg("check").arg("--config").arg(&config));
    assert!(check.contains("ok:"), "{check}");

    // The unit: systemd-analyze verify, on a copy whose commands point at the scratch root
    // (verify checks that they exist), without a warning.
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/prescale.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/prescale run --config /etc/prescale/proxy.toml"));
    let copy = dir.path().join("prescale.service");
    std::fs::write(&copy, unit.replace("/usr/bin/prescale", &prescale.display().to_string())).unwrap();
    let verify = run(Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&copy));
    assert!(verify.trim().is_empty(), "systemd-analyze verify warned:\n{verify}");
    // Hardened: systemd's own exposure score (0 best … 10) stays low.
    let security = run(Command::new("systemd-analyze").args(["security", "--offline=true", "--no-pager"]).arg(&copy));
    let score: f64 = security
        .lines()
        .find_map(|l| l.split("Overall exposure level for prescale.service:").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no score in:\n{security}"));
    assert!(score <= 2.0, "exposure {score}:\n{security}");
}
