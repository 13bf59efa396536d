//! Who is calling: the client IP of every request (the TCP peer, or what
//! trusted proxies say in `X-Forwarded-For`) and the optional IP allowlist.
//!
//! [`guard`] runs in front of every route. It puts a [`ClientIp`] into the
//! request's extensions, where later layers (lockout and per-IP rate limits)
//! read it, and answers `403 ip_not_allowed` to addresses outside
//! `[network] allow`.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    str::FromStr,
};

use axum::{
    extract::{ConnectInfo, Request, State, connect_info::MockConnectInfo},
    http::{HeaderMap, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{AppState, error::ApiError};

/// The address a request is attributed to, after trusted proxies are peeled
/// off. [`guard`] inserts it into every request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientIp(pub IpAddr);

/// The `X-Forwarded-For` header.
const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// An address range in CIDR notation (`10.0.0.0/8`, `fd00::/8`); a bare
/// address (`192.0.2.7`, `::1`) means that one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr(pub IpNet);

impl Cidr {
    /// True when `ip` is in this range. IPv4-mapped IPv6 addresses
    /// (`::ffff:10.0.0.1`) count as their IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }
}

/// A string that is neither an address nor a CIDR range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP address or CIDR range (like 10.0.0.0/8)")]
pub struct CidrError(String);

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, CidrError> {
        let s = s.trim();
        if let Ok(net) = s.parse::<IpNet>() {
            // `10.1.2.3/8` means the range it falls in; keep the canonical
            // form so error messages and the docs agree.
            return Ok(Self(net.trunc()));
        }
        s.parse::<IpAddr>()
            .map(|ip| Self(IpNet::from(ip.to_canonical())))
            .map_err(|_| CidrError(s.to_owned()))
    }
}

impl TryFrom<String> for Cidr {
    type Error = CidrError;

    fn try_from(s: String) -> Result<Self, CidrError> {
        s.parse()
    }
}

impl From<Cidr> for String {
    fn from(c: Cidr) -> String {
        c.to_string()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// True when some range in `nets` contains `ip`.
fn any_contains(nets: &[Cidr], ip: IpAddr) -> bool {
    nets.iter().any(|n| n.contains(ip))
}

/// The client IP of a request that reached us from `peer`.
///
/// `X-Forwarded-For` is read only when `peer` is a trusted proxy. Its
/// entries are walked right to left (the rightmost was written by the proxy
/// nearest to us), skipping trusted proxies; the first untrusted address is
/// the client. Entries left of it were written by the client and are never
/// believed. A malformed entry stops the walk: what lies left of it cannot be
/// attributed, so the client is the last trusted hop seen, which is also the
/// answer when every entry is a trusted proxy.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted_proxies: &[Cidr]) -> IpAddr {
    let peer = peer.to_canonical();
    if !any_contains(trusted_proxies, peer) {
        return peer;
    }
    let mut client = peer;
    // Several headers count as one list, in order (RFC 9110, 5.3).
    for value in headers.get_all(X_FORWARDED_FOR).iter().rev() {
        let Ok(value) = value.to_str() else {
            return client;
        };
        for entry in value.rsplit(',') {
            let Some(ip) = parse_forwarded_entry(entry) else {
                return client;
            };
            client = ip;
            if !any_contains(trusted_proxies, ip) {
                return ip;
            }
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, optionally with a port
/// (`192.0.2.1:4711`, `[2001:db8::1]:4711`), as some proxies write it.
fn parse_forwarded_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// The peer address, found where the `ConnectInfo` extractor finds it: the
/// listener's `ConnectInfo`, or a test's `MockConnectInfo`.
fn peer_addr(req: &Request) -> Option<SocketAddr> {
    let extensions = req.extensions();
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
        .or_else(|| extensions.get::<MockConnectInfo<SocketAddr>>().map(|c| c.0))
}

/// The middleware in front of every route: computes the [`ClientIp`], puts
/// it into the request's extensions, and refuses addresses outside the
/// allowlist with `403 ip_not_allowed`.
///
/// The peer comes from `ConnectInfo<SocketAddr>`, which [`crate::serve`] and
/// [`crate::serve_tls`] provide; without it (a router driven directly, as in
/// tests) the peer is `0.0.0.0`.
pub async fn guard(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let peer = peer_addr(&req).map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
    let network = &state.config.network;
    let ip = client_ip(peer, req.headers(), &network.trusted_proxies);
    req.extensions_mut().insert(ClientIp(ip));
    if !network.allow.is_empty() && !any_contains(&network.allow, ip) {
        tracing::info!(client_ip = %ip, "refused a request from outside the IP allowlist");
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "ip_not_allowed",
            "requests from this address are not allowed",
        )
        // The caller's own address as the server sees it, which is what an
        // operator needs to fix an allowlist or a proxy setting.
        .with_details(serde_json::json!({ "client_ip": ip.to_string() }))
        .into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter()
            .map(|s| s.parse().expect("valid CIDR"))
            .collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("valid IP")
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(X_FORWARDED_FOR, HeaderValue::from_str(v).expect("header"));
        }
        headers
    }

    #[test]
    fn cidrs_parse_ranges_and_bare_addresses() {
        assert_eq!(
            Cidr::from_str("10.0.0.0/8").map(|c| c.to_string()),
            Ok("10.0.0.0/8".into())
        );
        assert_eq!(
            Cidr::from_str("10.1.2.3/8").map(|c| c.to_string()),
            Ok("10.0.0.0/8".into())
        );
        assert_eq!(
            Cidr::from_str(" 192.0.2.7 ").map(|c| c.to_string()),
            Ok("192.0.2.7/32".into())
        );
        assert_eq!(
            Cidr::from_str("::1").map(|c| c.to_string()),
            Ok("::1/128".into())
        );
        assert!(Cidr::from_str("10.0.0.0/33").is_err());
        assert!(Cidr::from_str("example.com").is_err());
        assert!(Cidr::from_str("").is_err());
        let net = Cidr::from_str("10.0.0.0/8").expect("parses");
        assert!(net.contains(ip("10.9.8.7")));
        assert!(net.contains(ip("::ffff:10.9.8.7")), "IPv4-mapped counts");
        assert!(!net.contains(ip("11.0.0.1")));
    }

    #[test]
    fn forwarded_for_is_ignored_from_untrusted_peers() {
        let headers = xff(&["198.51.100.1"]);
        assert_eq!(
            client_ip(ip("203.0.113.9"), &headers, &[]),
            ip("203.0.113.9")
        );
        let trusted = cidrs(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(ip("203.0.113.9"), &headers, &trusted),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn forwarded_for_is_walked_right_to_left_past_trusted_proxies() {
        let trusted = cidrs(&["10.0.0.0/8", "192.0.2.1"]);
        // The client forged the left entry; proxy 10.0.0.3 saw 198.51.100.7.
        let headers = xff(&["1.2.3.4, 198.51.100.7, 10.0.0.3"]);
        assert_eq!(
            client_ip(ip("10.0.0.2"), &headers, &trusted),
            ip("198.51.100.7")
        );
        // Split across headers, with ports and a mapped address.
        let headers = xff(&["1.2.3.4", "[2001:db8::5]:4711, 192.0.2.1:80"]);
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.2"), &headers, &trusted),
            ip("2001:db8::5")
        );
        // No header: the proxy itself.
        assert_eq!(
            client_ip(ip("10.0.0.2"), &HeaderMap::new(), &trusted),
            ip("10.0.0.2")
        );
        // Every hop trusted: the leftmost.
        let headers = xff(&["10.1.1.1, 10.0.0.3"]);
        assert_eq!(
            client_ip(ip("10.0.0.2"), &headers, &trusted),
            ip("10.1.1.1")
        );
    }

    #[test]
    fn malformed_entries_stop_the_walk_at_the_last_trusted_hop() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        for value in [
            "1.2.3.4, garbage, 10.0.0.3",
            "1.2.3.4, , 10.0.0.3",
            "1.2.3.4,unknown,10.0.0.3",
        ] {
            let headers = xff(&[value]);
            assert_eq!(
                client_ip(ip("10.0.0.2"), &headers, &trusted),
                ip("10.0.0.3"),
                "{value}"
            );
        }
        let mut headers = HeaderMap::new();
        headers.append(
            X_FORWARDED_FOR,
            HeaderValue::from_bytes(b"1.2.3.4, \xff").expect("opaque header"),
        );
        assert_eq!(
            client_ip(ip("10.0.0.2"), &headers, &trusted),
            ip("10.0.0.2")
        );
    }
}
