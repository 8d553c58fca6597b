//! The seam for the web console: ward-server knows only that something may serve the console
//! listener's pages (every path that is not `/healthz`, `/metrics` or the admin API). The
//! console itself (`ward-console`) lives in a crate of its own on top of `operations`, and the
//! `ward` binary hands it to [`crate::run_with`]; without one, those paths answer 404.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use hyper::body::Incoming;
use hyper::Request;

use crate::api::HttpResponse;
use crate::state::App;

/// A boxed future of a page's response.
pub type Answer<'a> = Pin<Box<dyn Future<Output = HttpResponse> + Send + 'a>>;

/// What serves the console listener's web pages.
pub trait WebConsole: Send + Sync + 'static {
    /// One request to a path of the console's (never `/api/v1/...`, `/metrics`, `/healthz`).
    fn serve<'a>(
        &'a self,
        app: &'a App,
        peer: SocketAddr,
        request: Request<Incoming>,
    ) -> Answer<'a>;
}
