//! The client IP and the IP allowlist, through the real router: the peer
//! address comes from `MockConnectInfo`, as a real listener's would from
//! `ConnectInfo`, and `X-Forwarded-For` counts only from trusted proxies.

use std::net::SocketAddr;

use axum::{
    Extension, Router,
    body::Body,
    extract::connect_info::MockConnectInfo,
    http::{Request, StatusCode},
    routing::get,
};
use serde_json::Value;
use strictpy_server::{
    config::Config,
    net::{Cidr, ClientIp},
};
use tower::ServiceExt as _;

use crate::server::TestServer;

fn cidrs(list: &[&str]) -> Vec<Cidr> {
    list.iter().map(|s| s.parse().expect("CIDR")).collect()
}

/// One worker is plenty: nothing here runs a job.
async fn server(allow: &[&str], trusted: &[&str]) -> TestServer {
    let (allow, trusted) = (cidrs(allow), cidrs(trusted));
    TestServer::start(move |c: &mut Config| {
        c.workers = 1;
        c.network.allow = allow;
        c.network.trusted_proxies = trusted;
    })
    .await
}

/// `GET uri` from `peer` (none: no `ConnectInfo`, as in a bare router test),
/// with these `X-Forwarded-For` headers; the status and the JSON body.
async fn get_from(
    app: &Router,
    peer: Option<&str>,
    forwarded: &[&str],
    uri: &str,
) -> (StatusCode, Value) {
    let mut request = Request::builder().uri(uri);
    for value in forwarded {
        request = request.header("x-forwarded-for", *value);
    }
    let request = request.body(Body::empty()).expect("request");
    let app = match peer {
        Some(peer) => {
            let peer: SocketAddr = peer.parse().expect("socket address");
            app.clone().layer(MockConnectInfo(peer))
        }
        None => app.clone(),
    };
    let response = app.oneshot(request).await.expect("infallible");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[track_caller]
fn assert_refused((status, body): &(StatusCode, Value)) {
    assert_eq!(*status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "ip_not_allowed", "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(body["error"]["details"]["client_ip"].is_string(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_allowlist_everyone_is_served() {
    let server = server(&[], &[]).await;
    for peer in [Some("203.0.113.9:5000"), Some("[2001:db8::1]:443"), None] {
        let (status, body) = get_from(&server.app, peer, &[], "/healthz").await;
        assert_eq!(status, StatusCode::OK, "{peer:?}: {body}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_allowlist_refuses_every_route_to_outsiders() {
    let server = server(&["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"], &[]).await;
    let app = &server.app;
    for peer in [
        "10.1.2.3:40000",
        "[2001:db8::42]:1",
        "192.0.2.7:9",
        "[::ffff:10.9.9.9]:1",
    ] {
        let (status, body) = get_from(app, Some(peer), &[], "/healthz").await;
        assert_eq!(status, StatusCode::OK, "{peer}: {body}");
    }
    for peer in [
        "11.0.0.1:40000",
        "192.0.2.8:9",
        "[2001:db9::1]:1",
        "127.0.0.1:1",
    ] {
        assert_refused(&get_from(app, Some(peer), &[], "/healthz").await);
    }
    // No peer address at all counts as 0.0.0.0, which is not allowed.
    assert_refused(&get_from(app, None, &[], "/healthz").await);
    // An outsider is refused before anything else looks at the request:
    // API routes, unknown routes and the metrics alike.
    for uri in ["/v1/jobs", "/no-such-route", "/metrics"] {
        assert_refused(&get_from(app, Some("11.0.0.1:1"), &[], uri).await);
    }
    // An allowed address reaches the API's own checks (authentication,
    // where it is on: 401, never 403 ip_not_allowed).
    let (status, body) = get_from(app, Some("10.1.2.3:1"), &[], "/v1/jobs").await;
    assert_ne!(status, StatusCode::FORBIDDEN, "{body}");
    assert_ne!(body["error"]["code"], "ip_not_allowed", "{body}");
    // Without a trusted proxy, X-Forwarded-For is the caller's own word.
    assert_refused(&get_from(app, Some("11.0.0.1:1"), &["10.1.2.3"], "/healthz").await);
    let (status, _) = get_from(app, Some("10.1.2.3:1"), &["11.0.0.1"], "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_forwarded_client_is_checked() {
    let server = server(&["198.51.100.0/24"], &["10.0.0.0/8"]).await;
    let app = &server.app;
    let proxy = Some("10.0.0.2:33000");
    // The proxy appended the client it saw.
    let (status, body) = get_from(app, proxy, &["198.51.100.7"], "/healthz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let refused = get_from(app, proxy, &["203.0.113.1"], "/healthz").await;
    assert_refused(&refused);
    assert_eq!(refused.1["error"]["details"]["client_ip"], "203.0.113.1");
    // A client that forges an allowed address on the left is still the
    // rightmost untrusted entry.
    assert_refused(&get_from(app, proxy, &["198.51.100.7, 203.0.113.1"], "/healthz").await);
    assert_refused(&get_from(app, proxy, &["198.51.100.7", "203.0.113.1"], "/healthz").await);
    // Chained trusted proxies are skipped.
    let (status, body) = get_from(app, proxy, &["198.51.100.7, 10.0.0.3"], "/healthz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Garbage does not let a forged address through: the walk stops at it.
    assert_refused(
        &get_from(
            app,
            proxy,
            &["198.51.100.7, not-an-ip, 10.0.0.3"],
            "/healthz",
        )
        .await,
    );
    // The proxy itself, with no header, is not in the allowlist.
    assert_refused(&get_from(app, proxy, &[], "/healthz").await);
    // The same header from an untrusted peer is ignored.
    assert_refused(&get_from(app, Some("203.0.113.1:1"), &["198.51.100.7"], "/healthz").await);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_puts_the_client_ip_into_the_request() {
    let server = server(&[], &["10.0.0.0/8", "2001:db8::/32"]).await;
    let state = server.server.as_ref().expect("running").state();
    // A route of our own behind the same guard, echoing what it was given.
    let app = Router::new()
        .route(
            "/ip",
            get(|Extension(ClientIp(ip)): Extension<ClientIp>| async move { ip.to_string() }),
        )
        .layer(axum::middleware::from_fn_with_state(
            state,
            strictpy_server::net::guard,
        ));
    let echo = |peer: &'static str, forwarded: &'static [&'static str]| {
        let app = app.clone().layer(MockConnectInfo(
            peer.parse::<SocketAddr>().expect("socket address"),
        ));
        async move {
            let mut request = Request::builder().uri("/ip");
            for value in forwarded {
                request = request.header("x-forwarded-for", *value);
            }
            let response = app
                .oneshot(request.body(Body::empty()).expect("request"))
                .await
                .expect("infallible");
            assert_eq!(response.status(), StatusCode::OK);
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("body");
            String::from_utf8_lossy(&bytes).into_owned()
        }
    };
    assert_eq!(echo("203.0.113.5:1", &["1.1.1.1"]).await, "203.0.113.5");
    assert_eq!(echo("10.0.0.2:1", &[]).await, "10.0.0.2");
    assert_eq!(
        echo("10.0.0.2:1", &["1.1.1.1, 198.51.100.9"]).await,
        "198.51.100.9"
    );
    assert_eq!(
        echo("[2001:db8::1]:1", &["198.51.100.9:5555, [2001:db8::2]:80"]).await,
        "198.51.100.9"
    );
    assert_eq!(echo("[::ffff:203.0.113.5]:1", &[]).await, "203.0.113.5");
    server.stop().await;
}
