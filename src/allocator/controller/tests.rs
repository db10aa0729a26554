//! The controller on virtual time against the in-memory hypervisor: fast and deterministic.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::allocator::plan::{Action, ForecastPoint};
use crate::clock::{Clock, VirtualClock};
use crate::hypervisor::fake::{FakeGuests, FakeHypervisor};
use crate::hypervisor::{Network, VmState};

/// A member: (weight, draining, requests in flight).
#[derive(Default)]
struct Members(HashMap<String, (u32, bool, u32)>);

impl Membership for Members {
    fn join(&mut self, addr: &str, weight: u32) {
        let m = self.0.entry(addr.to_string()).or_insert((weight, false, 0));
        (m.0, m.1) = (weight, false);
    }
    fn drain(&mut self, addr: &str) {
        if let Some(m) = self.0.get_mut(addr) {
            m.1 = true;
        }
    }
    fn remove(&mut self, addr: &str) {
        self.0.remove(addr);
    }
    fn set_weight(&mut self, addr: &str, weight: u32) {
        if let Some(m) = self.0.get_mut(addr) {
            m.0 = weight;
        }
    }
    fn in_flight(&self, addr: &str) -> Option<u32> {
        self.0.get(addr).map(|m| m.2)
    }
}

/// Load and forecast fixed by the test.
#[derive(Default)]
struct Load {
    measured: f64,
    /// Forecast requests/s (mean = upper band), flat.
    forecast: Option<f64>,
    /// Band width: hi80 = mean × (1 + band), hi95 = mean × (1 + 2 band).
    band: f64,
    now_s: u64,
}

impl Signals for Load {
    fn measured_rps(&self) -> f64 {
        self.measured
    }
    fn forecast(&self) -> ForecastInput {
        let Some(r) = self.forecast else { return ForecastInput::default() };
        let m0 = self.now_s / 60 * 60;
        let b = self.band;
        ForecastInput {
            points: (0..60)
                .map(|k| ForecastPoint { t: m0 + k * 60, mean: r, hi80: r * (1.0 + b), hi95: r * (1.0 + 2.0 * b) })
                .collect(),
        }
    }
}

const T0: u64 = 1_800_000_000;

struct Rig {
    clock: Arc<VirtualClock>,
    hv: FakeHypervisor,
    members: Members,
    load: Load,
    c: Controller,
    log: Vec<LoggedDecision>,
}

impl Rig {
    fn new(min_vms: u32, max_vms: u32, boot_s: f64) -> Self {
        let clock = VirtualClock::new(T0 * 1_000_000);
        let hv = FakeHypervisor::new(clock.clone(), 7).with_template("tpl", 1, 4);
        {
            let mut w = hv.world();
            (w.boot_s, w.boot_jitter) = (boot_s, 0.0);
        }
        let mut settings = ScalingSettings {
            template: "tpl".into(),
            mode: Mode::Enabled,
            network: Network::Bridge { port: 80, sources: vec![] },
            boot_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(30),
            ..ScalingSettings::default()
        };
        settings.policy.min_vms = min_vms;
        settings.policy.max_vms = max_vms;
        settings.policy.vcpus = (1, 1);
        settings.policy.launch_vcpus = 1;
        settings.policy.capacity_rps_per_vcpu = 10.0;
        settings.policy.target_utilization = 1.0;
        settings.policy.headroom = 0.0;
        let p = ManagedPool {
            name: "p".into(),
            settings,
            hypervisor: Box::new(hv.clone()),
            endpoints: vec!["api".into()],
            memory_mib_per_request: 1.0,
        };
        let c = Controller::new(p, clock.clone());
        Rig { clock, hv, members: Members::default(), load: Load::default(), c, log: Vec::new() }
    }

    fn now_s(&self) -> u64 {
        self.clock.now_us() / 1_000_000
    }

    /// One tick at the current time, then the clock moves on by `step_s`.
    fn tick(&mut self, step_s: u64) -> Vec<LoggedDecision> {
        self.load.now_s = self.now_s();
        let mut guests = FakeGuests(self.hv.clone());
        let mut env = Env { membership: &mut self.members, prober: &mut guests, signals: &self.load, fence: None };
        let out = self.c.tick(&mut env);
        self.log.extend(out.iter().cloned());
        self.clock.advance(Duration::from_secs(step_s));
        out
    }

    /// Ticks every second for `secs` seconds.
    fn run(&mut self, secs: u64) {
        for _ in 0..secs {
            self.tick(1);
        }
    }

    fn command(&mut self, cmd: Command) -> Option<LoggedDecision> {
        let mut guests = FakeGuests(self.hv.clone());
        let mut env = Env { membership: &mut self.members, prober: &mut guests, signals: &self.load, fence: None };
        self.c.command(&mut env, cmd)
    }

    fn running(&self) -> usize {
        self.hv.world().vms.values().filter(|v| v.info.state == VmState::Running).count()
    }

    fn phases(&self) -> Vec<(String, Phase)> {
        let mut v: Vec<(String, Phase)> = self.c.tracks.iter().map(|(n, t)| (n.clone(), t.phase)).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Names of the VMs the controller holds as warm spares.
    fn spares(&self) -> Vec<String> {
        self.phases().into_iter().filter(|(_, p)| *p == Phase::Suspended).map(|(n, _)| n).collect()
    }

    /// The hypervisor calls made while `secs` one-second ticks run.
    fn calls_during(&mut self, secs: u64) -> Vec<String> {
        let before = self.hv.world().calls.len();
        self.run(secs);
        self.hv.world().calls[before..].to_vec()
    }

    fn with_reason(&self, s: &str) -> Vec<&LoggedDecision> {
        self.log.iter().filter(|d| d.reason.contains(s)).collect()
    }
}

#[test]
fn a_launched_vm_joins_only_after_its_guest_answers() {
    let mut r = Rig::new(2, 4, 30.0);
    let first = r.tick(1);
    let launch = first.iter().find(|d| matches!(d.action, Some(Action::Launch { count: 2, .. }))).expect("launch");
    assert_eq!(launch.outcome, Outcome::Done);
    r.run(28);
    assert!(r.members.0.is_empty(), "nothing joins before the guests answer");
    assert_eq!(r.phases().iter().filter(|p| p.1 == Phase::Booting).count(), 2);
    r.run(3);
    assert_eq!(r.members.0.len(), 2, "both joined once healthy");
    assert!(r.phases().iter().all(|p| p.1 == Phase::Serving));
    assert_eq!(r.c.launches, vec![30.0, 30.0], "start → healthy, on the virtual clock");
    assert_eq!(r.with_reason("joined the upstream pool").len(), 2);
    // Nothing else happens on a steady pool at its minimum.
    let before = r.hv.world().calls.len();
    r.run(60);
    assert_eq!(r.hv.world().calls.len(), before);
}

#[test]
fn a_vm_that_never_boots_is_deleted_and_two_in_a_row_pause_launches() {
    let mut r = Rig::new(1, 4, 1000.0);
    r.run(62);
    let timed_out = r.with_reason("did not become healthy within 60 s");
    assert_eq!(timed_out.len(), 1, "{:?}", r.log);
    assert!(r.hv.world().calls.contains(&"delete p-1".to_string()));
    r.run(62);
    assert!(!r.with_reason("launches paused for 60 s").is_empty(), "{:?}", r.log);
    assert!(r.c.degraded().is_some_and(|d| d.contains("launches paused")), "{:?}", r.c.degraded());
    let launches = |r: &Rig| r.hv.world().calls.iter().filter(|c| c.starts_with("start")).count();
    let during = launches(&r);
    r.run(30);
    assert_eq!(launches(&r), during, "no launch while paused");
    assert_eq!(r.log.iter().filter(|d| d.outcome == Outcome::LaunchesPaused).count(), 1, "logged once");
    r.run(40);
    assert_eq!(launches(&r), during + 1, "launches resume after the pause");
}

#[test]
fn a_drained_vm_is_stopped_only_when_nothing_is_in_flight() {
    let mut r = Rig::new(1, 4, 5.0);
    r.c.p.settings.policy.min_vms = 2;
    r.run(8);
    assert_eq!(r.members.0.len(), 2);
    r.c.p.settings.policy.min_vms = 1;
    for m in r.members.0.values_mut() {
        m.2 = 3;
    }
    let d = r.command(Command::Scale { pool: "p".into(), delta: -1 }).unwrap();
    let Some(Action::Drain { vm }) = d.action.clone() else { panic!("{d:?}") };
    assert_eq!(d.outcome, Outcome::Done);
    assert_eq!(r.phases().iter().find(|p| p.0 == vm).unwrap().1, Phase::Draining);
    r.run(10);
    assert_eq!(r.running(), 2, "requests in flight: not stopped");
    let addr = r.c.tracks[&vm].addr.clone().unwrap();
    r.members.0.get_mut(&addr).unwrap().2 = 0;
    r.run(2);
    assert_eq!(r.running(), 1, "drained, then stopped");
    assert!(!r.members.0.contains_key(&addr), "out of the pool before the stop");
    assert!(r.log.iter().any(|d| d.action == Some(Action::Stop { vm: vm.clone() })));
}

#[test]
fn a_drain_that_never_empties_ends_at_drain_timeout() {
    let mut r = Rig::new(2, 4, 5.0);
    r.run(8);
    r.c.p.settings.policy.min_vms = 1;
    for m in r.members.0.values_mut() {
        m.2 = 1;
    }
    r.command(Command::Scale { pool: "p".into(), delta: -1 }).unwrap();
    r.run(29);
    assert_eq!(r.running(), 2);
    r.run(3);
    assert_eq!(r.running(), 1, "stopped after the 30-s drain timeout");
}

#[test]
fn a_restarted_controller_adopts_running_vms_and_launches_nothing() {
    let mut r = Rig::new(2, 4, 5.0);
    {
        let mut w = r.hv.world();
        w.add_running("p-1", "p", 1, 4, "10.9.0.1:80");
        w.add_running("p-2", "p", 1, 4, "10.9.0.2:80");
    }
    r.members.join("10.9.0.1:80", 1);
    r.run(3);
    // One was a member (serving); the other runs and answers: it joins after its check.
    assert_eq!(r.phases(), vec![("p-1".into(), Phase::Serving), ("p-2".into(), Phase::Serving)]);
    assert_eq!(r.members.0.len(), 2);
    assert!(!r.hv.world().calls.iter().any(|c| c.starts_with("clone") || c.starts_with("start")));
}

#[test]
fn a_vm_destroyed_behind_our_back_is_logged_and_replaced_on_the_same_tick() {
    let mut r = Rig::new(2, 4, 5.0);
    r.run(8);
    let addr = r.c.tracks["p-1"].addr.clone().unwrap();
    r.hv.world().vms.remove("p-1");
    let out = r.tick(1);
    assert!(out.iter().any(|d| d.reason.contains("p-1 disappeared")), "{out:?}");
    assert!(!r.members.0.contains_key(&addr), "out of the pool");
    assert!(
        out.iter().any(|d| matches!(d.action, Some(Action::Launch { count: 1, .. })) && d.outcome == Outcome::Done)
    );
    // Shut off behind our back: the same.
    r.run(8);
    let other = r.phases().into_iter().find(|p| p.1 == Phase::Serving).unwrap().0;
    r.hv.world().vms.get_mut(&other).unwrap().info.state = VmState::Shutoff;
    let out = r.tick(1);
    assert!(out.iter().any(|d| d.reason.contains(&format!("{other} was shut off outside prescale"))), "{out:?}");
    assert!(out.iter().any(|d| matches!(d.action, Some(Action::Launch { .. })) && d.outcome == Outcome::Done));
}

#[test]
fn a_hypervisor_down_degrades_the_pool_and_its_return_is_used_at_once_without_duplicates() {
    let mut r = Rig::new(2, 4, 5.0);
    r.run(8);
    r.hv.world().down = true;
    // Longer than the 30-s refresh of the hosts' capacity: they are read while down.
    r.run(45);
    assert!(r.c.degraded().is_some_and(|d| d.contains("down")), "{:?}", r.c.degraded());
    let calls = r.hv.world().calls.len();
    r.hv.world().down = false;
    let out = r.tick(1);
    assert!(out.iter().any(|d| d.reason.contains("hypervisor reachable again")), "{out:?}");
    // Regression (issue 16): the pool stayed "degraded: host down" until the next 30-s refresh
    // of the hosts (18–20 s after libvirtd came back on real guests).
    assert_eq!(r.c.degraded(), None, "degraded clears on the tick the hypervisor answers again");
    r.run(10);
    assert_eq!(r.hv.world().vms.len(), 2, "no duplicates");
    assert_eq!(r.hv.world().calls.len(), calls, "nothing launched for VMs that were there all along");
}

#[test]
fn a_failing_launch_backs_off_exponentially_and_logs_one_decision_per_attempt() {
    let mut r = Rig::new(1, 4, 5.0);
    r.hv.world().failing_clones = 3;
    r.run(20);
    let attempts: Vec<(u64, &Outcome)> = r
        .log
        .iter()
        .filter(|d| matches!(d.action, Some(Action::Launch { .. })))
        .map(|d| (d.t - T0, &d.outcome))
        .collect();
    let times: Vec<u64> = attempts.iter().map(|a| a.0).collect();
    assert_eq!(times, vec![0, 2, 6, 14], "2, 4, 8 s apart: {attempts:?}");
    assert!(attempts[..3].iter().all(|a| matches!(a.1, Outcome::Failed(e) if e.contains("Device or resource busy"))));
    assert_eq!(attempts[3].1, &Outcome::Done);
    assert_eq!(r.c.degraded(), None, "a success ends the back-off");
    // While it backs off, the pool says so.
    let mut r = Rig::new(1, 4, 5.0);
    r.hv.world().failing_clones = 10;
    r.run(7);
    let d = r.c.degraded().unwrap();
    assert!(d.contains("launch failed 3 times in a row") && d.contains("next attempt in"), "{d}");
}

#[test]
fn bounds_and_cooldown_hold() {
    let mut r = Rig::new(1, 3, 5.0);
    r.c.p.settings.policy.cooldown_s = 60;
    r.c.p.settings.policy.lead_time_s = 0;
    r.c.p.settings.lead_time = LeadTime::Fixed(0);
    r.run(8);
    // 25 rps needs 3 VMs of 10 rps; the forecast wants 100 rps: capped at max_vms = 3.
    r.load.forecast = Some(25.0);
    r.run(10);
    assert_eq!(r.running(), 1, "the cooldown after the first launch holds a forecast scale-out");
    assert!(!r.with_reason("in cooldown").is_empty());
    r.run(60);
    assert_eq!(r.running(), 3);
    r.load.forecast = Some(100.0);
    r.run(120);
    assert_eq!(r.running(), 3, "never above max_vms");
    assert!(!r.with_reason("max_vms").is_empty());
    // Back to quiet: scale in waits for the stabilisation window, never below min_vms.
    r.load.forecast = Some(1.0);
    r.run(3600);
    assert_eq!(r.c.tracks.values().filter(|t| t.phase == Phase::Serving).count(), 1);
    let drains: Vec<u64> =
        r.log.iter().filter(|d| matches!(d.action, Some(Action::Drain { .. }))).map(|d| d.t).collect();
    assert_eq!(drains.len(), 2);
    assert!(drains[1] - drains[0] >= 60, "cooldown between scale-ins: {drains:?}");
}

#[test]
fn a_reload_changes_bounds_and_mode_live() {
    let mut r = Rig::new(1, 4, 5.0);
    r.run(8);
    let mut s = r.c.settings().clone();
    s.policy.min_vms = 3;
    s.uris = vec!["qemu:///elsewhere".into()];
    let d = r.command(Command::Reconfigure { pool: "p".into(), settings: Box::new(s.clone()) }).unwrap();
    assert!(d.reason.contains("policy"), "{d:?}");
    assert!(r.c.settings().uris.is_empty(), "the hosts are not changed live");
    r.run(8);
    assert_eq!(r.members.0.len(), 3, "the new minimum is in force");
    s.mode = Mode::DryRun;
    r.command(Command::Reconfigure { pool: "p".into(), settings: Box::new(s.clone()) }).unwrap();
    assert_eq!(r.c.settings().mode, Mode::DryRun);
    assert!(r.command(Command::Reconfigure { pool: "p".into(), settings: Box::new(s) }).is_none(), "no change");
}

/// Issue 18, lever 6: scale-down without unplug. A VM long on CPU is capped (libvirt's per-vCPU
/// quota) within the tick, billed for what the cap allows, its weight follows and its balloon
/// gives back the memory of the vCPUs it may no longer use; when the load comes back the cap is
/// lifted and the memory returned at once — no hot-plug, no boot.
#[test]
fn a_vm_long_on_cpu_is_capped_in_seconds_and_the_cap_lifted_when_the_load_returns() {
    let mut r = Rig::new(1, 1, 5.0);
    r.c.p.settings.policy.vcpus = (1, 4);
    r.c.p.settings.policy.launch_vcpus = 4;
    r.load.forecast = Some(35.0); // 3.5 vCPUs' worth at 10 requests/s each
    r.run(90); // min_vms boots one VM of 1 vCPU, hot-plugged to 4 after the cooldown
    assert_eq!(
        r.hv.world().paid(),
        (4, 1),
        "{:#?}",
        r.log.iter().map(|d| (&d.action, &d.reason, &d.outcome)).collect::<Vec<_>>()
    );
    let name = r.hv.world().vms.keys().next().unwrap().clone();
    let addr = r.hv.world().vms[&name].info.addr.clone().unwrap();
    // The load falls to one vCPU's worth: after the cooldown that followed the launch, a cap.
    r.load.forecast = Some(8.0);
    r.run(90);
    let caps: Vec<String> = r.hv.world().calls.iter().filter(|c| c.starts_with("set_cpu_cap")).cloned().collect();
    assert_eq!(caps, [format!("set_cpu_cap {name} Some(25)")], "{:?}", r.log);
    assert_eq!(r.hv.world().paid(), (1, 1), "billed for the cap");
    assert_eq!(r.members.0[&addr].0, 1, "the weight follows the cap");
    assert_eq!(r.running(), 1, "nothing stopped or drained");
    // The balloon follows the cap: the policy's memory for 1 vCPU (256 of 256–512 MiB).
    assert_eq!(r.hv.world().vms[&name].info.memory_mib, 256, "{:?}", r.hv.world().calls);
    let shrink = r.log.iter().find(|d| matches!(d.action, Some(Action::SetMemory { .. }))).unwrap();
    assert!(shrink.reason.contains("balloon down to 256 MiB"), "{}", shrink.reason);
    // It comes back: lifted in the next tick, memory with it.
    r.load.forecast = Some(35.0);
    let calls: Vec<String> = r.calls_during(1).into_iter().filter(|c| c.starts_with("set_")).collect();
    assert_eq!(calls, [format!("set_cpu_cap {name} None"), format!("set_memory {name} 512")]);
    assert_eq!(r.hv.world().vms[&name].info.memory_mib, 512);
    assert_eq!(r.hv.world().paid(), (4, 1));
    assert_eq!(r.members.0[&addr].0, 4);
    let lifted = r.log.iter().rev().find(|d| matches!(d.action, Some(Action::SetCap { .. }))).unwrap();
    assert!(lifted.reason.contains("lift the CPU cap by 3 vCPU(s)"), "{}", lifted.reason);
}

/// Issue 18, lever 3: warm spares. A VM drained while the forecast is uncertain is suspended
/// (memory held, no CPU billed) instead of stopped; a burst nobody forecast resumes it first —
/// before any hot-plug or boot — and it serves again a tick later.
#[test]
fn a_drained_vm_becomes_a_warm_spare_and_a_burst_resumes_it() {
    let mut r = Rig::new(1, 4, 5.0);
    r.load.forecast = Some(25.0);
    r.run(200);
    assert_eq!(r.running(), 3, "{:?}", r.phases());
    // Quiet but uncertain: two VMs cover the planned quantile, the 99.9 % one could need four.
    (r.load.forecast, r.load.band) = (Some(5.0), 1.0);
    r.run(800);
    let spares = r.spares();
    assert_eq!(spares.len(), 1, "{:?}\n{:?}", r.phases(), r.log.iter().map(|d| &d.reason).collect::<Vec<_>>());
    let spare = &spares[0];
    assert!(r.with_reason("kept as a warm spare").len() == 1);
    assert_eq!(r.hv.world().vms[spare].info.state, VmState::Paused);
    assert_eq!(r.hv.world().paid(), (2, 3), "a spare holds memory (a VM), not vCPUs");
    assert!(!r.hv.world().calls.iter().any(|c| c.starts_with("stop")), "nothing stopped");
    // Its balloon was shrunk under a CPU cap before it was suspended (as on real guests).
    r.hv.world().vms.get_mut(spare).unwrap().info.memory_mib = 256;
    // A burst: resumed at once, serving again within two ticks, no clone, no start.
    r.load.measured = 28.0;
    let calls = r.calls_during(2);
    assert!(calls.contains(&format!("resume {spare}")), "{calls:?}");
    assert!(calls.contains(&format!("set_memory {spare} 512")), "its memory comes back: {calls:?}");
    assert_eq!(r.hv.world().vms[spare].info.memory_mib, 512);
    assert!(!calls.iter().any(|c| c.starts_with("clone") || c.starts_with("start")), "{calls:?}");
    assert_eq!(r.c.tracks[spare].phase, Phase::Serving, "{:?}", r.phases());
    let d = r.log.iter().rev().find(|d| matches!(d.action, Some(Action::Resume { .. }))).unwrap();
    assert!(d.reactive && d.reason.contains("resume warm spare"), "{}", d.reason);
}

/// Issue 18, lever 5: scale to zero. With `min_vms = 0` an idle pool ends with no VM running and
/// one warm spare (no vCPUs billed); the first request — held by the proxy, which the live
/// signals count as load — resumes the spare, which serves a tick later. No boot, no clone.
#[test]
fn an_idle_pool_scales_to_zero_keeping_one_spare_and_the_first_request_resumes_it() {
    let mut r = Rig::new(0, 4, 5.0);
    r.load.forecast = Some(15.0);
    r.run(200);
    assert_eq!(r.running(), 2, "{:?}", r.phases());
    r.load.forecast = Some(0.0);
    r.run(2000);
    assert_eq!(r.running(), 0, "{:?}", r.phases());
    assert_eq!(r.hv.world().paid().0, 0, "no vCPU billed");
    let spares = r.spares();
    assert_eq!(spares.len(), 1, "{:?}", r.phases());
    // One request held (the proxy counts it as load): the spare resumes and serves.
    r.load.measured = 1.0;
    let calls = r.calls_during(2);
    assert!(calls.contains(&format!("resume {}", spares[0])), "{calls:?}");
    assert!(!calls.iter().any(|c| c.starts_with("clone") || c.starts_with("start")), "{calls:?}");
    assert_eq!(r.c.tracks[&spares[0]].phase, Phase::Serving);
}

/// Where the hypervisor has no CPU caps (libvirt's `test:///` driver refuses `vcpu_quota`), the
/// first refusal turns them off for the pool, visibly, and scale-in falls back to draining: no
/// cap retried every tick.
#[test]
fn a_hypervisor_without_caps_turns_them_off_after_one_refusal() {
    let mut r = Rig::new(1, 1, 5.0);
    r.hv.world().no_caps = true;
    r.c.p.settings.policy.vcpus = (1, 4);
    r.c.p.settings.policy.launch_vcpus = 4;
    r.load.forecast = Some(35.0);
    r.run(90);
    r.load.forecast = Some(8.0);
    r.run(600);
    let caps = r.hv.world().calls.iter().filter(|c| c.starts_with("set_cpu_cap")).count();
    assert_eq!(caps, 1, "one attempt, then off");
    let st = r.c.status();
    assert!(st.caps_refused.as_deref().is_some_and(|e| e.contains("vcpu_period")), "{:?}", st.caps_refused);
    assert!(!r.c.policy().cpu_caps);
}

/// Regression (found by the fleet test with warm spares): a VM the fleet's leader suspended
/// stayed "draining" on a follower, in its pool, and a follower that then led cloned a new VM
/// beside it instead of counting it as a spare. The hypervisor's "paused" now wins.
#[test]
fn a_vm_suspended_elsewhere_leaves_the_pool_and_is_a_spare() {
    let mut r = Rig::new(1, 4, 5.0);
    r.load.forecast = Some(15.0);
    r.run(120);
    assert_eq!(r.running(), 2, "{:?}", r.phases());
    let name = r.hv.world().vms.keys().last().unwrap().clone();
    let addr = r.hv.world().vms[&name].info.addr.clone().unwrap();
    r.load.forecast = Some(5.0); // one VM's worth: the suspended one is not needed back at once
    r.hv.clone().suspend(&name).unwrap();
    r.tick(1);
    assert_eq!(r.c.tracks[&name].phase, Phase::Suspended);
    assert!(!r.members.0.contains_key(&addr), "out of the pool");
    assert!(r.with_reason("is suspended (it was serving)").len() == 1);
    // Needed again: it is resumed, not cloned beside.
    r.load.forecast = Some(15.0);
    r.load.measured = 15.0;
    let calls = r.calls_during(3);
    assert!(calls.contains(&format!("resume {name}")), "{calls:?}");
    assert!(!calls.iter().any(|c| c.starts_with("clone")), "{calls:?}");
}
