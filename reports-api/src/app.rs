//! The patient web app: static files compiled into the binary and served under `/app/`.
//!
//! The app is plain HTML, CSS and JavaScript in `reports-api/app/` (no build step; uPlot is
//! vendored as its released minified file). It calls the same `/v1/me/*` endpoints as any other
//! client, with the bearer token it keeps in `sessionStorage`. Every file is answered with a
//! strict Content-Security-Policy: only this origin's scripts, styles and API, no inline script
//! or style, no framing, no forms, so that text from a report can never run as code.

use bytes::Bytes;
use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderValue, LOCATION, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use service_plumbing::http::{HttpResponse, RequestContext, RouteError, Router};
use service_plumbing::problem::Problem;

/// The policy of every app response: scripts, styles, images and API calls from this origin
/// only; no inline script or style attribute, no `<base>`, no form posts, no framing.
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The app's files: name under `/app/`, media type, content. The name is looked up in this
/// table, so no request path ever reaches the file system.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../app/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../app/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../app/app.css"),
    ),
    (
        "vendor/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../app/vendor/uPlot.iife.min.js"),
    ),
    (
        "vendor/uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../app/vendor/uPlot.min.css"),
    ),
];

/// Adds `GET /app` (a redirect), `GET /app/` (the page) and `GET /app/{*file}`.
pub fn routes(router: &mut Router) -> Result<(), RouteError> {
    router.route(
        Method::GET,
        "/app",
        |_: Request<Incoming>, _: RequestContext| async {
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
            response
                .headers_mut()
                .insert(LOCATION, HeaderValue::from_static("/app/"));
            response
        },
    )?;
    router.route(
        Method::GET,
        "/app/",
        |_: Request<Incoming>, _: RequestContext| async { file("index.html") },
    )?;
    router.route(
        Method::GET,
        "/app/{*file}",
        |_: Request<Incoming>, context: RequestContext| async move {
            file(context.param("file").unwrap_or_default())
        },
    )?;
    Ok(())
}

/// The named file with the app's security headers, or a `404` problem.
fn file(name: &str) -> HttpResponse {
    let Some((_, media_type, content)) = FILES.iter().find(|(known, _, _)| *known == name) else {
        return Problem::not_found("no such file in the app").into_response();
    };
    let mut response = Response::new(Full::new(Bytes::from_static(content)));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(media_type));
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE),
    );
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // The files hold no data; revalidating keeps a new release from mixing with an old one.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
