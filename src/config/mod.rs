//! `proxy.toml`: parsing and validation.
//!
//! Two steps, as in most production proxies: `raw` mirrors the file with serde, then
//! `validate` turns it into [`Settings`] and collects *every* problem, each with its key path
//! (`pool[1].members[0]`) and, where the file has it, its line. Unknown keys are errors, all of
//! them reported in one run. This module reads files but binds no sockets.

mod raw;
mod settings;
mod validate;
pub use validate::name_problem;

use std::fmt;
use std::path::Path;

pub use settings::*;

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Key path such as `pool[1].members[0]`; empty for file-level errors.
    pub path: String,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in one configuration, in file order where lines are known.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors {
    /// The file the errors refer to (for messages), if it came from a file.
    pub source_name: String,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}: {e}", self.source_name)?;
        }
        Ok(())
    }
}

/// Reads and validates a configuration file. Relative paths inside it (TLS files, token file,
/// access log) are resolved against the file's directory.
pub fn load(path: &Path) -> Result<Settings, ConfigErrors> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        source_name: name.clone(),
        errors: vec![ConfigError { path: String::new(), line: None, message: format!("cannot read: {e}") }],
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base).map_err(|errors| ConfigErrors { source_name: name, errors })
}

/// Parses and validates configuration text; `base` resolves relative file paths.
pub fn parse(text: &str, base: &Path) -> Result<Settings, Vec<ConfigError>> {
    let lines = LineIndex::new(text);
    let doc = match toml_edit::ImDocument::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let line = e.span().map(|s| lines.line_of(s.start));
            let message = e.message().trim().to_string();
            return Err(vec![ConfigError { path: String::new(), line, message }]);
        }
    };
    let locate = |path: &[Seg]| -> Option<usize> { span_of(doc.as_item(), path).map(|s| lines.line_of(s)) };

    let mut errors = Vec::new();
    let mut unknown = Vec::new();
    // serde stops at the first type error. To report them all in one run, each offending value
    // is removed from a copy of the document and the rest read again (at most MAX_TYPE_ERRORS
    // rounds); validation then runs on what is left, quiet about the keys already reported.
    const MAX_TYPE_ERRORS: usize = 50;
    let mut current = text.to_string();
    let mut typed: Vec<Vec<Seg>> = Vec::new();
    let raw: Option<raw::RawConfig> = loop {
        unknown.clear();
        let de = toml::Deserializer::new(&current);
        match serde_ignored::deserialize(de, |p| unknown.push(ignored_path(&p))) {
            Ok(raw) => break Some(raw),
            Err(e) => {
                let here = toml_edit::ImDocument::parse(current.as_str()).ok();
                let path = e.span().zip(here.as_ref()).and_then(|(s, d)| path_at(d.as_item(), s.start));
                let message = e.message().trim().replace("expected i64", "expected an integer");
                let line = match &path {
                    Some(p) => locate(p),
                    None => e.span().map(|s| lines.line_of(s.start)),
                };
                errors.push(ConfigError { path: path.as_deref().map(display_path).unwrap_or_default(), line, message });
                // Without a key path the value cannot be taken out: stop at this one.
                let Some(mut path) = path.filter(|p| !p.is_empty()) else { break None };
                // Inside an array of values the whole array goes: removing one element would
                // renumber the others in later messages.
                while matches!(path.last(), Some(Seg::Index(_))) {
                    path.pop();
                }
                let Ok(mut doc) = current.parse::<toml_edit::DocumentMut>() else { break None };
                if typed.len() >= MAX_TYPE_ERRORS || !remove_at(doc.as_item_mut(), &path) {
                    break None;
                }
                typed.push(path);
                current = doc.to_string();
            }
        }
    };
    for path in unknown {
        errors.push(ConfigError {
            line: locate(&path),
            path: display_path(&path),
            message: unknown_key_message(&path),
        });
    }
    if let Some(raw) = raw {
        match validate::validate(raw, base) {
            Ok(settings) if errors.is_empty() => return Ok(settings),
            Ok(_) => {}
            Err(errs) => errors.extend(
                errs.into_iter()
                    // A key whose value had the wrong type was taken out: validation's view of
                    // it (missing, defaulted) is not news.
                    .filter(|e| {
                        let p = parse_path(&e.path);
                        !typed.iter().any(|t| p.starts_with(t) || t.starts_with(&p) && !p.is_empty())
                    })
                    .map(|mut e| {
                        if e.line.is_none() {
                            e.line = locate(&parse_path(&e.path));
                        }
                        e
                    }),
            ),
        }
    }
    errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
    Err(errors)
}

/// "unknown key", with the known key it most resembles when there is one.
fn unknown_key_message(path: &[Seg]) -> String {
    let keys: Vec<&str> = path
        .iter()
        .filter_map(|s| match s {
            Seg::Key(k) => Some(k.as_str()),
            Seg::Index(_) => None,
        })
        .collect();
    let hint = keys
        .split_last()
        .and_then(|(key, table)| Some((key, raw::known_keys(table)?)))
        .and_then(|(key, known)| raw::closest(key, known));
    match hint {
        Some(k) => format!("unknown key (did you mean `{k}`?)"),
        None => "unknown key".into(),
    }
}

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

fn display_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Inverse of [`display_path`] for the paths validation writes (keys never contain `.`/`[`).
fn parse_path(s: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in s.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            out.push(Seg::Key(rest[..open].to_string()));
            rest = &rest[open..];
            while let Some(close) = rest.find(']') {
                if let Ok(i) = rest[1..close].parse() {
                    out.push(Seg::Index(i));
                }
                rest = &rest[close + 1..];
            }
        } else {
            out.push(Seg::Key(rest.to_string()));
        }
    }
    out
}

fn ignored_path(p: &serde_ignored::Path<'_>) -> Vec<Seg> {
    use serde_ignored::Path as P;
    let mut out = match p {
        P::Root => return Vec::new(),
        P::Seq { parent, .. }
        | P::Map { parent, .. }
        | P::Some { parent }
        | P::NewtypeStruct { parent }
        | P::NewtypeVariant { parent } => ignored_path(parent),
    };
    match p {
        P::Seq { index, .. } => out.push(Seg::Index(*index)),
        P::Map { key, .. } => out.push(Seg::Key(key.clone())),
        _ => {}
    }
    out
}

/// Removes the value at `path` from a document; false when there is none.
fn remove_at(root: &mut toml_edit::Item, path: &[Seg]) -> bool {
    let Some((last, parents)) = path.split_last() else { return false };
    let mut item = root;
    for seg in parents {
        let next = match seg {
            Seg::Key(k) => item.get_mut(k.as_str()),
            Seg::Index(i) => item.get_mut(*i),
        };
        match next {
            Some(n) => item = n,
            None => return false,
        }
    }
    match (last, item) {
        (Seg::Key(k), toml_edit::Item::Table(t)) => t.remove(k).is_some(),
        (Seg::Key(k), toml_edit::Item::Value(toml_edit::Value::InlineTable(t))) => t.remove(k).is_some(),
        (Seg::Index(i), toml_edit::Item::Value(toml_edit::Value::Array(a))) if *i < a.len() => {
            a.remove(*i);
            true
        }
        (Seg::Index(i), toml_edit::Item::ArrayOfTables(a)) if *i < a.len() => {
            a.remove(*i);
            true
        }
        _ => false,
    }
}

/// Byte offset where the deepest existing prefix of `path` is written.
fn span_of(root: &toml_edit::Item, path: &[Seg]) -> Option<usize> {
    let mut item = root;
    let mut best = None;
    for seg in path {
        let next = match seg {
            Seg::Key(k) => item.get(k.as_str()),
            Seg::Index(i) => item.get(*i),
        };
        match next {
            Some(n) => {
                item = n;
                if let Some(span) = item_span(n) {
                    best = Some(span);
                }
            }
            None => break,
        }
    }
    best
}

/// Key path of the innermost value written at byte `offset`.
fn path_at(item: &toml_edit::Item, offset: usize) -> Option<Vec<Seg>> {
    fn inside(span: Option<std::ops::Range<usize>>, offset: usize) -> bool {
        span.is_some_and(|s| s.contains(&offset))
    }
    fn walk_value(v: &toml_edit::Value, offset: usize, path: &mut Vec<Seg>) {
        match v {
            toml_edit::Value::Array(a) => {
                if let Some((i, v)) = a.iter().enumerate().find(|(_, v)| inside(v.span(), offset)) {
                    path.push(Seg::Index(i));
                    walk_value(v, offset, path);
                }
            }
            toml_edit::Value::InlineTable(t) => {
                if let Some((k, v)) = t.iter().find(|(_, v)| inside(v.span(), offset)) {
                    path.push(Seg::Key(k.to_string()));
                    walk_value(v, offset, path);
                }
            }
            _ => {}
        }
    }
    fn walk(item: &toml_edit::Item, offset: usize, path: &mut Vec<Seg>) -> bool {
        match item {
            toml_edit::Item::Value(v) => {
                if inside(v.span(), offset) {
                    walk_value(v, offset, path);
                    return true;
                }
                false
            }
            toml_edit::Item::Table(t) => t.iter().any(|(k, child)| {
                path.push(Seg::Key(k.to_string()));
                let found = walk(child, offset, path);
                if !found {
                    path.pop();
                }
                found
            }),
            toml_edit::Item::ArrayOfTables(a) => a.iter().enumerate().any(|(i, t)| {
                path.push(Seg::Index(i));
                let found = t.iter().any(|(k, child)| {
                    path.push(Seg::Key(k.to_string()));
                    let found = walk(child, offset, path);
                    if !found {
                        path.pop();
                    }
                    found
                });
                if !found {
                    path.pop();
                }
                found
            }),
            toml_edit::Item::None => false,
        }
    }
    let mut path = Vec::new();
    walk(item, offset, &mut path).then_some(path)
}

fn item_span(item: &toml_edit::Item) -> Option<usize> {
    match item {
        toml_edit::Item::Value(v) => v.span().map(|s| s.start),
        toml_edit::Item::Table(t) => t.span().map(|s| s.start),
        toml_edit::Item::ArrayOfTables(a) => a.span().map(|s| s.start),
        toml_edit::Item::None => None,
    }
}

/// Byte offset → 1-based line.
struct LineIndex(Vec<usize>);

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self(starts)
    }
    fn line_of(&self, offset: usize) -> usize {
        match self.0.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        parse(text, Path::new(".")).err().unwrap_or_default().iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn minimal_config_from_the_issue_parses() {
        let s = parse(
            r#"
[listen]
addr = "127.0.0.1:8080"
[admin]
addr = "127.0.0.1:9901"
[[endpoint]]
name = "orders"
path_prefix = "/api/orders"
pool = "orders"
[[pool]]
name = "orders"
members = ["127.0.0.1:9001", "127.0.0.1:9002"]
"#,
            Path::new("."),
        )
        .unwrap();
        assert_eq!(s.endpoints[0].name, "orders");
        assert_eq!(s.pools[0].members.len(), 2);
        assert_eq!(s.pools[0].members[1].addr.as_str(), "127.0.0.1:9002");
        assert_eq!(s.pools[0].balance, Balance::P2c);
        assert_eq!(s.listen.header_timeout, DEFAULT_HEADER_TIMEOUT);
    }

    #[test]
    fn every_problem_is_reported_with_path_and_line() {
        let errs = errors(
            r#"[listen]
addr = "127.0.0.1:8080"
idle_timeout = "forever"

[[endpoint]]
name = "a"
path_prefix = "api"
pool = "nope"

[[pool]]
name = "p"
members = ["127.0.0.1:1"]

[[pool]]
name = "q"
members = ["127.0.0.1:1", "10.0.0.1"]
"#,
        );
        assert_eq!(
            errs,
            vec![
                "line 3: listen.idle_timeout: \"forever\" is not a duration (use e.g. \"500ms\", \"10s\", \"5m\", \"1h\")",
                "line 7: endpoint[0].path_prefix: \"api\" must start with '/'",
                "line 8: endpoint[0].pool: no pool named \"nope\"",
                "line 16: pool[1].members[1]: \"10.0.0.1\" is not host:port",
            ]
        );
    }

    #[test]
    fn all_unknown_keys_are_errors() {
        let errs = errors("[listen]\nadr = \"x\"\n[admin]\ntoken = \"t\"\n");
        assert_eq!(
            errs,
            vec!["line 2: listen.adr: unknown key (did you mean `addr`?)", "line 4: admin.token: unknown key"]
        );
    }

    #[test]
    fn scaling_keys_are_checked() {
        let ok = "[[pool]]\nname = \"p\"\n[pool.scaling]\nuri = \"test:///default\"\ntemplate = \"t\"\nmode = \"enabled\"\nvcpus = [1, 4]\nlead_time = \"90s\"\n";
        let s = parse(ok, Path::new(".")).unwrap();
        let sc = s.scaling("p").unwrap();
        assert_eq!(sc.policy.vcpus, (1, 4));
        assert_eq!(sc.lead_time, crate::allocator::LeadTime::Fixed(90));
        assert_eq!(sc.mode, crate::allocator::Mode::Enabled);
        let errs = errors(
            "[[pool]]\nname = \"p\"\n[pool.scaling]\nhypervisor = \"xen\"\ntemplate = \"t\"\nmin_vms = 5\nmax_vms = 2\nvcpus = [4, 1]\ntarget_utilization = 1.5\nlead_time = \"soon\"\nmode = \"on\"\n",
        );
        assert_eq!(
            errs,
            vec![
                "line 3: pool[0].scaling.uri: missing (a libvirt URI such as \"qemu:///system\", or uris = [...])",
                "line 4: pool[0].scaling.hypervisor: \"xen\" is not supported (use \"libvirt\")",
                "line 6: pool[0].scaling.min_vms: 5 is above max_vms 2",
                "line 8: pool[0].scaling.vcpus: [4, 1] is not [min, max] with 1 <= min <= max <= 1024",
                "line 9: pool[0].scaling.target_utilization: 1.5 is out of range (0 < x <= 1)",
                "line 10: pool[0].scaling.lead_time: \"soon\" is neither \"auto\" nor a duration like \"90s\"",
                "line 11: pool[0].scaling.mode: \"on\" is not one of \"dry_run\", \"enabled\"",
            ]
        );
    }

    #[test]
    fn the_prices_set_the_planned_quantile_and_bad_ones_are_named() {
        let base = "[[pool]]\nname = \"p\"\n[pool.scaling]\nuri = \"test:///default\"\ntemplate = \"t\"\n";
        let s = parse(base, Path::new(".")).unwrap();
        let default = s.scaling("p").unwrap().policy.quantile;
        let s = parse(&format!("{base}violation_minute_price = 2.0\nvcpu_hour_price = 0.5\n"), Path::new(".")).unwrap();
        let dear = s.scaling("p").unwrap().policy.quantile;
        assert!(dear > default, "{dear} > {default}");
        assert_eq!(dear, crate::allocator::plan::plan_quantile(2.0, 0.5));
        assert_eq!(
            errors(&format!("{base}violation_minute_price = -1.0\nvcpu_hour_price = 0.0\n")),
            vec![
                "line 6: pool[0].scaling.violation_minute_price: -1 is not a finite price, 0 or more",
                "line 7: pool[0].scaling.vcpu_hour_price: 0 is not a finite price above 0",
            ]
        );
    }

    #[test]
    fn known_events_are_checked_by_key() {
        let base = "[[pool]]\nname = \"p\"\n[pool.scaling]\nuri = \"test:///default\"\ntemplate = \"t\"\n";
        let ok = format!(
            "{base}[[pool.schedule]]\nreason = \"sale\"\nfrom = \"2026-11-27T08:00:00Z\"\nto = \"2026-11-27T20:00:00Z\"\n\
             min_capacity_rps = 40.0\n[[pool.schedule]]\nreason = \"monday batch\"\n\
             weekly = {{ days = [\"mon\"], from = \"06:00\", to = \"07:30\" }}\nforecast_multiplier = 1.5\n"
        );
        let s = parse(&ok, Path::new(".")).unwrap();
        let ev = &s.scaling["p"].policy.schedule;
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].min_capacity_rps, Some(40.0));
        assert_eq!(
            ev[1].when,
            crate::allocator::schedule::When::Weekly { days: 1, from_s: 6 * 3600, to_s: 7 * 3600 + 1800 }
        );
        let errs = errors(&format!(
            "{base}[[pool.schedule]]\nfrom = \"2026-11-27T08:00:00Z\"\nto = \"yesterday\"\nforecast_multiplier = 0.0\ncolour = 1\n"
        ));
        assert_eq!(
            errs,
            vec![
                "line 6: pool[0].schedule[0].reason: required: a few words the decision log cites (≤ 200 bytes)",
                "line 8: pool[0].schedule[0].to: \"yesterday\" is not a time such as \"2026-12-24T08:00:00Z\"",
                "line 9: pool[0].schedule[0].forecast_multiplier: 0 must be in (0, 100]",
                "line 10: pool[0].schedule[0].colour: unknown key",
            ]
        );
        let errs = errors(
            "[[pool]]\nname = \"p\"\nmembers = [\"127.0.0.1:80\"]\n[[pool.schedule]]\nreason = \"x\"\nfrom = \"1\"\nto = \"2\"\nmin_capacity_rps = 1.0\n",
        );
        assert_eq!(errs, vec!["line 4: pool[0].schedule[0]: known events need [pool.scaling] to act on"]);
    }

    #[test]
    fn hold_tracing_and_exclusions_are_checked_by_key() {
        let ep = "[[pool]]\nname = \"p\"\nmembers = [\"127.0.0.1:80\"]\n[[endpoint]]\nname = \"e\"\npath_prefix = \"/\"\npool = \"p\"\n";
        let s = parse(&format!("{ep}hold = \"10s\"\nhold_queue = 5\n"), Path::new(".")).unwrap();
        assert_eq!((s.endpoints[0].hold, s.endpoints[0].hold_queue), (std::time::Duration::from_secs(10), 5));
        let errs = errors(&format!(
            "{ep}hold = \"11m\"\nhold_queue = 0\nexclude = [{{ from = \"2026-11-27T08:00:00Z\", to = \"2026-11-27T07:00:00Z\", reason = \"x\" }}, {{ from = \"2026-11-27T08:00:00Z\" }}]\n\
             [tracing]\notlp_endpoint = \"https://collector/v1/traces\"\n"
        ));
        let keys: Vec<&str> = errs.iter().map(|e| e.split(": ").nth(1).unwrap_or("")).collect();
        assert_eq!(
            keys,
            [
                "endpoint[0].hold",
                "endpoint[0].hold_queue",
                "endpoint[0].exclude[0].to",
                "endpoint[0].exclude[1].to",
                "endpoint[0].exclude[1].reason",
                "tracing.otlp_endpoint",
            ],
            "{errs:?}"
        );
        let s = parse(&format!("{ep}[tracing]\notlp_endpoint = \"http://127.0.0.1:4318/v1/traces\"\n"), Path::new("."))
            .unwrap();
        let t = s.tracing.unwrap();
        assert_eq!((t.service_name.as_str(), t.queue), ("prescale", 8192));
    }

    /// Issue 17: `[cluster]` is optional (a lone instance without it) and every problem in it
    /// is named by key.
    #[test]
    fn cluster_is_optional_and_checked_by_key() {
        let ep = "[[pool]]\nname = \"p\"\nmembers = [\"127.0.0.1:80\"]\n[[endpoint]]\nname = \"e\"\npath_prefix = \"/\"\npool = \"p\"\n";
        let s = parse(ep, Path::new(".")).unwrap();
        assert!(s.cluster.is_none());
        assert!(!s.historian.unwrap().publish_closed, "a lone instance publishes nothing");
        let s = parse(&format!("{ep}[cluster]\netcd = [\"http://127.0.0.1:2379\"]\n"), Path::new(".")).unwrap();
        let c = s.cluster.unwrap();
        assert_eq!(
            (c.name.as_str(), c.id.as_deref(), c.lease_ttl),
            ("prescale", None, std::time::Duration::from_secs(10))
        );
        assert!(s.historian.unwrap().publish_closed);
        let errs = errors(&format!(
            "{ep}[cluster]\netcd = [\"127.0.0.1:2379\", \"http://h:2379\"]\nname = \"a b\"\nid = \"\"\nlease_ttl = \"1s\"\n\
             cert = \"c.pem\"\nusername = \"u\"\n"
        ));
        let keys: Vec<&str> = errs.iter().map(|e| e.split(": ").nth(1).unwrap_or("")).collect();
        assert_eq!(
            keys,
            [
                "cluster.key",
                "cluster.password_file",
                "cluster.etcd[0]",
                "cluster.etcd",
                "cluster.name",
                "cluster.id",
                "cluster.lease_ttl",
                "cluster.cert"
            ],
            "{errs:?}"
        );
        let errs =
            errors(&format!("{ep}[historian]\nenabled = false\n[cluster]\netcd = [\"http://127.0.0.1:2379\"]\n"));
        assert!(errs.iter().any(|e| e.contains("cluster: needs the historian")), "{errs:?}");
    }

    /// Issue 21, section 1: how a pool's VMs are reached.
    #[test]
    fn network_modes_are_checked() {
        use crate::hypervisor::{AddressSource, Network};
        let base = "[[pool]]\nname = \"p\"\n[pool.scaling]\nuri = \"test:///default\"\ntemplate = \"t\"\n";
        let net =
            |extra: &str| parse(&format!("{base}{extra}"), Path::new(".")).map(|s| s.scaling["p"].network.clone());
        assert_eq!(net("").unwrap(), Network::User);
        assert_eq!(
            net("network = \"bridge\"\n").unwrap(),
            Network::Bridge { port: 80, sources: vec![AddressSource::Lease, AddressSource::Agent, AddressSource::Arp] }
        );
        assert_eq!(
            net("network = \"bridge\"\nport = 8080\naddress_sources = [\"arp\"]\n").unwrap(),
            Network::Bridge { port: 8080, sources: vec![AddressSource::Arp] }
        );
        let errs = errors(&format!(
            "{base}network = \"bridge\"\nports = [18000, 18010]\naddress_sources = [\"dns\", \"arp\", \"arp\"]\nport = 0\n"
        ));
        assert_eq!(
            errs,
            vec![
                "line 7: pool[0].scaling.ports: only with network = \"user\" (on a bridge the VM's own address and `port` are used)",
                "line 8: pool[0].scaling.address_sources[0]: \"dns\" is not one of \"lease\", \"agent\", \"arp\"",
                "line 8: pool[0].scaling.address_sources[2]: \"arp\" is listed twice",
                "line 9: pool[0].scaling.port: 0 is out of range (1..=65535)",
            ]
        );
        let errs = errors(&format!("{base}network = \"nat\"\nport = 80\n"));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains("\"nat\" is not one of \"user\""), "{errs:?}");
        let errs = errors(&format!("{base}port = 80\n"));
        assert!(errs[0].contains("port: only with network = \"bridge\""), "{errs:?}");
    }

    #[test]
    fn forecast_keys_are_checked() {
        let errs = errors(
            "[forecast]\ncpu_ms_per_request = -1.0\nmemory_mib_per_request = 0.0\nrefit_every = \"1h\"\nselect_every = \"10m\"\n",
        );
        assert_eq!(
            errs,
            vec![
                "line 2: forecast.cpu_ms_per_request: -1 must be a positive number",
                "line 3: forecast.memory_mib_per_request: 0 must be a positive number",
                "line 5: forecast.select_every: must be at least refit_every",
            ]
        );
    }

    /// Regression (issue 21, section 5): `check` stopped at the first type error, so a file with
    /// five took five rounds; a number for a duration said "expected a string".
    #[test]
    fn every_type_error_is_reported_in_one_run_next_to_the_other_problems() {
        let errs = errors(
            "[listen]\nheader_timeout = 10\nmax_connections = \"many\"\nadr = \"x\"\n\
             [admin]\nmax_connections = true\n[[pool]]\nname = \"p\"\nmembers = [\"127.0.0.1:1\"]\n\
             balance = \"random\"\n[pool.scaling]\nuri = \"test:///default\"\ntemplate = \"t\"\nvcpus = [\"one\", \"two\"]\n\
             min_vms = 1.5\n",
        );
        assert_eq!(
            errs,
            vec![
                "line 2: listen.header_timeout: invalid type: integer `10`, expected a duration such as \"10s\" (a string with a unit: ms, s, m, h, d)",
                "line 3: listen.max_connections: invalid type: string \"many\", expected an integer",
                "line 4: listen.adr: unknown key (did you mean `addr`?)",
                "line 6: admin.max_connections: invalid type: boolean `true`, expected an integer",
                "line 10: pool[0].balance: \"random\" is not one of \"p2c\", \"round_robin\", \"weighted\"",
                "line 14: pool[0].scaling.vcpus[0]: invalid type: string \"one\", expected an integer",
                "line 15: pool[0].scaling.min_vms: invalid type: floating point `1.5`, expected an integer",
            ]
        );
    }

    #[test]
    fn a_pool_protocol_is_http1_or_h2c() {
        let errs = errors("[[pool]]\nname = \"p\"\nmembers = [\"127.0.0.1:1\"]\nprotocol = \"h3\"\n");
        assert_eq!(errs, vec!["line 4: pool[0].protocol: \"h3\" is not one of \"http1\", \"h2c\""]);
        assert!(errors("[[pool]]\nname = \"p\"\nmembers = [\"127.0.0.1:1\"]\nprotocol = \"h2c\"\n").is_empty());
    }

    /// Regression (issue 21, section 5): a key the user never wrote was reported
    /// (`pool.scaling.health_path` for a bad `health_check.path`); `members = []` without
    /// `[pool.scaling]` passed and then answered 503; a `data_dir` that is a file was not caught.
    #[test]
    fn problems_are_reported_where_the_user_wrote_them() {
        let errs = errors(
            "[[pool]]\nname = \"p\"\nmembers = [\"127.0.0.1:1\"]\nhealth_check = { path = \"health\" }\n\
             [pool.scaling]\nuri = \"test:///default\"\ntemplate = \"t\"\n",
        );
        assert_eq!(errs, vec!["line 4: pool[0].health_check.path: \"health\" must start with '/'"]);
        let errs = errors("[[pool]]\nname = \"p\"\nmembers = []\n");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("line 3: pool[0].members: no members and no [pool.scaling]"), "{errs:?}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("history"), "").unwrap();
        let errs: Vec<String> = parse("[historian]\ndata_dir = \"history\"\n", dir.path())
            .err()
            .unwrap_or_default()
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("line 2: historian.data_dir: ") && errs[0].contains("is not a directory"),
            "{errs:?}"
        );
    }

    #[test]
    fn unknown_keys_get_the_nearest_known_one() {
        let errs = errors(
            "[admin]\ntoken_fil = \"t\"\n[[pool]]\nname = \"p\"\nmembers = [\"127.0.0.1:1\"]\nhelth_check = {}\nzzz = 1\n",
        );
        assert_eq!(
            errs,
            vec![
                "line 2: admin.token_fil: unknown key (did you mean `token_file`?)",
                "line 6: pool[0].helth_check: unknown key (did you mean `health_check`?)",
                "line 7: pool[0].zzz: unknown key",
            ]
        );
        assert!(raw::known_keys(&["pool", "scaling"]).unwrap().contains(&"lead_time"));
    }

    #[test]
    fn syntax_and_type_errors_name_the_line() {
        let errs = errors("[listen]\naddr = \n");
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("line 2:"), "{errs:?}");
        let errs = errors("[listen]\nmax_connections = \"many\"\n");
        assert_eq!(errs, vec!["line 2: listen.max_connections: invalid type: string \"many\", expected an integer"]);
        let errs = errors(
            "[[pool]]\nname = \"p\"\nmembers = [\"127.0.0.1:1\"]\n[[pool]]\nname = \"q\"\nretry = \"yes\"\nmembers = [\"127.0.0.1:1\"]\n",
        );
        assert_eq!(errs, vec!["line 6: pool[1].retry: invalid type: string \"yes\", expected a boolean"]);
    }

    #[test]
    fn path_round_trip() {
        let p = parse_path("pool[1].members[0]");
        assert_eq!(p, vec![Seg::Key("pool".into()), Seg::Index(1), Seg::Key("members".into()), Seg::Index(0)]);
        assert_eq!(display_path(&p), "pool[1].members[0]");
    }
}
