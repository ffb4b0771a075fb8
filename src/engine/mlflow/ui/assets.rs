//! What the dashboard's pages load besides themselves, all embedded in the binary: uPlot
//! (vendored at build time by `build.rs` from the npm registry, pinned by version and
//! sha512; MIT, its licence served beside it) and labhost's chart components
//! (`charts.js`). `labhost report` inlines the same files, so a sweep is drawn one way.
use axum::extract::Path as UrlPath;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// uPlot's minified script (the IIFE build: defines `uPlot`).
pub const UPLOT_JS: &str = include_str!(concat!(
    env!("OUT_DIR"),
    "/uplot/package/dist/uPlot.iife.min.js"
));
/// uPlot's stylesheet.
pub const UPLOT_CSS: &str = include_str!(concat!(
    env!("OUT_DIR"),
    "/uplot/package/dist/uPlot.min.css"
));
/// uPlot's licence (MIT), served at `/static/uPlot.LICENSE.txt`.
pub const UPLOT_LICENSE: &str = include_str!(concat!(env!("OUT_DIR"), "/uplot/package/LICENSE"));
/// labhost's chart components (`window.LH`).
pub const CHARTS_JS: &str = include_str!("charts.js");

/// The tags a page puts in its `<head>` to load the charts from the server.
pub const HEAD: &str = "<link rel=stylesheet href=\"/static/uPlot.min.css\">\
<script src=\"/static/uPlot.iife.min.js\"></script><script src=\"/static/labhost.js\"></script>";

/// The same, inlined (a page that stands alone: `labhost report`). The licence notice is kept.
pub fn inline_head() -> String {
    format!(
        "<style>{UPLOT_CSS}</style>\n<script>/*! uPlot (MIT licence, © Leon Sorokin): https://github.com/leeoniya/uPlot */\n{}</script>\n<script>{}</script>",
        UPLOT_JS.replace("</script", "<\\/script"),
        CHARTS_JS.replace("</script", "<\\/script")
    )
}

/// `GET /static/<name>`: the embedded files, cached by the browser for a day.
pub(in crate::engine::mlflow) async fn serve(UrlPath(name): UrlPath<String>) -> Response {
    let (body, kind) = match name.as_str() {
        "uPlot.iife.min.js" => (UPLOT_JS, "text/javascript; charset=utf-8"),
        "uPlot.min.css" => (UPLOT_CSS, "text/css; charset=utf-8"),
        "uPlot.LICENSE.txt" => (UPLOT_LICENSE, "text/plain; charset=utf-8"),
        "labhost.js" => (CHARTS_JS, "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such file").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "max-age=86400"),
        ],
        body,
    )
        .into_response()
}
