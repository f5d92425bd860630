//! The live dashboard's listener (the seed's port 8501): the page's static assets plus the
//! same API routes on the same origin, so the page calls relative `/api/...` URLs and needs no
//! CORS.
//!
//! The assets are built by `scripts/build-web` into `web/dist` and embedded by rust-embed: a
//! release build carries them inside the binary (no CDN, works offline); a debug build reads
//! them from disk. When they were not built, `/` answers 503 with a page that says how to build
//! them, so `cargo build` never needs node.

use crate::auth::Access;
use crate::auth::routes::{RouteRule, Routes};
use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use rust_embed::Embed;

#[derive(Embed)]
#[folder = "../../web/dist"]
#[allow_missing = true]
struct Assets;

/// No inline script or style is allowed; uPlot styles its elements through the CSSOM, which a
/// CSP does not restrict.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; media-src 'self' data:; font-src 'self'; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const NOT_BUILT: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>VitalWatch dashboard not built</title></head><body>\
<h1>The VitalWatch dashboard has not been built</h1>\
<p>This binary was compiled without the dashboard's assets. From the repository root run \
<code>scripts/build-web</code> (needs Node.js and npm), then rebuild or restart \
<code>vitalwatch serve</code>. The REST API under <code>/api/</code> works meanwhile.</p>\
</body></html>";

/// The dashboard's routes: `/` and the bundle's files, merged with `api` (which keeps its
/// JSON 404 fallback for everything else).
pub fn app(api: Router, api_table: &[RouteRule]) -> (Router, Vec<RouteRule>) {
    let (page, mut table) = page_routes().into_parts();
    table.extend(api_table.iter().cloned());
    (page.merge(api), table)
}

/// The page and its assets: public, since the login form is part of the page.
pub fn page_routes() -> Routes<()> {
    Routes::new()
        .get("/", Access::Public, index)
        .get("/{file}", Access::Public, asset)
}

/// Whether the assets were built into (or beside) this binary.
pub fn assets_built() -> bool {
    Assets::get("index.html").is_some()
}

fn with_security_headers(mut response: Response, cache: &'static str) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

async fn index() -> Response {
    match Assets::get("index.html") {
        Some(file) => {
            with_security_headers(Html(file.data.into_owned()).into_response(), "no-cache")
        }
        None => with_security_headers(
            (StatusCode::SERVICE_UNAVAILABLE, Html(NOT_BUILT)).into_response(),
            "no-store",
        ),
    }
}

async fn asset(Path(file): Path<String>) -> Response {
    let Some(content) = Assets::get(&file) else {
        return crate::api_error::ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such file")
            .into_response();
    };
    let mime = content.metadata.mimetype().to_owned();
    let mut response = content.data.into_owned().into_response();
    if let Ok(value) = HeaderValue::from_str(&mime) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    // File names are stable across builds, so the browser revalidates rather than caches.
    with_security_headers(response, "no-cache")
}
