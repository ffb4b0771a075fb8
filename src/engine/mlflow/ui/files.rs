//! A run's files in the browser: its `outputs/` (what the job wrote, as Azure ML's
//! `./outputs`) and `artifacts/` (what MLflow clients logged), folder by folder, with a
//! preview of each file — text, JSON (pretty-printed), YAML, images, HTML (sandboxed), CSV
//! and TSV as a table.
//!
//! - `/runs/<id>/files/<outputs|artifacts>/<path>` — a folder's listing, or a file's preview;
//! - `/runs/<id>/raw/<outputs|artifacts>/<path>` — the file itself, streamed.
//!
//! Every path is resolved beneath its folder ([`crate::beneath::Root`]: no `..`, no
//! absolute path, no symlink leading out). What a run wrote is not trusted: raw files are
//! served with `Content-Security-Policy: sandbox` and `nosniff`, so an HTML or SVG file
//! cannot run script as the dashboard (where the token lives), and an HTML preview is an
//! `<iframe sandbox>`.
use std::io::Read;
use std::path::Path;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use super::super::EndpointState;
use super::{esc, fail, page};
use crate::beneath::{rel_path, Root};
use crate::store::Store;

/// The folders of a run that are browsed.
pub const ROOTS: [&str; 2] = ["outputs", "artifacts"];
/// The most of a file a preview reads.
const PREVIEW_BYTES: u64 = 1 << 20;
/// The most rows a CSV preview shows.
const PREVIEW_ROWS: usize = 1000;

/// What a file is shown as, by its extension.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Image,
    Html,
    Table(u8),
    Json,
    Text,
}

fn kind_of(name: &str) -> Kind {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("png" | "jpg" | "jpeg" | "gif" | "webp" | "svg" | "bmp") => Kind::Image,
        Some("html" | "htm") => Kind::Html,
        Some("csv") => Kind::Table(b','),
        Some("tsv") => Kind::Table(b'\t'),
        Some("json") => Kind::Json,
        _ => Kind::Text,
    }
}

/// The `Content-Type` a raw file is served with.
fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("svg") => "image/svg+xml",
        Some("bmp") => "image/bmp",
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("json") => "application/json",
        Some("csv") => "text/csv; charset=utf-8",
        Some("pdf") => "application/pdf",
        Some("txt" | "log" | "yaml" | "yml" | "md" | "py" | "sh" | "toml" | "jsonl" | "tsv") => {
            "text/plain; charset=utf-8"
        }
        _ => "application/octet-stream",
    }
}

/// `<root>/<rel>` of a URL, checked: the root one of [`ROOTS`], `rel` relative and
/// normalised. Else why not (a 400).
fn split(path: &str) -> Result<(&'static str, String), String> {
    let (top, rest) = path.split_once('/').unwrap_or((path, ""));
    let root = ROOTS
        .iter()
        .find(|r| **r == top)
        .ok_or_else(|| format!("'{top}' is not a run folder that is shown (outputs, artifacts)"))?;
    Ok((root, rel_path(rest)?))
}

/// Why a request is refused: its status and message (a page made by [`fail`]).
type Refused = (StatusCode, String);

fn refused((status, why): Refused) -> Response {
    fail(status, &why)
}

/// The run's folder `root`, opened (None when the run never made it).
fn open_root(state: &Path, id: i64, root: &str) -> Result<Option<Root>, Refused> {
    let run = Store::open(state)
        .and_then(|s| s.get(id))
        .map_err(|e| (StatusCode::NOT_FOUND, e.message))?;
    if run.run_dir.is_empty() {
        return Ok(None);
    }
    Ok(Root::open(&Path::new(&run.run_dir).join(root), false).ok())
}

fn io_fail(rel: &str, e: std::io::Error) -> Refused {
    if crate::beneath::is_escape(&e) {
        (
            StatusCode::BAD_REQUEST,
            format!("'{rel}' leads out of the run's folder (a symlink)"),
        )
    } else if e.kind() == std::io::ErrorKind::NotFound {
        (StatusCode::NOT_FOUND, format!("no file '{rel}'"))
    } else {
        (StatusCode::INTERNAL_SERVER_ERROR, format!("{rel}: {e}"))
    }
}

/// A folder's entries as table rows linking to their pages (folders first).
pub(super) fn listing(
    h: &mut String,
    id: i64,
    root: &str,
    rel: &str,
    entries: &[crate::beneath::Entry],
) {
    let mut sorted: Vec<&crate::beneath::Entry> = entries.iter().collect();
    sorted.sort_by_key(|e| !e.is_dir);
    for e in sorted {
        let p = if rel.is_empty() {
            e.name.clone()
        } else {
            format!("{rel}/{}", e.name)
        };
        let href = format!(
            "/runs/{id}/files/{root}/{}",
            crate::util::percent_encode_path(&p)
        );
        if e.is_dir {
            h.push_str(&format!(
                "<tr class=dir><td><a href=\"{href}\">{}/</a></td><td></td></tr>",
                esc(&e.name)
            ));
        } else {
            h.push_str(&format!(
                "<tr class=file><td><a href=\"{href}\">{}</a></td><td>{}</td></tr>",
                esc(&e.name),
                size(e.size)
            ));
        }
    }
}

/// The run page's "Files" section: the top of each folder that has anything.
pub(super) fn section(id: i64, run_dir: &str) -> String {
    let mut h = String::new();
    if run_dir.is_empty() {
        return h;
    }
    for root in ROOTS {
        let Ok(r) = Root::open(&Path::new(run_dir).join(root), false) else {
            continue;
        };
        let entries = r.list("").unwrap_or_default();
        if entries.is_empty() {
            continue;
        }
        h.push_str(&format!(
            "<h3>{root}</h3><table class=files data-root={root}>"
        ));
        listing(&mut h, id, root, "", &entries);
        h.push_str("</table>");
    }
    if h.is_empty() {
        return h;
    }
    format!("<h2>Files</h2>{h}")
}

fn size(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// Links to each folder above `rel`.
fn crumbs(id: i64, root: &str, rel: &str) -> String {
    let mut h = format!(
        "<a href=\"/runs/{id}\">run {id}</a> / <a href=\"/runs/{id}/files/{root}\">{root}</a>"
    );
    let mut at = String::new();
    for c in rel.split('/').filter(|c| !c.is_empty()) {
        if !at.is_empty() {
            at.push('/');
        }
        at.push_str(c);
        h.push_str(&format!(
            " / <a href=\"/runs/{id}/files/{root}/{}\">{}</a>",
            crate::util::percent_encode_path(&at),
            esc(c)
        ));
    }
    h
}

/// `GET /runs/<id>/files/<root>/<path>`: a folder's listing or a file's preview.
pub(in super::super) async fn files_in(
    State(ctx): State<EndpointState>,
    UrlPath((id, root, path)): UrlPath<(i64, String, String)>,
) -> Response {
    files(ctx, id, format!("{root}/{path}")).await
}

/// `GET /runs/<id>/files/<root>`: the folder's top.
pub(in super::super) async fn files_top(
    State(ctx): State<EndpointState>,
    UrlPath((id, root)): UrlPath<(i64, String)>,
) -> Response {
    files(ctx, id, root).await
}

async fn files(ctx: EndpointState, id: i64, path: String) -> Response {
    let (root, rel) = match split(&path) {
        Ok(x) => x,
        Err(why) => return fail(StatusCode::BAD_REQUEST, &why),
    };
    let state = ctx.state.clone();
    tokio::task::spawn_blocking(move || show(&state, id, root, &rel))
        .await
        .unwrap_or_else(|e| fail(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))
}

fn show(state: &Path, id: i64, root: &'static str, rel: &str) -> Response {
    let dir = match open_root(state, id, root) {
        Ok(Some(d)) => d,
        Ok(None) if rel.is_empty() => {
            let h = format!("<p>{}</p><p>Nothing here.</p>", crumbs(id, root, rel));
            return Html(page(&format!("run {id} {root}"), &h)).into_response();
        }
        Ok(None) => return fail(StatusCode::NOT_FOUND, &format!("no file '{rel}'")),
        Err(r) => return refused(r),
    };
    let title = format!("run {id} {root}/{rel}");
    let mut h = format!("<p id=crumbs>{}</p>", crumbs(id, root, rel));
    if rel.is_empty() || dir.is_dir(rel) {
        let entries = match dir.list(rel) {
            Ok(e) => e,
            Err(e) => return refused(io_fail(rel, e)),
        };
        h.push_str("<table id=listing>");
        listing(&mut h, id, root, rel, &entries);
        h.push_str("</table>");
        if entries.is_empty() {
            h.push_str("<p>Nothing here.</p>");
        }
        return Html(page(&title, &h)).into_response();
    }
    let (head, total) = match read_head(&dir, rel) {
        Ok(x) => x,
        Err(e) => return refused(io_fail(rel, e)),
    };
    let raw = format!(
        "/runs/{id}/raw/{root}/{}",
        crate::util::percent_encode_path(rel)
    );
    h.push_str(&format!(
        "<p>{} · <a id=download href=\"{raw}\" download>download</a></p>",
        size(total)
    ));
    let cut = total > head.len() as u64;
    let shown = preview(kind_of(rel), &head, cut, &raw);
    h.push_str(&shown);
    Html(page(&title, &h)).into_response()
}

/// The first [`PREVIEW_BYTES`] of a file, and its whole length.
fn read_head(dir: &Root, rel: &str) -> std::io::Result<(Vec<u8>, u64)> {
    let f = dir.file(rel)?;
    let total = f.metadata()?.len();
    let mut buf = Vec::new();
    f.take(PREVIEW_BYTES).read_to_end(&mut buf)?;
    Ok((buf, total))
}

/// `bytes` as UTF-8 text; a character cut at the end of a partial read is dropped. None for
/// a binary file.
fn as_text(bytes: &[u8], cut: bool) -> Option<&str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Some(s),
        Err(e) if cut && e.error_len().is_none() => {
            std::str::from_utf8(&bytes[..e.valid_up_to()]).ok()
        }
        Err(_) => None,
    }
    .filter(|s| !s.contains('\0'))
}

/// The preview of a file of `kind` whose first bytes are `head` (`cut`: there is more).
fn preview(kind: Kind, head: &[u8], cut: bool, raw: &str) -> String {
    let more = if cut {
        format!(
            "<p class=cut>The first {} are shown.</p>",
            size(head.len() as u64)
        )
    } else {
        String::new()
    };
    match kind {
        Kind::Image => format!("<p><img id=preview src=\"{raw}\" alt=\"\" style=\"max-width:100%\"></p>"),
        Kind::Html => format!(
            "<iframe id=preview sandbox src=\"{raw}\" style=\"width:100%;height:70vh;border:1px solid #ccc\"></iframe>"
        ),
        Kind::Table(sep) => match as_text(head, cut) {
            Some(t) => table(t, sep, cut) + more.as_str(),
            None => binary(),
        },
        Kind::Json if !cut => match serde_json::from_slice::<serde_json::Value>(head) {
            Ok(v) => format!(
                "<pre id=preview class=json>{}</pre>",
                esc(&serde_json::to_string_pretty(&v).unwrap_or_default())
            ),
            // serde_json's message ends "at line L column C".
            Err(e) => format!(
                "<p class=err>not valid JSON: {}</p>{}",
                esc(&e.to_string()),
                text(head, cut)
            ),
        },
        Kind::Json | Kind::Text => text(head, cut) + more.as_str(),
    }
}

fn binary() -> String {
    "<p id=preview class=binary>A binary file: download it to look inside.</p>".into()
}

fn text(head: &[u8], cut: bool) -> String {
    match as_text(head, cut) {
        Some(t) => format!("<pre id=preview>{}</pre>", esc(t)),
        None => binary(),
    }
}

/// A CSV (or TSV) as an HTML table: the first row is the header; rows may differ in length.
fn table(t: &str, sep: u8, cut: bool) -> String {
    let mut rd = csv::ReaderBuilder::new()
        .delimiter(sep)
        .has_headers(false)
        .flexible(true)
        .from_reader(t.as_bytes());
    let mut rows: Vec<csv::StringRecord> = Vec::new();
    for rec in rd.records() {
        match rec {
            Ok(r) => rows.push(r),
            // A partial read ends mid-row; a whole file that does not parse is shown as text.
            Err(_) if cut => break,
            Err(e) => {
                return format!(
                    "<p class=err>not valid CSV: {}</p><pre id=preview>{}</pre>",
                    esc(&e.to_string()),
                    esc(t)
                )
            }
        }
        if rows.len() > PREVIEW_ROWS {
            break;
        }
    }
    if cut && !rows.is_empty() {
        // The last row may be cut short.
        rows.pop();
    }
    let mut h = String::from("<table id=preview class=csv>");
    for (i, r) in rows.iter().take(PREVIEW_ROWS + 1).enumerate() {
        let cell = if i == 0 { "th" } else { "td" };
        h.push_str("<tr>");
        for f in r.iter() {
            h.push_str(&format!("<{cell}>{}</{cell}>", esc(f)));
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
    if rows.len() > PREVIEW_ROWS {
        h.push_str(&format!(
            "<p class=cut>The first {PREVIEW_ROWS} rows are shown.</p>"
        ));
    }
    h
}

/// `GET /runs/<id>/raw/<root>/<path>`: the file, streamed, sandboxed.
pub(in super::super) async fn raw(
    State(ctx): State<EndpointState>,
    UrlPath((id, root, path)): UrlPath<(i64, String, String)>,
) -> Response {
    let (root, rel) = match split(&format!("{root}/{path}")) {
        Ok(x) => x,
        Err(why) => return fail(StatusCode::BAD_REQUEST, &why),
    };
    let state = ctx.state.clone();
    let rel2 = rel.clone();
    let opened = tokio::task::spawn_blocking(move || {
        let dir = match open_root(&state, id, root)? {
            Some(d) => d,
            None => return Err((StatusCode::NOT_FOUND, format!("no file '{rel2}'"))),
        };
        let f = dir.file(&rel2).map_err(|e| io_fail(&rel2, e))?;
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        Ok((f, len))
    })
    .await;
    let (f, len) = match opened {
        Ok(Ok(x)) => x,
        Ok(Err(r)) => return refused(r),
        Err(e) => return fail(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(
        tokio::fs::File::from_std(f),
    ));
    (
        [
            (header::CONTENT_TYPE, content_type(&rel).to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
            (header::CONTENT_SECURITY_POLICY, "sandbox".to_string()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_two_folders_and_no_climbing() {
        assert_eq!(
            split("outputs/a/b.txt").unwrap(),
            ("outputs", "a/b.txt".into())
        );
        assert_eq!(split("artifacts").unwrap(), ("artifacts", String::new()));
        assert!(split("logs/x").is_err());
        assert!(split("outputs/../stdout.log").is_err());
        assert!(split("../outputs").is_err());
    }

    #[test]
    fn previews_by_kind() {
        let t = preview(Kind::Table(b','), b"a,b\n1,\"x,y\"\n2,3,4\n", false, "r");
        assert!(t.contains("<th>a</th><th>b</th>"), "{t}");
        assert!(t.contains("<td>x,y</td>"), "{t}");
        assert!(t.contains("<td>4</td>"), "{t}");
        let j = preview(Kind::Json, br#"{"a":[1,2]}"#, false, "r");
        assert!(j.contains("&quot;a&quot;: [\n"), "{j}");
        let bad = preview(Kind::Json, b"{\"a\":\n nope}", false, "r");
        assert!(
            bad.contains("not valid JSON: expected ident at line 2 column 3"),
            "{bad}"
        );
        let b = preview(Kind::Text, b"\x00\xff\x01", false, "r");
        assert!(b.contains("binary"), "{b}");
        // A multi-byte character cut by a partial read is dropped, not a reason to call it binary.
        let cut = preview(Kind::Text, "ab\u{e9}".as_bytes().split_at(3).0, true, "r");
        assert!(cut.contains("<pre id=preview>ab</pre>"), "{cut}");
        let h = preview(Kind::Html, b"<script>x</script>", false, "/raw");
        assert!(h.contains("<iframe id=preview sandbox src=\"/raw\""), "{h}");
    }
}
