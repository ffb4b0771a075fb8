//! A run's metric histories for charts, downsampled on the server so that a metric of a
//! million points draws as fast as a short one.
//!
//! Downsampling is M4 (Jugel et al., "M4: A Visualization-Oriented Time Series Data
//! Aggregation", VLDB 2014): the points, in step order, are cut into equal buckets, and each
//! bucket keeps its first, last, lowest and highest point. A line drawn through what is kept
//! has the same extremes as the full line in every bucket — no spike is lost, which
//! averaging or plain LTTB cannot promise.
use axum::extract::{Path as UrlPath, Query, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::super::EndpointState;
use crate::store::Store;
use crate::util::m4;

/// The most points a series is drawn with, unless the page asks for fewer.
pub const MAX_POINTS: usize = 4000;

#[derive(Debug, Default, Deserialize)]
pub(in super::super) struct SeriesQuery {
    /// At most this many points per series (default and ceiling [`MAX_POINTS`]).
    points: Option<usize>,
    /// Only this metric.
    name: Option<String>,
}

/// `GET /runs/<id>/series`: every metric of the run (or `name`), downsampled:
/// `{"upto": <row id>, "series": [{"name", "total", "step": [], "value": [], "ts": []}]}`.
/// `upto` is where the run's event stream (`/runs/<id>/events?after=upto`) goes on from.
pub(in super::super) async fn series(
    State(ctx): State<EndpointState>,
    UrlPath(id): UrlPath<i64>,
    Query(q): Query<SeriesQuery>,
) -> Response {
    let state = ctx.state.clone();
    let max = q.points.unwrap_or(MAX_POINTS).clamp(4, MAX_POINTS);
    let got = tokio::task::spawn_blocking(move || {
        let s = Store::open(&state)?;
        // The high-water mark first: a point added while reading comes again as an event
        // rather than being missed.
        let upto = s.metrics_high_water()?;
        s.get(id)?;
        let names: Vec<String> = match q.name {
            Some(n) => vec![n],
            None => s.latest_metrics(id)?.into_iter().map(|m| m.name).collect(),
        };
        let mut out = Vec::new();
        for name in names {
            let pts = s.metric_points(id, &name)?;
            let values: Vec<f64> = pts.iter().map(|p| p.0).collect();
            let keep = m4(&values, max);
            out.push(json!({
                "name": name,
                "total": pts.len(),
                "step": keep.iter().map(|&i| pts[i].1).collect::<Vec<_>>(),
                "value": keep.iter().map(|&i| pts[i].0).collect::<Vec<_>>(),
                "ts": keep.iter().map(|&i| pts[i].2).collect::<Vec<_>>(),
            }));
        }
        Ok::<_, crate::error::LabError>(json!({"upto": upto, "series": out}))
    })
    .await;
    super::json_reply(got)
}
