//! The fleet (`[cluster]`) against a real etcd, started here on loopback ports (a single
//! member; `scripts/fleet-failover` runs three). Instances in this process share libvirt's
//! `test:///default` (one in-memory hypervisor per process), so two of them really scale the
//! same pool; instances run as separate processes for SIGKILL and SIGSTOP.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

const TOKEN: &str = "fleet-token-for-tests";

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One etcd member on loopback ports, with its own data directory; killed by PID.
pub struct Etcd {
    child: Option<KillOnDrop>,
    pub url: String,
    client: u16,
    peer: u16,
    dir: PathBuf,
}

impl Etcd {
    pub fn start(dir: &Path) -> Self {
        let mut e =
            Etcd { child: None, url: String::new(), client: free_port(), peer: free_port(), dir: dir.join("etcd") };
        e.url = format!("http://127.0.0.1:{}", e.client);
        e.restart();
        e
    }

    /// Starts it again on the same ports and data (after [`Etcd::kill`]).
    pub fn restart(&mut self) {
        let etcd = find_tool("etcd", &[repo("target/tools/etcd-server/usr/bin")], "Debian's etcd-server package");
        let peer = format!("http://127.0.0.1:{}", self.peer);
        let child = std::process::Command::new(etcd)
            .args(["--name", "n1", "--data-dir"])
            .arg(&self.dir)
            .args(["--listen-client-urls", &self.url, "--advertise-client-urls", &self.url])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("n1={peer}"), "--log-level", "error"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(KillOnDrop(child));
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.client)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "etcd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill(&mut self) {
        self.child = None;
    }
}

/// A TCP forwarder to etcd that can be cut: an instance behind it loses etcd as in a network
/// partition (or, from etcd's side, a crash: its lease is not renewed and not revoked).
struct Link {
    url: String,
    cut: tokio_util::sync::CancellationToken,
}

impl Link {
    async fn to(etcd: &str) -> Self {
        let target = etcd.trim_start_matches("http://").to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let cut = tokio_util::sync::CancellationToken::new();
        let stop = cut.clone();
        tokio::spawn(async move {
            loop {
                let mut inbound = tokio::select! {
                    _ = stop.cancelled() => return,
                    a = listener.accept() => match a { Ok((s, _)) => s, Err(_) => continue },
                };
                let (target, stop) = (target.clone(), stop.clone());
                tokio::spawn(async move {
                    let Ok(mut out) = tokio::net::TcpStream::connect(&target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut out) => {}
                        _ = stop.cancelled() => {}
                    }
                });
            }
        });
        Link { url, cut }
    }
}

/// A pool `pool` scaled on `test:///default` (template `fleet-tpl`), endpoint `api` on it,
/// in a fleet named `fleet`; `members` are static upstreams of the pool.
#[allow(clippy::too_many_arguments)]
fn config(
    dir: &Path,
    id: &str,
    fleet: &str,
    etcd: &str,
    pool: &str,
    mode: &str,
    ports: u16,
    members: &[SocketAddr],
) -> PathBuf {
    let token = write_token(dir, TOKEN);
    let members: Vec<String> = members.iter().map(|m| format!("{{ addr = \"{m}\" }}")).collect();
    let cfg = dir.join(format!("{id}.toml"));
    std::fs::write(
        &cfg,
        format!(
            "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\ntoken_file = \"{}\"\n\
             [historian]\ndata_dir = \"data-{id}\"\n\
             [[endpoint]]\nname = \"api\"\npath_prefix = \"/api\"\npool = \"{pool}\"\n\
             [[pool]]\nname = \"{pool}\"\nmembers = [{}]\n\
             [pool.scaling]\nuri = \"test:///default\"\ntemplate = \"fleet-tpl\"\nmode = \"{mode}\"\nmin_vms = 0\n\
             max_vms = 2\nvcpus = [1, 1]\nmemory_mib = [256, 512]\ncapacity_rps_per_vcpu = 5.0\n\
             target_utilization = 1.0\nheadroom = 0.0\nlead_time = \"60s\"\nwindow = \"5m\"\nmax_step = 2\n\
             warm_spares = 0\nports = [{ports}, {}]\nhealth_path = \"/health\"\n\
             [cluster]\netcd = [\"{etcd}\"]\nname = \"{fleet}\"\nid = \"{id}\"\nlease_ttl = \"2s\"\n",
            token.display(),
            members.join(", "),
            ports + 50
        ),
    )
    .unwrap();
    cfg
}

/// Holds `test:///default` open with the template defined (the test driver's default
/// hypervisor lives while a connection to it is open).
struct Hypervisor(virt::connect::Connect);

impl Hypervisor {
    fn open() -> Self {
        let c = virt::connect::Connect::open(Some("test:///default")).unwrap();
        let xml = r#"<domain type="test"><name>fleet-tpl</name><memory unit="MiB">1024</memory>
            <currentMemory unit="MiB">512</currentMemory><vcpu current="1">4</vcpu><os><type>hvm</type></os></domain>"#;
        // Another test may have defined it first.
        let _ = c.define_domain_xml(xml);
        assert!(c.lookup_domain_by_name("fleet-tpl").is_ok());
        Self(c)
    }

    /// Domains whose name starts with `prefix`.
    fn count(&self, prefix: &str) -> usize {
        self.0.list_all_domains(0).unwrap().iter().filter(|d| d.name().is_ok_and(|n| n.starts_with(prefix))).count()
    }
}

/// GET `url` with the admin token.
async fn authed(c: &TestClient, url: String) -> Got {
    let req = http::Request::get(url)
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(http_body_util::Full::default())
        .unwrap();
    send(c, req).await
}

async fn admin(c: &TestClient, app: &prescale::app::App, path: &str) -> Value {
    authed(c, admin_url(app, path)).await.json()
}

/// `POST /admin/action` asking `app` for one VM more or less in pool `fp`.
async fn scale(c: &TestClient, app: &prescale::app::App, delta: i32) -> Got {
    let req = http::Request::post(admin_url(app, "/admin/action"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(http_body_util::Full::from(format!("action=scale&pool=fp&delta={delta}")))
        .unwrap();
    send(c, req).await
}

async fn role(c: &TestClient, app: &prescale::app::App) -> String {
    admin(c, app, "/admin/api/pools").await[0]["fleet"]["role"].as_str().unwrap_or("").to_string()
}

async fn metrics(c: &TestClient, app: &prescale::app::App) -> String {
    String::from_utf8_lossy(&authed(c, admin_url(app, "/metrics")).await.body).into_owned()
}

/// Two instances in front of one scaled pool: one leads, a forecast ramp makes exactly the
/// launches one instance would (not one set per instance), the follower shows the leader's
/// decisions, joins the new VMs once they answer, refuses admin actions naming the leader,
/// drains with the leader, and takes over — adopting the VMs, cloning none — when the leader is
/// cut off from etcd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_scales_the_pool_and_a_follower_follows_then_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path());
    let hv = Hypervisor::open();
    let ports = 30_000 + fastrand::u16(0..20_000);
    let cfgs: Vec<PathBuf> =
        ["a", "b"].iter().map(|id| config(dir.path(), id, "f1", &etcd.url, "fp", "enabled", ports, &[])).collect();
    for cfg in &cfgs {
        peak_history(dir.path(), cfg);
    }
    // Each instance reaches etcd through a link the test can cut.
    let links = [Link::to(&etcd.url).await, Link::to(&etcd.url).await];
    let mut apps = Vec::new();
    for (cfg, link) in cfgs.iter().zip(&links) {
        let text = std::fs::read_to_string(cfg).unwrap().replace(&etcd.url, &link.url);
        std::fs::write(cfg, text).unwrap();
        apps.push(Some(prescale::app::App::start(prescale::config::load(cfg).unwrap()).await.unwrap()));
    }
    let c = client();
    macro_rules! app {
        ($i:expr) => {
            apps[$i].as_ref().unwrap()
        };
    }
    let settled = async || {
        let (a, b) = (role(&c, app!(0)).await, role(&c, app!(1)).await);
        matches!((a.as_str(), b.as_str()), ("leader", "follower") | ("follower", "leader"))
    };
    assert!(eventually(Duration::from_secs(10), settled).await, "{}", admin(&c, app!(1), "/admin/api/pools").await);
    let leader = if role(&c, app!(0)).await == "leader" { 0 } else { 1 };
    let follower = 1 - leader;
    let leader_id = ["a", "b"][leader];

    // The ramp: the leader launches two VMs, and nobody else does.
    let launched = async || hv.count("fp-") == 2;
    assert!(
        eventually(Duration::from_secs(60), launched).await,
        "{}",
        admin(&c, app!(leader), "/admin/api/pools").await
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(hv.count("fp-"), 2, "one set of launches for the fleet, not one per instance");
    let mine = |d: &Value| {
        d.as_array().unwrap().iter().filter(|d| d["action"]["kind"] == "launch" && d["outcome"] == "ok").count()
    };
    assert!(mine(&admin(&c, app!(leader), "/admin/api/decisions?pool=fp").await) >= 1);
    // The follower shows the leader's decisions, read from etcd.
    let shown = async || mine(&admin(&c, app!(follower), "/admin/api/decisions?pool=fp").await) >= 1;
    assert!(
        eventually(Duration::from_secs(5), shown).await,
        "{}",
        admin(&c, app!(follower), "/admin/api/decisions").await
    );
    let p = admin(&c, app!(follower), "/admin/api/pools").await;
    assert_eq!(p[0]["fleet"]["leader"], leader_id, "{p}");
    // Its admin actions are refused, naming the leader.
    let r = scale(&c, app!(follower), 1).await;
    assert_eq!(r.status, 409);
    let body = String::from_utf8_lossy(&r.body).into_owned();
    assert!(body.contains(&format!("led by instance {leader_id}")) && body.contains("http://127.0.0.1:"), "{body}");
    let m = metrics(&c, app!(leader)).await;
    assert_eq!(metric(&m, "prescale_fleet_leader{pool=\"fp\"}"), Some(1.0));
    assert_eq!(metric(&metrics(&c, app!(follower)).await, "prescale_fleet_leader{pool=\"fp\"}"), Some(0.0));

    // The guests come up: every instance joins them after its own health check.
    let p = admin(&c, app!(leader), "/admin/api/pools").await;
    for v in p[0]["vms"].as_array().unwrap() {
        let owner = v["owner"].as_str().unwrap_or("");
        assert!(owner.starts_with(&format!("f1/{leader_id}/")), "fleet, maker and term in the metadata: {v}");
    }
    let mut up = Vec::new();
    for v in p[0]["vms"].as_array().unwrap() {
        let addr: SocketAddr = v["addr"].as_str().unwrap().parse().unwrap();
        up.push(Upstream::start_on(v["name"].as_str().unwrap(), addr).await);
    }
    for i in [leader, follower] {
        let serving = async || {
            let p = admin(&c, app!(i), "/admin/api/pools").await;
            p[0]["vms"].as_array().is_some_and(|v| v.len() == 2 && v.iter().all(|v| v["in_pool"] == true))
        };
        assert!(eventually(Duration::from_secs(20), serving).await, "{}", admin(&c, app!(i), "/admin/api/pools").await);
        for _ in 0..10 {
            assert_eq!(get(&c, &url(app!(i), "/api/x")).await.status, 200);
        }
    }
    assert!(up.iter().all(|u| u.hits() > 0));

    // A drain on the leader drains everywhere, and the VM stops only once no instance has
    // requests in flight to it: slow requests through the follower hold it.
    let mut slow = Vec::new();
    for _ in 0..6 {
        let target = url(app!(follower), "/api/sleep/5000");
        slow.push(tokio::spawn(async move { get(&client(), &target).await.status }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!([200, 303].contains(&scale(&c, app!(leader), -1).await.status));
    let follower_drains = async || {
        let p = admin(&c, app!(follower), "/admin/api/pools").await;
        p[0]["vms"].as_array().is_some_and(|v| v.iter().any(|v| v["phase"] == "draining"))
    };
    assert!(
        eventually(Duration::from_secs(5), follower_drains).await,
        "{}",
        admin(&c, app!(follower), "/admin/api/pools").await
    );
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let p = admin(&c, app!(leader), "/admin/api/pools").await;
        let vms = p[0]["vms"].as_array().unwrap();
        assert!(vms.iter().all(|v| v["state"] == "running"), "stopped while the follower had requests in flight: {p}");
    }
    for s in slow {
        assert_eq!(s.await.unwrap(), 200, "every request in flight through the follower finished");
    }
    let stopped = async || {
        let p = admin(&c, app!(leader), "/admin/api/pools").await;
        p[0]["vms"].as_array().is_some_and(|v| v.iter().any(|v| v["phase"] == "stopped"))
    };
    assert!(
        eventually(Duration::from_secs(15), stopped).await,
        "{}",
        admin(&c, app!(leader), "/admin/api/pools").await
    );

    // The leader is cut off from etcd without a word (a partition; to etcd, a crash): its
    // lease runs out, the follower leads within lease_ttl + 2 s, adopts the VMs and clones
    // nothing; the cut-off instance pauses and keeps serving.
    let cut_at = Instant::now();
    links[leader].cut.cancel();
    let leads = async || role(&c, app!(follower)).await == "leader";
    assert!(eventually(Duration::from_secs(4), leads).await, "{}", admin(&c, app!(follower), "/admin/api/pools").await);
    eprintln!("fleet: a cut-off leader was replaced in {:?}", cut_at.elapsed());
    assert_eq!(role(&c, app!(leader)).await, "paused");
    assert_eq!(get(&c, &url(app!(leader), "/api/x")).await.status, 200, "the cut-off instance still serves");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let p = admin(&c, app!(follower), "/admin/api/pools").await;
    assert_eq!(hv.count("fp-"), 2, "adopted, not cloned again: {p}");
    assert!(p[0]["vms"].as_array().unwrap().iter().any(|v| v["phase"] == "serving"), "{p}");
    // Taken back after it is gone: the new leader stays, and stops its own way.
    apps[leader].take().unwrap().stop().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(role(&c, app!(follower)).await, "leader");
    assert_eq!(hv.count("fp-"), 2);
    apps[follower].take().unwrap().stop().await;
    for u in up {
        u.stop().await;
    }
    drop(etcd);
}

/// What each instance records goes to etcd and comes back summed: both instances' 1-minute
/// series hold exactly the calls sent to either. etcd killed under load loses no request;
/// scaling pauses (shown in the pool, its decisions and `/metrics`) and resumes once etcd is
/// back, and the minutes closed meanwhile are published late, not lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_series_is_the_exact_sum_and_an_etcd_outage_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = Etcd::start(dir.path());
    let _hv = Hypervisor::open();
    let backend = Upstream::start("backend").await;
    let ports = 30_000 + fastrand::u16(0..20_000);
    let mut apps = Vec::new();
    for id in ["a", "b"] {
        let cfg = config(dir.path(), id, "f2", &etcd.url, "sp", "dry_run", ports, &[backend.addr]);
        apps.push(prescale::app::App::start(prescale::config::load(&cfg).unwrap()).await.unwrap());
    }
    let c = client();
    let settled = async || {
        let r = [role(&c, &apps[0]).await, role(&c, &apps[1]).await];
        r.iter().filter(|r| *r == "leader").count() == 1 && r.iter().filter(|r| *r == "follower").count() == 1
    };
    assert!(eventually(Duration::from_secs(10), settled).await);
    // From the start of the next minute (the minute an instance starts in is only partly its).
    let now = prescale::clock::now_us();
    tokio::time::sleep(Duration::from_micros(60_000_000 - now % 60_000_000 + 200_000)).await;
    let first_minute = prescale::clock::now_us() / 60_000_000;
    let urls = [url(&apps[0], "/api/x"), url(&apps[1], "/api/x")];
    let load = {
        let (c, urls) = (c.clone(), urls.clone());
        tokio::spawn(async move {
            let (mut sent, mut failed) = ([0u64; 2], 0u64);
            let until = Instant::now() + Duration::from_secs(70);
            let mut i = 0;
            while Instant::now() < until {
                // Uneven on purpose: two to the first instance for one to the second.
                let k = usize::from(i % 3 == 2);
                match get(&c, &urls[k]).await.status {
                    200 => sent[k] += 1,
                    _ => failed += 1,
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (sent, failed)
        })
    };
    tokio::time::sleep(Duration::from_secs(10)).await;
    etcd.kill();
    // Both instances pause (each after its own few seconds of failures) and say so.
    let paused = async || {
        let mut all = true;
        for app in &apps {
            let p = admin(&c, app, "/admin/api/pools").await;
            let m = metrics(&c, app).await;
            all &= p[0]["fleet"]["role"] == "paused"
                && p[0]["degraded"].as_str().is_some_and(|d| d.contains("scaling paused"))
                && metric(&m, "prescale_fleet_etcd_up") == Some(0.0)
                && metric(&m, "prescale_fleet_paused{pool=\"sp\"}") == Some(1.0);
        }
        all
    };
    assert!(eventually(Duration::from_secs(10), paused).await, "{}", admin(&c, &apps[1], "/admin/api/pools").await);
    let d = admin(&c, &apps[1], "/admin/api/decisions?pool=sp").await;
    assert!(d.to_string().contains("fleet: scaling paused"), "{d}");
    // Long enough for a minute to close while etcd is away.
    tokio::time::sleep(Duration::from_secs(25)).await;
    etcd.restart();
    assert!(eventually(Duration::from_secs(15), settled).await, "{}", admin(&c, &apps[0], "/admin/api/pools").await);
    let (sent, failed) = load.await.unwrap();
    assert_eq!(failed, 0, "no request failed while etcd was away");
    let last_minute = prescale::clock::now_us() / 60_000_000;
    // Every minute of the load closed, published and read back by the other instance.
    let until = (last_minute + 1) * 60_000_000 + 8_000_000;
    tokio::time::sleep(Duration::from_micros(until.saturating_sub(prescale::clock::now_us()))).await;
    let total = |app: &prescale::app::App| {
        let path =
            format!("/admin/api/series?endpoint=api&step=60&from={}&to={}", first_minute * 60, (last_minute + 1) * 60);
        let (c, app_url) = (c.clone(), admin_url(app, &path));
        async move {
            let s = authed(&c, app_url).await.json();
            s["points"].as_array().unwrap().iter().map(|p| p["count"].as_u64().unwrap()).sum::<u64>()
        }
    };
    let want = sent[0] + sent[1];
    let exact = async || total(&apps[0]).await == want && total(&apps[1]).await == want;
    assert!(
        eventually(Duration::from_secs(10), exact).await,
        "sent {sent:?}: instance a shows {}, b {}; fleet {}",
        total(&apps[0]).await,
        total(&apps[1]).await,
        admin(&c, &apps[0], "/admin/api/fleet").await
    );
    for app in &apps {
        let f = admin(&c, app, "/admin/api/fleet").await;
        assert_eq!(f["counters"]["minutes_pending"], 0, "{f}");
        assert!(f["error"].is_null(), "{f}");
    }
    // What `prescale simulate --fleet` replays: the same sum, from etcd alone.
    let cluster = prescale::config::load(&dir.path().join("a.toml")).unwrap().cluster.unwrap();
    let series =
        tokio::task::spawn_blocking(move || prescale::fleet::fleet_series(&cluster, "api")).await.unwrap().unwrap();
    let from_etcd: f64 = series.values.iter().filter(|v| !v.is_nan()).sum();
    assert_eq!(from_etcd as u64, want, "{series:?}");
    for app in apps {
        app.stop().await;
    }
    backend.stop().await;
}

/// A fleet thread alone (no proxy, no historian) electing a leader for pool `p`.
fn bare_fleet(settings: prescale::fleet::ClusterSettings, id: &str) -> prescale::fleet::Fleet {
    prescale::fleet::Fleet::start(prescale::fleet::Start {
        settings,
        id: id.into(),
        admin: "127.0.0.1:1".into(),
        pools: vec!["p".into()],
        closed: None,
        peers: None,
        historian: None,
    })
    .unwrap()
}

/// An ex-leader's action is refused by etcd itself: the fence compares the leader key's lease
/// with this instance's, so once the lease is gone (expired while the process was paused, or
/// revoked as here) a write under the fence fails even while the instance still thinks it leads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fence_refuses_an_ex_leaders_action() {
    use prescale::allocator::live::{Coordinator, Role};
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path());
    let settings = prescale::fleet::ClusterSettings {
        etcd: vec![etcd.url.clone()],
        name: "f3".into(),
        lease_ttl: Duration::from_secs(5),
        ..Default::default()
    };
    let fleet = bare_fleet(settings, "solo");
    let view = fleet.view();
    let leads = async || matches!(view.role("p"), Role::Leader { .. });
    assert!(eventually(Duration::from_secs(10), leads).await, "{:?}", view.role("p"));
    let v = view.clone();
    let before = tokio::task::spawn_blocking(move || v.fence("p", "launch 1 VM")).await.unwrap();
    assert_eq!(before, Ok(()));
    // The lease goes away behind the instance's back.
    let mut c = etcd_client::Client::connect([etcd.url.as_str()], None).await.unwrap();
    let old = view.state().lease;
    c.lease_revoke(old).await.unwrap();
    let v = view.clone();
    let after = tokio::task::spawn_blocking(move || v.fence("p", "launch 1 VM")).await.unwrap();
    let e = after.unwrap_err();
    assert!(e.contains("refused by the fence"), "{e}");
    assert!(view.state().counters.fenced >= 1);
    // It notices, takes a new lease and leads again (nobody else is there).
    let again = async || matches!(view.role("p"), Role::Leader { .. }) && view.state().lease != old;
    assert!(eventually(Duration::from_secs(10), again).await, "{:?}", view.role("p"));
    let v = view.clone();
    assert_eq!(tokio::task::spawn_blocking(move || v.fence("p", "launch 1 VM")).await.unwrap(), Ok(()));
    tokio::task::spawn_blocking(move || fleet.stop()).await.unwrap();
}

async fn admin_at(c: &TestClient, admin: &str, path: &str) -> Value {
    authed(c, format!("http://{admin}{path}")).await.json()
}

fn signal(pid: u32, sig: &str) {
    assert!(std::process::Command::new("kill").args([sig, &pid.to_string()]).status().unwrap().success());
}

/// Three `prescale run` processes: exactly one leads; SIGKILL the leader and another leads
/// within `lease_ttl` + 2 s; SIGSTOP that one past its lease and the third takes over; after
/// SIGCONT the paused one follows, without acting in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_or_paused_leader_is_replaced_within_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path());
    let ports = 30_000 + fastrand::u16(0..20_000);
    let mut procs = Vec::new();
    for id in ["x", "y", "z"] {
        let cfg = config(dir.path(), id, "f4", &etcd.url, "kp", "enabled", ports, &[]);
        let (child, _proxy, admin) = spawn_run(&cfg);
        procs.push((Some(child), admin));
    }
    let c = client();
    // Roles of the instances still running, by index.
    let roles = async |procs: &Vec<(Option<KillOnDrop>, String)>, skip: &[usize]| {
        let mut out = Vec::new();
        for (i, (_, admin)) in procs.iter().enumerate() {
            if !skip.contains(&i) {
                let p = admin_at(&c, admin, "/admin/api/pools").await;
                out.push((i, p[0]["fleet"]["role"].as_str().unwrap_or("").to_string()));
            }
        }
        out
    };
    let one_leader = |r: &[(usize, String)]| {
        let l: Vec<usize> = r.iter().filter(|(_, r)| r == "leader").map(|(i, _)| *i).collect();
        (l.len() == 1 && r.iter().all(|(_, r)| r == "leader" || r == "follower")).then(|| l[0])
    };
    let started = Instant::now();
    let first = loop {
        if let Some(l) = one_leader(&roles(&procs, &[]).await) {
            break l;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "{:?}", roles(&procs, &[]).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // SIGKILL: no goodbye, the lease runs out.
    procs[first].0.take();
    let killed = Instant::now();
    let second = loop {
        let r = roles(&procs, &[first]).await;
        assert!(r.iter().filter(|(_, r)| r == "leader").count() <= 1, "{r:?}");
        if let Some(l) = one_leader(&r) {
            break l;
        }
        assert!(killed.elapsed() < Duration::from_secs(4), "no new leader within lease_ttl + 2 s: {r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("fleet: SIGKILL failover in {:?}", killed.elapsed());
    // SIGSTOP the new leader past its lease.
    let pid = procs[second].0.as_ref().unwrap().0.id();
    signal(pid, "-STOP");
    let stopped = Instant::now();
    let third = 3 - first - second;
    loop {
        let r = roles(&procs, &[first, second]).await;
        if r == [(third, "leader".to_string())] {
            break;
        }
        assert!(stopped.elapsed() < Duration::from_secs(4), "no successor within lease_ttl + 2 s: {r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("fleet: SIGSTOP failover in {:?}", stopped.elapsed());
    tokio::time::sleep(Duration::from_secs(2)).await;
    signal(pid, "-CONT");
    let resumed = Instant::now();
    loop {
        let r = roles(&procs, &[first]).await;
        if one_leader(&r) == Some(third) {
            break;
        }
        assert!(resumed.elapsed() < Duration::from_secs(5), "the paused leader did not step down: {r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let d = admin_at(&c, &procs[second].1, "/admin/api/decisions?pool=kp").await;
    let text = d.to_string();
    assert!(text.contains("fleet: following instance"), "{d}");
    let acted = d.as_array().unwrap().iter().filter(|d| !d["action"].is_null() && d["outcome"] == "ok").count();
    assert_eq!(acted, 0, "nothing was carried out by the paused ex-leader: {d}");
    drop(procs);
    drop(etcd);
}

/// Joining or leaving a fleet takes a restart: a reload that adds `[cluster]` names it and
/// keeps the instance alone.
#[tokio::test]
async fn a_reload_that_adds_a_cluster_names_it_as_needing_a_restart() {
    let base = "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n\
                [[pool]]\nname = \"p\"\nmembers = [\"127.0.0.1:9\"]\n\
                [[endpoint]]\nname = \"api\"\npath_prefix = \"/\"\npool = \"p\"\n";
    let mut app = start(base).await;
    let with = format!("{base}[cluster]\netcd = [\"http://127.0.0.1:9\"]\n");
    let r = app.reload(prescale::config::parse(&with, Path::new(".")).unwrap());
    let keys: Vec<&str> = r.needs_restart.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(keys, ["cluster"], "{r:?}");
    let c = client();
    let f = get(&c, &admin_url(&app, "/admin/api/fleet")).await;
    assert_eq!(f.status, 404, "still alone until restarted");
    app.stop().await;
}

/// `username` + `password_file` against an etcd with authentication on: a user allowed only
/// the fleet's keys leads; a wrong password is a visible error, not a crash or a leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_authentication_with_a_password_file() {
    use prescale::allocator::live::{Coordinator, Role};
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path());
    let mut c = etcd_client::Client::connect([etcd.url.as_str()], None).await.unwrap();
    c.user_add("root", "root-pw", None).await.unwrap();
    c.user_grant_role("root", "root").await.unwrap();
    c.role_add("fleet").await.unwrap();
    c.role_grant_permission("fleet", etcd_client::Permission::read_write("/prescale/f5/").with_prefix()).await.unwrap();
    c.user_add("proxy", "proxy-pw", None).await.unwrap();
    c.user_grant_role("proxy", "fleet").await.unwrap();
    c.auth_enable().await.unwrap();
    let start = |pw: &str| {
        let file = dir.path().join(format!("pw-{pw}"));
        std::fs::write(&file, format!("{pw}\n")).unwrap();
        let settings = prescale::fleet::ClusterSettings {
            etcd: vec![etcd.url.clone()],
            name: "f5".into(),
            lease_ttl: Duration::from_secs(3),
            username: Some("proxy".into()),
            password_file: Some(file),
            ..Default::default()
        };
        bare_fleet(settings, &format!("auth-{pw}"))
    };
    let good = start("proxy-pw");
    let view = good.view();
    let leads = async || matches!(view.role("p"), Role::Leader { .. });
    assert!(eventually(Duration::from_secs(10), leads).await, "{:?}", view.state());
    let bad = start("wrong");
    let v = bad.view();
    let refused = async || v.state().error.as_deref().is_some_and(|e| e.contains("authentication failed"));
    assert!(eventually(Duration::from_secs(10), refused).await, "{:?}", v.state());
    assert!(matches!(v.role("p"), Role::Paused(_)));
    tokio::task::spawn_blocking(move || {
        bad.stop();
        good.stop();
    })
    .await
    .unwrap();
}
