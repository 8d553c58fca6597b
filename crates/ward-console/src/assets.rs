//! The console's static assets, embedded in the binary: one stylesheet, one script (optional
//! niceties; every page works without it). Served with a digest `ETag` and, under their
//! versioned URLs, cached for a year.

use std::sync::LazyLock;

use hyper::header::HeaderMap;
use ward_server::api::HttpResponse;

use crate::respond;

pub const CSS: &str = include_str!("../assets/console.css");
pub const JS: &str = include_str!("../assets/console.js");

fn digest(text: &str) -> String {
    ward_proto::encoding::sha256_hex(text)[..16].to_string()
}

static CSS_DIGEST: LazyLock<String> = LazyLock::new(|| digest(CSS));
static JS_DIGEST: LazyLock<String> = LazyLock::new(|| digest(JS));

/// The stylesheet's URL, versioned by its digest.
pub fn css_url() -> String {
    format!("/assets/console.css?v={}", *CSS_DIGEST)
}

/// The script's URL, versioned by its digest.
pub fn js_url() -> String {
    format!("/assets/console.js?v={}", *JS_DIGEST)
}

/// The asset at `path`, if there is one.
pub fn serve(path: &str, request: &HeaderMap) -> Option<HttpResponse> {
    match path {
        "/assets/console.css" => Some(respond::asset(
            request,
            "text/css; charset=utf-8",
            CSS,
            &CSS_DIGEST,
        )),
        "/assets/console.js" => Some(respond::asset(
            request,
            "text/javascript; charset=utf-8",
            JS,
            &JS_DIGEST,
        )),
        _ => None,
    }
}
