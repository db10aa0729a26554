//! The request target as routing sees it: dot-segment removal (RFC 3986 §5.2.4) and Host
//! validation (RFC 9110 §7.2, RFC 3986 §3.2.2).
//!
//! Both run before routing, so a path cannot name one endpoint to prescale and another to a
//! backend that normalises (`/api/search/../orders/1`), and a Host that is not `host[:port]`
//! (`api.example.com:x@evil.example`) never matches an endpoint's `host` nor reaches an
//! upstream. Pure functions over bytes: no allocation unless a path has to be rewritten.

use std::borrow::Cow;

/// What to do with a path holding dot-segments (`.`, `..`, also as `%2e` or with `;params`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DotSegments {
    /// Remove them (RFC 3986 §5.2.4), then route and forward the result.
    #[default]
    Normalize,
    /// Refuse the request with 400.
    Reject,
}

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Dot-segments in `reject` mode.
    DotSegments,
    /// A dot-segment glued to an encoded slash or a backslash (`..%2f`, `..\`): backends
    /// disagree on what it means, so no reading of it is safe.
    Ambiguous,
}

/// Cheap test: can this path hold a dot-segment at all? (A `.` or an escape right after `/`.)
fn may_have_dots(path: &[u8]) -> bool {
    path.windows(2).any(|w| w[0] == b'/' && (w[1] == b'.' || w[1] == b'%'))
}

/// The segment with `%2e`/`%2E` read as `.` and `;params` dropped, if that makes `.` or `..`.
fn dot_kind(seg: &str) -> Option<u8> {
    let core = seg.split(';').next().unwrap_or("");
    let b = core.as_bytes();
    let mut dots = 0u8;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'.' {
            i += 1;
        } else if b[i] == b'%' && b.len() >= i + 3 && b[i + 1] == b'2' && (b[i + 2] == b'e' || b[i + 2] == b'E') {
            i += 3;
        } else {
            return None;
        }
        dots += 1;
        if dots > 2 {
            return None;
        }
    }
    (dots > 0).then_some(dots)
}

/// A segment that starts like a dot-segment and then hides a separator.
fn ambiguous(seg: &str) -> bool {
    let lower = seg.to_ascii_lowercase();
    let dotted = lower.replace("%2e", ".");
    dotted.starts_with('.') && (lower.contains("%2f") || lower.contains("%5c") || lower.contains('\\'))
}

/// The path with its dot-segments removed (borrowed when there were none), or why it is refused.
/// `path` is the request's path as received (starting with `/`; `*` and other forms pass
/// through untouched).
pub fn normalize_path(path: &str, mode: DotSegments) -> Result<Cow<'_, str>, PathError> {
    let Some(rest) = path.strip_prefix('/') else { return Ok(Cow::Borrowed(path)) };
    if !may_have_dots(path.as_bytes()) {
        return Ok(Cow::Borrowed(path));
    }
    let segs: Vec<(&str, Option<u8>)> = rest.split('/').map(|s| (s, dot_kind(s))).collect();
    if segs.iter().any(|(s, _)| ambiguous(s)) {
        return Err(PathError::Ambiguous);
    }
    if segs.iter().all(|(_, kind)| kind.is_none()) {
        return Ok(Cow::Borrowed(path));
    }
    if mode == DotSegments::Reject {
        return Err(PathError::DotSegments);
    }
    let mut out: Vec<&str> = Vec::with_capacity(segs.len());
    for (seg, kind) in &segs {
        match kind {
            Some(1) => {}
            Some(_) => {
                out.pop();
            }
            None => out.push(seg),
        }
    }
    // `/a/b/..` is `/a/`: a trailing dot-segment leaves a directory.
    if segs.last().is_some_and(|(_, kind)| kind.is_some()) {
        out.push("");
    }
    let mut s = String::with_capacity(path.len());
    for seg in &out {
        s.push('/');
        s.push_str(seg);
    }
    if s.is_empty() {
        s.push('/');
    }
    Ok(Cow::Owned(s))
}

/// Whether a Host (or `:authority`) value is `host[:port]`: a registered name of letters,
/// digits, `-`, `.`, `_`, `~` (at most 253 bytes), an IPv4 address, or an IPv6 literal in
/// brackets; an optional port of at most five digits. Userinfo (`@`), paths, spaces, quotes and
/// markup are refused.
pub fn valid_host(h: &[u8]) -> bool {
    let (host, port) = if h.first() == Some(&b'[') {
        let Some(end) = h.iter().position(|b| *b == b']') else { return false };
        // An IPv6 literal must be one (found by fuzzing: `[::::::::9::9]` passed a character check).
        let ip = std::str::from_utf8(&h[1..end]).ok().and_then(|s| s.parse::<std::net::Ipv6Addr>().ok());
        if ip.is_none() {
            return false;
        }
        match &h[end + 1..] {
            [] => return true,
            [b':', port @ ..] => (&h[..=end], port),
            _ => return false,
        }
    } else {
        match h.iter().position(|b| *b == b':') {
            Some(i) => (&h[..i], &h[i + 1..]),
            None => (h, &[][..]),
        }
    };
    !host.is_empty()
        && host.len() <= 253
        && (host.starts_with(b"[") || host.iter().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(b)))
        && port.len() <= 5
        && port.iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> Result<String, PathError> {
        normalize_path(p, DotSegments::Normalize).map(|c| c.into_owned())
    }

    /// Regression (issue 20, finding 4): these reached the first segment's endpoint.
    #[test]
    fn dot_segments_are_removed_in_every_spelling() {
        assert_eq!(norm("/api/search/../orders/1").unwrap(), "/api/orders/1");
        assert_eq!(norm("/api/orders/../search/x").unwrap(), "/api/search/x");
        assert_eq!(norm("/api/search/%2e%2e/orders/1").unwrap(), "/api/orders/1");
        assert_eq!(norm("/api/search/%2E./orders/1").unwrap(), "/api/orders/1");
        assert_eq!(norm("/api/search/..;/orders/1").unwrap(), "/api/orders/1");
        assert_eq!(norm("/api/search/..;jsessionid=1/orders").unwrap(), "/api/orders");
        assert_eq!(norm("/api/./orders/./1").unwrap(), "/api/orders/1");
        assert_eq!(norm("/a/b/..").unwrap(), "/a/");
        assert_eq!(norm("/a/b/.").unwrap(), "/a/b/");
        assert_eq!(norm("/../../etc/passwd").unwrap(), "/etc/passwd", "never above the root");
        assert_eq!(norm("/..").unwrap(), "/");
    }

    #[test]
    fn ordinary_paths_are_borrowed_untouched() {
        for p in ["/", "/api/orders/7", "/a.b/c..d/...", "/files/.hidden", "/x/%2e%2e%2e", "/a//b", "*"] {
            let got = normalize_path(p, DotSegments::Normalize).unwrap();
            assert!(matches!(got, Cow::Borrowed(_)), "{p}");
            assert_eq!(got, p);
        }
    }

    #[test]
    fn reject_mode_and_ambiguous_segments() {
        assert_eq!(normalize_path("/a/../b", DotSegments::Reject), Err(PathError::DotSegments));
        assert_eq!(normalize_path("/a/%2e/b", DotSegments::Reject), Err(PathError::DotSegments));
        assert!(normalize_path("/a/b", DotSegments::Reject).is_ok());
        assert_eq!(norm("/api/search/..%2forders"), Err(PathError::Ambiguous));
        assert_eq!(norm("/api/search/%2e%2e%5Corders"), Err(PathError::Ambiguous));
    }

    /// Regression (issue 20, finding 5).
    #[test]
    fn hosts() {
        for ok in [
            "api.example.com",
            "api.example.com:8080",
            "API.Example.COM",
            "127.0.0.1:9",
            "[::1]",
            "[::1]:8080",
            "[2001:db8::1]:443",
            "localhost:",
            "svc_internal",
        ] {
            assert!(valid_host(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "api.example.com:x@evil.example",
            "user@api.example.com",
            "api.example.com/x",
            "a b",
            "<script>",
            "\"q\"",
            "",
            ":80",
            "a:1:2",
            "[::1",
            "[::1]x",
            "[zz]",
            "[::::::::::::::9::9]",
            "a:123456",
            "a\\b",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad}");
        }
        assert!(!valid_host("a".repeat(254).as_bytes()));
    }
}
