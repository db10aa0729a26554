//! The shipped `proxy.toml` is the documentation: it must always load.

#[test]
fn shipped_proxy_toml_loads_and_shows_every_section() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("proxy.toml");
    let s = prescale::config::load(&path).unwrap_or_else(|e| panic!("proxy.toml is invalid:\n{e}"));
    assert_eq!(s.listen.addr.to_string(), "127.0.0.1:8080");
    assert_eq!(s.admin.addr.to_string(), "127.0.0.1:9901");
    assert_eq!(s.endpoints.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["orders", "search"]);
    let orders = &s.pools[0];
    assert_eq!(orders.members[1].weight, 2);
    assert!(orders.health_check.is_some());
    assert_eq!(orders.passive.max_failures, 3);
    let h = s.historian.as_ref().expect("historian on by default");
    assert_eq!(h.store.tiers, prescale::historian::store::default_tiers());
    assert_eq!(h.store.recent_calls, 100_000);
    // Every key the parser knows appears in the file (commented or not), so the example
    // cannot fall behind the parser.
    let text = std::fs::read_to_string(&path).unwrap();
    for key in [
        "addr",
        "tls",
        "header_timeout",
        "idle_timeout",
        "max_header_bytes",
        "max_body_bytes",
        "max_connections",
        "shutdown_grace",
        "access_log",
        "token_file",
        "connect_timeout",
        "response_timeout",
        "pool_idle_timeout",
        "max_idle_per_member",
        "name",
        "path_prefix",
        "pool",
        "methods",
        "host",
        "members",
        "weight",
        "balance",
        "retry",
        "path",
        "interval",
        "timeout",
        "rise",
        "fall",
        "max_failures",
        "eject_for",
        "workers",
        "enabled",
        "data_dir",
        "recent_calls",
        "channel_capacity",
        "params_max_len",
        "redact",
        "trusted_hops",
        "close_after",
        "tiers",
        "hypervisor",
        "uri",
        "uris",
        "template",
        "mode",
        "min_vms",
        "max_vms",
        "vcpus",
        "memory_mib",
        "capacity_rps_per_vcpu",
        "target_utilization",
        "headroom",
        "lead_time",
        "window",
        "cooldown",
        "scale_in_stabilization",
        "max_step",
        "ports",
        "health_path",
        "drain_timeout",
        "headroom_bounds",
        "launch_vcpus",
        "stats_interval",
        "boot_timeout",
        "auto_enable",
        "auto_enable_after",
        "class_param",
        "select_every",
        "cpu_ms_per_request",
        "memory_mib_per_request",
        "step",
        "keep",
        "persist",
        "horizon",
        "refit_every",
        "history",
    ] {
        assert!(text.contains(&format!("{key} =")), "proxy.toml does not document `{key}`");
    }
}
