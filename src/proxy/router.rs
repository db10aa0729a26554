//! Routing: request → endpoint. Longest path prefix wins (on a segment boundary); among equal
//! prefixes a route that names a host or methods beats one that does not. The Host header and
//! absolute URIs only ever *select among configured routes* — they never name an upstream, so
//! prescale is not an open proxy.

use std::sync::Arc;

use http::Method;

use super::pool::Pool;
use super::stats::EndpointStats;

/// One configured endpoint, ready to serve.
#[derive(Debug)]
pub struct Route {
    pub name: Arc<str>,
    pub prefix: String,
    pub methods: Option<Vec<Method>>,
    pub host: Option<String>,
    pub pool: Arc<Pool>,
    pub stats: Arc<EndpointStats>,
    /// Holding requests while no member is ready (`hold` zero: off).
    pub hold: std::time::Duration,
    pub hold_queue: usize,
}

/// Immutable route table; a reload builds a new one.
#[derive(Debug, Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    pub fn new(mut routes: Vec<Route>) -> Self {
        routes.sort_by(|a, b| {
            b.prefix
                .len()
                .cmp(&a.prefix.len())
                .then(b.host.is_some().cmp(&a.host.is_some()))
                .then(b.methods.is_some().cmp(&a.methods.is_some()))
        });
        Self { routes }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// `host` is the request's host without port, any case.
    pub fn find(&self, method: &Method, host: Option<&str>, path: &str) -> Option<&Route> {
        self.position(method, host, path).map(|i| &self.routes[i])
    }

    /// Index in [`Router::routes`] of the route `find` returns.
    pub fn position(&self, method: &Method, host: Option<&str>, path: &str) -> Option<usize> {
        self.routes.iter().position(|r| {
            prefix_matches(&r.prefix, path)
                && r.methods.as_ref().is_none_or(|ms| ms.contains(method))
                && r.host.as_ref().is_none_or(|h| host.is_some_and(|got| got.eq_ignore_ascii_case(h)))
        })
    }
}

/// `/api/orders` matches `/api/orders`, `/api/orders/7`, not `/api/ordersx`.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        None => false,
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
    }
}

/// Host without port, from the Host header value or the URI authority.
pub fn host_without_port(h: &str) -> &str {
    if h.starts_with('[') {
        return h.find(']').map_or(h, |i| &h[..=i]);
    }
    h.rsplit_once(':').map_or(h, |(host, _)| host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::settings::{Balance, PassiveSettings, Protocol};

    fn route(name: &str, prefix: &str, host: Option<&str>, methods: Option<Vec<Method>>) -> Route {
        Route {
            name: name.into(),
            prefix: prefix.into(),
            methods,
            host: host.map(Into::into),
            pool: Pool::new("p", &[], Balance::P2c, Protocol::Http1, true, None, PassiveSettings::default()),
            stats: Default::default(),
            hold: std::time::Duration::ZERO,
            hold_queue: 0,
        }
    }

    #[test]
    fn longest_prefix_on_segment_boundary() {
        let r = Router::new(vec![
            route("root", "/", None, None),
            route("api", "/api", None, None),
            route("orders", "/api/orders", None, None),
        ]);
        let find = |p: &str| r.find(&Method::GET, None, p).map(|r| r.name.to_string());
        assert_eq!(find("/api/orders/7").as_deref(), Some("orders"));
        assert_eq!(find("/api/orders").as_deref(), Some("orders"));
        assert_eq!(find("/api/ordersx").as_deref(), Some("api"));
        assert_eq!(find("/apix").as_deref(), Some("root"));
        assert_eq!(find("/").as_deref(), Some("root"));
    }

    #[test]
    fn host_and_method_constraints() {
        let r = Router::new(vec![
            route("any", "/a", None, None),
            route("post", "/a", None, Some(vec![Method::POST])),
            route("host", "/a", Some("api.example.com"), None),
        ]);
        assert_eq!(&*r.find(&Method::GET, Some("API.example.com"), "/a").unwrap().name, "host");
        assert_eq!(&*r.find(&Method::POST, Some("other"), "/a").unwrap().name, "post");
        assert_eq!(&*r.find(&Method::GET, None, "/a/b").unwrap().name, "any");
        assert!(r.find(&Method::GET, None, "/b").is_none());
    }

    #[test]
    fn host_port_stripping() {
        assert_eq!(host_without_port("example.com:8080"), "example.com");
        assert_eq!(host_without_port("example.com"), "example.com");
        assert_eq!(host_without_port("[::1]:80"), "[::1]");
    }
}
