//! The browser playground and dashboard: the Vite build of `web/`, embedded
//! in the binary by `build.rs`, served at `/` and under `/ui/` with a strict
//! Content-Security-Policy.
//!
//! The page is static; it talks to the same `/v1` API as every client, with
//! the session cookie of `routes/sessions.rs` instead of a bearer token.

use axum::{
    Router,
    extract::Path,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};

use crate::{ApiError, AppState};

/// One embedded file of the built UI.
#[derive(Debug)]
pub struct Asset {
    /// Its path under the dist folder, with `/` separators (`index.html`,
    /// `assets/index-<hash>.js`).
    pub path: &'static str,
    /// Its bytes.
    pub bytes: &'static [u8],
    /// The `Content-Type` it is served with.
    pub content_type: &'static str,
    /// True for Vite's content-hashed assets, which never change under
    /// their name and may be cached for good.
    pub immutable: bool,
}

// `BUILT` and `ASSETS`, generated from `web/dist` (or the "not built"
// notice) by build.rs.
include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

/// The page's Content-Security-Policy: scripts, styles and connections only
/// from this origin; no inline script or style, no `eval`, no framing, no
/// plugins, and forms only to this origin.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// True when the binary carries the built UI rather than the notice.
pub fn built() -> bool {
    BUILT
}

/// The embedded file at `path`.
pub fn asset(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// The routes of the UI: `/`, `/ui` (a redirect to `/ui/`), `/ui/` and the
/// files under `/ui/`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/ui", get(|| async { redirect_to_ui() }))
        .route("/ui/", get(index))
        .route("/ui/{*path}", get(file))
}

fn redirect_to_ui() -> Response {
    (
        StatusCode::MOVED_PERMANENTLY,
        [(header::LOCATION, HeaderValue::from_static("/ui/"))],
    )
        .into_response()
}

async fn index() -> Response {
    serve(asset("index.html"))
}

async fn file(Path(path): Path<String>) -> Response {
    serve(asset(&path))
}

fn serve(found: Option<&'static Asset>) -> Response {
    let Some(asset) = found else {
        return ApiError::not_found("no such file in the web UI").into_response();
    };
    let cache = if asset.immutable {
        "public, max-age=31536000, immutable"
    } else {
        // index.html names the hashed assets of this build: always
        // revalidate, so a new binary's page is seen at once.
        "no-cache"
    };
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (
                header::HeaderName::from_static("cross-origin-opener-policy"),
                HeaderValue::from_static("same-origin"),
            ),
        ],
        asset.bytes,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_is_always_embedded_and_never_cached_for_good() {
        let index = asset("index.html").expect("an index.html, built or the notice");
        assert!(index.content_type.starts_with("text/html"));
        assert!(!index.immutable);
        let html = std::str::from_utf8(index.bytes).expect("utf-8");
        // No inline script: every <script> has a src under /ui/assets/.
        for tag in html.split("<script").skip(1) {
            let tag = tag.split('>').next().unwrap_or_default();
            assert!(
                tag.contains("src=\"/ui/assets/"),
                "inline script in index.html: {tag}"
            );
        }
        if built() {
            assert!(
                ASSETS
                    .iter()
                    .any(|a| a.immutable && a.path.ends_with(".js"))
            );
        } else {
            assert!(html.contains("make build"));
        }
    }

    #[test]
    fn the_policy_forbids_inline_code_and_framing() {
        for part in [
            "script-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(CONTENT_SECURITY_POLICY.contains(part), "{part}");
        }
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
    }
}
