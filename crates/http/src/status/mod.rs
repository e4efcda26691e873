//! The status page at `/`: every machine's boot timeline and the services'
//! counters, for a person (a browser, a phone, `w3m`), served by bootlabd
//! itself with no external assets, so it works in a disconnected lab.
//!
//! | path | answer |
//! |---|---|
//! | `/` | the page, rendered on the server (a plain table without JavaScript) |
//! | `/static/status.css`, `/static/status.js`, `/static/favicon.svg` | the page's assets, compiled in |
//! | `/api/v1/summary` | the same view as JSON; the script polls it and updates the table in place |
//!
//! Every answer carries [`CSP`] (no inline script or style, no eval, only
//! this origin) and `X-Content-Type-Options: nosniff`. The script inserts
//! data with `textContent` only (a unit test reads it for anything else).
//!
//! # Layout
//! - [`boot`]: boot attempts and the stall rule (pure).
//! - [`view`]: the page as data, from a snapshot of the live state (pure).
//! - [`page`]: the HTML, through one auto-escaping minijinja template.

pub mod boot;
pub mod page;
pub mod view;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bootlab_state::Shared;
use tracing::error;

use crate::http_metrics::RequestKind;
use crate::routes::AppState;
use view::{ServiceView, Snapshot, StatusView};

/// The Content-Security-Policy of every status page answer: nothing inline,
/// nothing from elsewhere, no framing, no forms.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'";

const CSS: &str = include_str!("../../static/status.css");
const JS: &str = include_str!("../../static/status.js");
const FAVICON: &str = include_str!("../../static/favicon.svg");

/// The status page's routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(page_handler))
        .route("/static/status.css", get(css))
        .route("/static/status.js", get(js))
        .route("/static/favicon.svg", get(favicon))
        .route("/api/v1/summary", get(summary))
}

/// Reads the live state the page shows. Reports may run a command
/// (`nft` for egress, cached by its owner), so call it off the runtime.
pub fn snapshot(shared: &Shared) -> Snapshot {
    Snapshot {
        machines: shared.machines(),
        services: ServiceView::from_metrics(&shared.metrics),
        balancers: shared.reports.get("balancers"),
        egress: shared.reports.get("egress"),
    }
}

/// How long one built view answers every page and summary request: the
/// cost of the page does not grow with the number of open browsers.
pub const VIEW_TTL: Duration = Duration::from_millis(500);

/// The latest built view, shared by the requests of [`VIEW_TTL`].
#[derive(Debug, Default)]
pub struct ViewCache {
    last: tokio::sync::Mutex<Option<(Instant, Arc<StatusView>)>>,
}

/// The view now (at most [`VIEW_TTL`] old), built off the async runtime;
/// requests that arrive during a build wait for it.
async fn current_view(state: &Arc<AppState>) -> Option<Arc<StatusView>> {
    let mut last = state.status_views.last.lock().await;
    if let Some((at, view)) = &*last {
        if at.elapsed() < VIEW_TTL {
            return Some(Arc::clone(view));
        }
    }
    let shared = state.shared.clone();
    let built = tokio::task::spawn_blocking(move || {
        let inv = shared.inventory();
        StatusView::build(&inv, &snapshot(&shared), SystemTime::now())
    })
    .await;
    match built {
        Ok(v) => {
            let v = Arc::new(v);
            *last = Some((Instant::now(), Arc::clone(&v)));
            Some(v)
        }
        Err(e) => {
            state.metrics.error("io");
            error!("building the status view failed: {e}");
            None
        }
    }
}

fn secured(status: StatusCode, ctype: &'static str, cache: &'static str, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(ctype)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (
                HeaderName::from_static("cross-origin-opener-policy"),
                HeaderValue::from_static("same-origin"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        body,
    )
        .into_response()
}

fn internal_error() -> Response {
    secured(
        StatusCode::INTERNAL_SERVER_ERROR,
        "text/plain; charset=utf-8",
        "no-store",
        "internal error\n".to_owned(),
    )
}

async fn page_handler(State(state): State<Arc<AppState>>) -> Response {
    state.metrics.request(RequestKind::Page);
    let Some(view) = current_view(&state).await else {
        return internal_error();
    };
    match page::render(&view) {
        Ok(html) => secured(StatusCode::OK, "text/html; charset=utf-8", "no-store", html),
        Err(e) => {
            state.metrics.error("render");
            error!("rendering the status page failed: {e:#}");
            internal_error()
        }
    }
}

async fn summary(State(state): State<Arc<AppState>>) -> Response {
    state.metrics.request(RequestKind::Api);
    let Some(view) = current_view(&state).await else {
        return internal_error();
    };
    match serde_json::to_string(&*view) {
        Ok(json) => secured(StatusCode::OK, "application/json", "no-store", json),
        Err(e) => {
            state.metrics.error("render");
            error!("serializing the status view failed: {e}");
            internal_error()
        }
    }
}

/// The compiled-in assets change only with the binary: revalidate rather
/// than cache blindly, so an upgraded daemon's page is never mixed with an
/// old script.
const ASSET_CACHE: &str = "no-cache";

async fn css(State(state): State<Arc<AppState>>) -> Response {
    state.metrics.request(RequestKind::Page);
    secured(
        StatusCode::OK,
        "text/css; charset=utf-8",
        ASSET_CACHE,
        CSS.to_owned(),
    )
}

async fn js(State(state): State<Arc<AppState>>) -> Response {
    state.metrics.request(RequestKind::Page);
    secured(
        StatusCode::OK,
        "text/javascript; charset=utf-8",
        ASSET_CACHE,
        JS.to_owned(),
    )
}

async fn favicon(State(state): State<Arc<AppState>>) -> Response {
    state.metrics.request(RequestKind::Page);
    secured(
        StatusCode::OK,
        "image/svg+xml",
        ASSET_CACHE,
        FAVICON.to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The script builds the DOM from data with `textContent` and
    /// `createElement` only: nothing that parses a string as HTML or code.
    #[test]
    fn the_script_never_parses_data_as_html_or_code() {
        for forbidden in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "setTimeout(\"",
            "setInterval(\"",
            "DOMParser",
            "createContextualFragment",
            ".style",
            "setAttribute(\"style",
            "setAttribute(\"on",
            "http://",
            "https://",
        ] {
            assert!(!JS.contains(forbidden), "status.js uses {forbidden}");
        }
        assert!(
            JS.contains("textContent"),
            "status.js sets text with textContent"
        );
        assert!(JS.contains("\"use strict\""));
    }

    #[test]
    fn assets_reference_nothing_outside() {
        for (name, text) in [("css", CSS), ("favicon", FAVICON)] {
            assert!(!text.contains("url("), "{name} loads nothing");
            assert!(!text.contains("@import"), "{name} imports nothing");
        }
    }
}
