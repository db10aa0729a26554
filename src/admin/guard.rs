//! What stands between the admin listener and a hostile browser or client: the Host allow-list
//! (DNS rebinding), the same-origin check on POSTs, the page's rotating form secrets, the limit
//! on failed logins, and the action messages the page may show.
//!
//! Everything here is small, bounded state behind `std` mutexes that only the admin thread and
//! its render workers take — never the data plane.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;

/// Which `Host` values the admin answers: IP literals (a rebinding attack needs a DNS name),
/// `localhost`, and the names the operator configured (`admin.hosts`).
#[derive(Debug, Clone, Default)]
pub struct HostPolicy {
    /// Lower-case names, without port.
    pub names: Vec<String>,
}

impl HostPolicy {
    /// Whether a request with this `Host` (absent: HTTP/1.0 tools, never a browser) is answered.
    pub fn allows(&self, host: Option<&str>) -> bool {
        let Some(host) = host else { return true };
        let name = crate::proxy::router::host_without_port(host);
        if name.starts_with('[') {
            return name.trim_matches(|c| c == '[' || c == ']').parse::<std::net::Ipv6Addr>().is_ok();
        }
        name.parse::<std::net::Ipv4Addr>().is_ok()
            || name.eq_ignore_ascii_case("localhost")
            || self.names.iter().any(|n| n.eq_ignore_ascii_case(name))
    }
}

/// The authority (`host[:port]`) of an absolute URL such as an `Origin` or `Referer`.
fn authority_of(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    Some(rest.split(['/', '?', '#']).next().unwrap_or(rest))
}

/// Same-origin check for a POST: an `Origin` (or, without one, a `Referer`) must name the
/// `Host` the request was sent to. Requests with neither come from tools, not browsers, and
/// pass (they still need the token or a form secret).
pub(super) fn same_origin(host: Option<&str>, origin: Option<&str>, referer: Option<&str>) -> bool {
    let claimed = match (origin, referer) {
        (Some("null"), _) => return false,
        (Some(o), _) => authority_of(o),
        (None, Some(r)) => authority_of(r),
        (None, None) => return true,
    };
    match (claimed, host) {
        (Some(c), Some(h)) => c.eq_ignore_ascii_case(h),
        _ => false,
    }
}

/// Form secrets handed out with each page load, valid for [`FORM_SECRET_TTL_S`] (the newest
/// [`FORM_SECRETS_KEPT`] of them): a secret read once is not good forever.
#[derive(Debug, Default)]
pub(super) struct FormSecrets {
    issued: Mutex<VecDeque<(String, u64)>>,
}

pub(super) const FORM_SECRET_TTL_S: u64 = 3600;
pub(super) const FORM_SECRETS_KEPT: usize = 1024;

impl FormSecrets {
    /// A new secret for one page load.
    pub(super) fn issue(&self, now_s: u64) -> String {
        let s = random_hex(16);
        let mut q = self.issued.lock().unwrap_or_else(|e| e.into_inner());
        q.retain(|(_, t)| now_s.saturating_sub(*t) < FORM_SECRET_TTL_S);
        if q.len() >= FORM_SECRETS_KEPT {
            q.pop_front();
        }
        q.push_back((s.clone(), now_s));
        s
    }

    /// Whether `given` is a secret issued less than the TTL ago (compared in constant time).
    pub(super) fn valid(&self, given: &str, now_s: u64) -> bool {
        let q = self.issued.lock().unwrap_or_else(|e| e.into_inner());
        q.iter().fold(false, |ok, (s, t)| ok | (same(s, given) && now_s.saturating_sub(*t) < FORM_SECRET_TTL_S))
    }
}

/// `n` bytes from the kernel's CSPRNG (`getrandom(2)`), hex-encoded: for secrets that must not
/// be guessable from earlier ones (form secrets, session ids), which a seeded PRNG cannot give.
pub(super) fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    let mut filled = 0;
    while filled < n {
        // SAFETY: writes at most `n - filled` bytes into the owned buffer at `filled`.
        let got = unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), n - filled, 0) };
        if got > 0 {
            filled += got as usize;
        } else if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            // getrandom cannot fail on a kernel with it once the pool is initialised; if it
            // does, no secret is better than a guessable one.
            panic!("getrandom failed: {}", std::io::Error::last_os_error());
        }
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Browser sessions of the admin page: a login with the admin token gives a random id, carried
/// by an `HttpOnly; SameSite=Strict` cookie (and `Secure` under TLS). Sessions live in memory
/// only and are tied to the token they were opened with: a restart — the only way to change
/// `admin.token_file` — ends them all. At most [`SESSIONS_KEPT`], oldest dropped first.
#[derive(Debug, Default)]
pub(super) struct Sessions {
    open: Mutex<VecDeque<(String, u64)>>,
}

/// How long a session lasts from its login.
pub(super) const SESSION_TTL_S: u64 = 12 * 3600;
pub(super) const SESSIONS_KEPT: usize = 256;
/// The cookie's name.
pub(super) const SESSION_COOKIE: &str = "prescale_session";

impl Sessions {
    /// Opens a session; returns its id.
    pub(super) fn open(&self, now_s: u64) -> String {
        let id = random_hex(32);
        let mut q = self.open.lock().unwrap_or_else(|e| e.into_inner());
        q.retain(|(_, t)| now_s < t + SESSION_TTL_S);
        if q.len() >= SESSIONS_KEPT {
            q.pop_front();
        }
        q.push_back((id.clone(), now_s));
        id
    }

    /// Whether `id` is an open, unexpired session (compared in constant time).
    pub(super) fn valid(&self, id: &str, now_s: u64) -> bool {
        let q = self.open.lock().unwrap_or_else(|e| e.into_inner());
        q.iter().fold(false, |ok, (s, t)| ok | (same(s, id) && now_s < t + SESSION_TTL_S))
    }

    pub(super) fn close(&self, id: &str) {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).retain(|(s, _)| !same(s, id));
    }
}

/// The session id in a request's `Cookie` headers, if any.
pub(super) fn session_cookie(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v)
}

/// Where to go after a login: a path of the admin page only (never another site).
pub(super) fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with("/admin") && !n.contains("//") && !n.contains('\\') && n.is_ascii() => n,
        _ => "/admin",
    }
}

/// Constant-time string comparison (for secrets).
pub(super) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |x, (p, q)| x | (p ^ q)) == 0
}

/// Failed admin logins (a wrong token or form secret presented) per client address: after
/// `max` within [`FAILURE_WINDOW_S`], the address gets 429 until the window ends — even with
/// the right token, or guessing would go on at full speed.
#[derive(Debug)]
pub(super) struct LoginLimiter {
    max: u32,
    failures: Mutex<HashMap<IpAddr, (u64, u32)>>,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        Self::new(MAX_FAILURES)
    }
}

/// Default failed logins allowed per address and window (`admin.max_failed_logins`).
pub(super) const MAX_FAILURES: u32 = 10;
pub(super) const FAILURE_WINDOW_S: u64 = 60;
/// Addresses tracked at most (a flood of addresses resets the table rather than growing it).
const TRACKED: usize = 10_000;

impl LoginLimiter {
    pub(super) fn new(max: u32) -> Self {
        Self { max: max.max(1), failures: Mutex::default() }
    }

    /// Seconds to wait when `ip` has failed too often, else `None`.
    pub(super) fn blocked(&self, ip: IpAddr, now_s: u64) -> Option<u64> {
        let m = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        match m.get(&ip) {
            Some((start, n)) if *n >= self.max && now_s < start + FAILURE_WINDOW_S => {
                Some(start + FAILURE_WINDOW_S - now_s)
            }
            _ => None,
        }
    }

    pub(super) fn failed(&self, ip: IpAddr, now_s: u64) {
        let mut m = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= TRACKED && !m.contains_key(&ip) {
            m.retain(|_, (start, _)| now_s < *start + FAILURE_WINDOW_S);
            if m.len() >= TRACKED {
                m.clear();
            }
        }
        let e = m.entry(ip).or_insert((now_s, 0));
        if now_s >= e.0 + FAILURE_WINDOW_S {
            *e = (now_s, 0);
        }
        e.1 += 1;
    }
}

/// Results of the operator's actions, shown once on the page after the redirect. The page shows
/// only messages prescale wrote (`?msg=<id>`), never text from the URL.
#[derive(Debug, Default)]
pub(super) struct Messages {
    recent: Mutex<VecDeque<(String, String)>>,
}

const MESSAGES_KEPT: usize = 64;

impl Messages {
    /// Stores `text`; returns the id the redirect carries.
    pub(super) fn put(&self, text: String) -> String {
        let id = random_hex(8);
        let mut q = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= MESSAGES_KEPT {
            q.pop_front();
        }
        q.push_back((id.clone(), text));
        id
    }

    pub(super) fn get(&self, id: &str) -> Option<String> {
        let q = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        q.iter().find(|(i, _)| i == id).map(|(_, t)| t.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (issue 20, finding 6): any Host was answered.
    #[test]
    fn hosts_rebinding_names_are_refused() {
        let p = HostPolicy { names: vec!["admin.example.com".into()] };
        for ok in ["127.0.0.1:9901", "[::1]:9901", "10.1.2.3", "localhost:9901", "LOCALHOST", "Admin.Example.com:443"] {
            assert!(p.allows(Some(ok)), "{ok}");
        }
        assert!(p.allows(None));
        for bad in ["attacker.example:9901", "attacker.example", "127.0.0.1.nip.io:9901", "[zz]:1", "localhost.evil"] {
            assert!(!p.allows(Some(bad)), "{bad}");
        }
    }

    #[test]
    fn origins() {
        let h = Some("127.0.0.1:9901");
        assert!(same_origin(h, Some("http://127.0.0.1:9901"), None));
        assert!(same_origin(h, None, Some("http://127.0.0.1:9901/admin?x=1")));
        assert!(same_origin(h, None, None), "tools send neither");
        assert!(!same_origin(h, Some("http://attacker.example:9901"), None));
        assert!(!same_origin(h, Some("null"), None));
        assert!(!same_origin(h, None, Some("http://attacker.example/")));
        assert!(!same_origin(h, Some("http://127.0.0.1:9902"), Some("http://127.0.0.1:9901/")), "Origin wins");
    }

    #[test]
    fn form_secrets_rotate_and_expire() {
        let f = FormSecrets::default();
        let a = f.issue(1000);
        let b = f.issue(1001);
        assert_ne!(a, b);
        assert!(f.valid(&a, 1002) && f.valid(&b, 1002));
        assert!(!f.valid("0123", 1002) && !f.valid("", 1002));
        assert!(!f.valid(&a, 1000 + FORM_SECRET_TTL_S), "expired");
        for i in 0..FORM_SECRETS_KEPT {
            f.issue(2000 + i as u64 % 10);
        }
        assert!(!f.valid(&b, 2010), "evicted by newer ones");
    }

    #[test]
    fn failed_logins_are_limited_per_address() {
        let l = LoginLimiter::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..MAX_FAILURES - 1 {
            l.failed(a, 100);
        }
        assert_eq!(l.blocked(a, 100), None);
        l.failed(a, 101);
        assert_eq!(l.blocked(a, 110), Some(50));
        assert_eq!(l.blocked(b, 110), None, "per address");
        assert_eq!(l.blocked(a, 100 + FAILURE_WINDOW_S), None, "the window ends");
    }

    #[test]
    fn sessions_expire_close_and_are_random() {
        let s = Sessions::default();
        let a = s.open(1000);
        let b = s.open(1000);
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(s.valid(&a, 1000 + SESSION_TTL_S - 1));
        assert!(!s.valid(&a, 1000 + SESSION_TTL_S), "expired");
        assert!(!s.valid("0".repeat(64).as_str(), 1000));
        s.close(&a);
        assert!(!s.valid(&a, 1001) && s.valid(&b, 1001));
        let mut h = http::HeaderMap::new();
        h.append(http::header::COOKIE, format!("theme=dark; {SESSION_COOKIE}={b}").parse().unwrap());
        assert_eq!(session_cookie(&h), Some(b.as_str()));
        for (next, want) in [
            (Some("/admin?refresh=0"), "/admin?refresh=0"),
            (Some("https://evil.example/admin"), "/admin"),
            (Some("//evil.example"), "/admin"),
            (Some("/admin//evil"), "/admin"),
            (None, "/admin"),
        ] {
            assert_eq!(safe_next(next), want);
        }
    }

    #[test]
    fn messages_are_only_what_was_stored() {
        let m = Messages::default();
        let id = m.put("pool p: scale +1".into());
        assert_eq!(m.get(&id).as_deref(), Some("pool p: scale +1"));
        assert_eq!(m.get("<script>alert(1)</script>"), None);
    }
}
