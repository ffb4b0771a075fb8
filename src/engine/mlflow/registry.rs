//! The model registry over the same store: registered models (tags, description, aliases)
//! and their versions (from runs or logged models; tags, stages, descriptions). Each
//! registered model is one document holding its versions; deleted versions are removed.
use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::*;
use crate::store::mlflow::{LOGGED_MODEL, REGISTERED_MODEL};
use crate::store::search::{DocFilter, DocVal};

fn now_ms() -> i64 {
    (crate::clock::unix() * 1000.0) as i64
}

/// Fields of a request: the JSON body, or the query string of GET and DELETE calls.
pub(super) struct Req(Value);

impl Req {
    fn text(&self, k: &str) -> Option<String> {
        match self.0.get(k) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        }
    }
    fn need(&self, k: &str) -> Result<String, ApiError> {
        self.text(k)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid(format!("Missing value for required parameter '{k}'.")))
    }
}

/// Body and query merged (the client sends DELETE parameters as a JSON body, GET ones in
/// the query string).
fn req(q: HashMap<String, String>, body: &[u8]) -> Result<Req, ApiError> {
    let mut v = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice::<Value>(body)
            .map_err(|e| invalid(format!("Malformed JSON body: {e}")))?
    };
    for (k, x) in q {
        if v.get(&k).is_none() {
            v[k] = json!(x);
        }
    }
    Ok(Req(v))
}

type Q = Query<HashMap<String, String>>;

fn not_found(name: &str) -> ApiError {
    missing(format!("Registered Model with name={name} not found"))
}

fn get_rm(s: &Store, name: &str) -> Result<Value, ApiError> {
    s.doc(REGISTERED_MODEL, name)
        .map_err(internal)?
        .ok_or_else(|| not_found(name))
}

fn put_rm(s: &mut Store, rm: &mut Value) -> Result<(), ApiError> {
    rm["last_updated_timestamp"] = json!(now_ms());
    let name = rm["name"].as_str().unwrap_or_default().to_string();
    s.put_doc(REGISTERED_MODEL, &name, rm).map_err(internal)
}

fn versions(rm: &Value) -> Vec<Value> {
    rm["versions"].as_array().cloned().unwrap_or_default()
}

/// A version as the API shows it: with its aliases.
fn version_json(rm: &Value, v: &Value) -> Value {
    let mut v = v.clone();
    let aliases: Vec<Value> = rm["aliases"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["version"] == v["version"])
        .map(|a| a["alias"].clone())
        .collect();
    if !aliases.is_empty() {
        v["aliases"] = Value::Array(aliases);
    }
    v
}

/// The latest version in each stage.
fn latest(rm: &Value, stages: &[String]) -> Vec<Value> {
    let mut by_stage: HashMap<String, Value> = HashMap::new();
    for v in versions(rm) {
        let stage = v["current_stage"].as_str().unwrap_or("None").to_string();
        let n = |x: &Value| {
            x["version"]
                .as_str()
                .and_then(|s| s.parse::<i64>().ok())
                .unwrap_or(0)
        };
        if by_stage.get(&stage).is_none_or(|cur| n(&v) > n(cur)) {
            by_stage.insert(stage, v);
        }
    }
    let mut out: Vec<Value> = by_stage
        .into_iter()
        .filter(|(st, _)| stages.is_empty() || stages.iter().any(|x| x.eq_ignore_ascii_case(st)))
        .map(|(_, v)| version_json(rm, &v))
        .collect();
    out.sort_by_key(|v| {
        v["version"]
            .as_str()
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or(0)
    });
    out
}

/// A registered model as the API shows it.
fn rm_json(rm: &Value) -> Value {
    let mut o = json!({});
    for k in [
        "name",
        "creation_timestamp",
        "last_updated_timestamp",
        "description",
        "tags",
        "aliases",
    ] {
        if let Some(v) = rm.get(k).filter(|v| !v.is_null() && *v != &json!([])) {
            o[k] = v.clone();
        }
    }
    let l = latest(rm, &[]);
    if !l.is_empty() {
        o["latest_versions"] = Value::Array(l);
    }
    o
}

fn tag_list(v: Option<&Value>) -> Result<Vec<Value>, ApiError> {
    v.and_then(|x| x.as_array())
        .into_iter()
        .flatten()
        .map(|t| kv(t, "Tag", 5000).map(|(k, v)| json!({"key": k, "value": v})))
        .collect()
}

fn set_pair(list: &mut Value, key: &str, value: Value) {
    let mut cur = list.as_array().cloned().unwrap_or_default();
    cur.retain(|t| t["key"] != json!(key));
    cur.push(json!({"key": key, "value": value}));
    *list = Value::Array(cur);
}

fn remove_pair(list: &mut Value, key: &str) -> bool {
    let cur = list.as_array().cloned().unwrap_or_default();
    let n = cur.len();
    let kept: Vec<Value> = cur.into_iter().filter(|t| t["key"] != json!(key)).collect();
    let removed = kept.len() < n;
    *list = Value::Array(kept);
    removed
}

pub(super) async fn rm_create(State(ctx): State<EndpointState>, q: Q, body: Bytes) -> ApiResult {
    let r = req(q.0, &body)?;
    let name = r.need("name")?;
    let tags = tag_list(r.0.get("tags"))?;
    let description = r.text("description");
    store(&ctx, move |s| {
        if s.doc(REGISTERED_MODEL, &name).map_err(internal)?.is_some() {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "RESOURCE_ALREADY_EXISTS",
                format!("Registered Model (name={name}) already exists."),
            ));
        }
        let t = now_ms();
        let rm = json!({"name": name, "creation_timestamp": t, "last_updated_timestamp": t,
                            "description": description.unwrap_or_default(), "tags": tags,
                            "aliases": [], "versions": [], "next_version": 1});
        let mut rm = rm;
        put_rm(s, &mut rm)?;
        Ok(Json(json!({"registered_model": rm_json(&rm)})))
    })
    .await
}

/// Reads a registered model, changes it with `f`, stores it; `f` gives the answer.
async fn change(
    ctx: &EndpointState,
    name: String,
    f: impl FnOnce(&mut Value, &mut Store) -> Result<Value, ApiError> + Send + 'static,
) -> ApiResult {
    store(ctx, move |s| {
        let mut rm = get_rm(s, &name)?;
        let out = f(&mut rm, s)?;
        put_rm(s, &mut rm)?;
        Ok(Json(out))
    })
    .await
}

pub(super) async fn rm_get(State(ctx): State<EndpointState>, q: Q, body: Bytes) -> ApiResult {
    let name = req(q.0, &body)?.need("name")?;
    store(&ctx, move |s| {
        Ok(Json(
            json!({"registered_model": rm_json(&get_rm(s, &name)?)}),
        ))
    })
    .await
}

pub(super) async fn rm_update(State(ctx): State<EndpointState>, q: Q, body: Bytes) -> ApiResult {
    let r = req(q.0, &body)?;
    let name = r.need("name")?;
    let d = r.text("description");
    change(&ctx, name, move |rm, _| {
        if let Some(d) = d {
            rm["description"] = json!(d);
        }
        Ok(json!({"registered_model": rm_json(rm)}))
    })
    .await
}

pub(super) async fn rm_rename(State(ctx): State<EndpointState>, q: Q, body: Bytes) -> ApiResult {
    let r = req(q.0, &body)?;
    let (name, new) = (r.need("name")?, r.need("new_name")?);
    store(&ctx, move |s| {
        let mut rm = get_rm(s, &name)?;
        if s.doc(REGISTERED_MODEL, &new).map_err(internal)?.is_some() {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "RESOURCE_ALREADY_EXISTS",
                format!("Registered Model (name={new}) already exists."),
            ));
        }
        rm["name"] = json!(new);
        let vs: Vec<Value> = versions(&rm)
            .into_iter()
            .map(|mut v| {
                v["name"] = json!(new);
                v
            })
            .collect();
        rm["versions"] = Value::Array(vs);
        s.delete_doc(REGISTERED_MODEL, &name).map_err(internal)?;
        put_rm(s, &mut rm)?;
        Ok(Json(json!({"registered_model": rm_json(&rm)})))
    })
    .await
}

pub(super) async fn rm_delete(State(ctx): State<EndpointState>, q: Q, body: Bytes) -> ApiResult {
    let name = req(q.0, &body)?.need("name")?;
    store(&ctx, move |s| {
        get_rm(s, &name)?;
        s.delete_doc(REGISTERED_MODEL, &name).map_err(internal)?;
        Ok(Json(json!({})))
    })
    .await
}

/// The value of tag `key` in a `[{"key", "value"}]` list.
fn tag_value(tags: &Value, key: &str) -> Option<DocVal> {
    tags.as_array()
        .into_iter()
        .flatten()
        .find(|t| t["key"] == json!(key))
        .and_then(|t| t["value"].as_str())
        .map(|s| DocVal::Text(s.into()))
}

fn rm_value(rm: &Value, kind: &str, key: &str) -> Option<DocVal> {
    match kind {
        "tags" => tag_value(&rm["tags"], key),
        _ => match key {
            "name" => rm["name"].as_str().map(|s| DocVal::Text(s.into())),
            "creation_timestamp" | "last_updated_timestamp" => rm[key].as_f64().map(DocVal::Num),
            _ => None,
        },
    }
}

fn page<T: Clone>(
    items: Vec<T>,
    r: &Req,
    default_max: usize,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let max = r
        .text("max_results")
        .and_then(|m| m.parse::<usize>().ok())
        .unwrap_or(default_max);
    let offset = match r.text("page_token").filter(|t| !t.is_empty()) {
        Some(t) => offset_of(&t)?,
        None => 0,
    };
    let total = items.len();
    let next = (offset + max < total).then(|| token_of(offset + max));
    Ok((items.into_iter().skip(offset).take(max).collect(), next))
}

/// `order_by` of a registry search: `name`, `creation_timestamp`, `last_updated_timestamp`
/// (and `version_number` for versions), ASC or DESC.
fn sort_by_order(items: &mut [Value], order: &[String], default: &str) {
    let terms: Vec<(String, bool)> = if order.is_empty() {
        vec![default.to_string()]
    } else {
        order.to_vec()
    }
    .iter()
    .map(|t| {
        let mut w = t.split_whitespace();
        let k = w.next().unwrap_or("name").to_string();
        (k, !w.next().is_some_and(|d| d.eq_ignore_ascii_case("DESC")))
    })
    .collect();
    items.sort_by(|a, b| {
        for (k, asc) in &terms {
            let c = match k.as_str() {
                "version_number" => {
                    let n = |x: &Value| {
                        x["version"]
                            .as_str()
                            .and_then(|s| s.parse::<i64>().ok())
                            .unwrap_or(0)
                    };
                    n(a).cmp(&n(b))
                }
                "name" => a["name"].as_str().cmp(&b["name"].as_str()),
                k => a[k].as_i64().cmp(&b[k].as_i64()),
            };
            let c = if *asc { c } else { c.reverse() };
            if c != std::cmp::Ordering::Equal {
                return c;
            }
        }
        std::cmp::Ordering::Equal
    });
}

fn order_list(q: &HashMap<String, String>, r: &Req) -> Vec<String> {
    match r.0.get("order_by") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => q.get("order_by").cloned().into_iter().collect(),
    }
}

pub(super) async fn rm_search(State(ctx): State<EndpointState>, q: Q, body: Bytes) -> ApiResult {
    let order = {
        let r = req(q.0.clone(), &body)?;
        order_list(&q.0, &r)
    };
    let r = req(q.0, &body)?;
    let filter = DocFilter::parse(
        &r.text("filter").unwrap_or_default(),
        |kind, key| kind == "attributes" && key.ends_with("timestamp"),
        |key| ["name", "creation_timestamp", "last_updated_timestamp"].contains(&key),
    )
    .map_err(|e| invalid(e.message))?;
    store(&ctx, move |s| {
        let mut all: Vec<Value> = s
            .docs(REGISTERED_MODEL)
            .map_err(internal)?
            .into_iter()
            .map(|(_, rm)| rm)
            .filter(|rm| filter.matches_with(|kind, key| rm_value(rm, kind, key), true))
            .collect();
        sort_by_order(&mut all, &order, "name ASC");
        let (items, next) = page(all, &r, 100)?;
        let mut out = json!({"registered_models": items.iter().map(rm_json).collect::<Vec<_>>()});
        if let Some(n) = next {
            out["next_page_token"] = json!(n);
        }
        Ok(Json(out))
    })
    .await
}

pub(super) async fn rm_latest(State(ctx): State<EndpointState>, q: Q, body: Bytes) -> ApiResult {
    let r = req(q.0, &body)?;
    let name = r.need("name")?;
    let stages: Vec<String> = r.0["stages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect();
    store(&ctx, move |s| {
        let rm = get_rm(s, &name)?;
        Ok(Json(json!({"model_versions": latest(&rm, &stages)})))
    })
    .await
}

pub(super) async fn rm_set_tag(State(ctx): State<EndpointState>, q: Q, body: Bytes) -> ApiResult {
    let r = req(q.0, &body)?;
    let name = r.need("name")?;
    let (k, v) = kv(&r.0, "Tag", 5000)?;
    change(&ctx, name, move |rm, _| {
        set_pair(&mut rm["tags"], &k, json!(v));
        Ok(json!({}))
    })
    .await
}

pub(super) async fn rm_delete_tag(
    State(ctx): State<EndpointState>,
    q: Q,
    body: Bytes,
) -> ApiResult {
    let r = req(q.0, &body)?;
    let (name, k) = (r.need("name")?, r.need("key")?);
    change(&ctx, name, move |rm, _| {
        remove_pair(&mut rm["tags"], &k);
        Ok(json!({}))
    })
    .await
}

fn version_of(rm: &Value, version: &str) -> Result<Value, ApiError> {
    versions(rm)
        .into_iter()
        .find(|v| v["version"] == json!(version))
        .ok_or_else(|| {
            missing(format!(
                "Model Version (name={}, version={version}) not found",
                rm["name"].as_str().unwrap_or_default()
            ))
        })
}

fn set_version(rm: &mut Value, v: Value) {
    let vs: Vec<Value> = versions(rm)
        .into_iter()
        .map(|x| {
            if x["version"] == v["version"] {
                v.clone()
            } else {
                x
            }
        })
        .collect();
    rm["versions"] = Value::Array(vs);
}

pub(super) async fn mv_create(State(ctx): State<EndpointState>, q: Q, body: Bytes) -> ApiResult {
    let r = req(q.0, &body)?;
    let name = r.need("name")?;
    let source = r.need("source")?;
    let tags = tag_list(r.0.get("tags"))?;
    let (run_id, model_id, description, run_link) = (
        r.text("run_id"),
        r.text("model_id"),
        r.text("description"),
        r.text("run_link"),
    );
    change(&ctx, name.clone(), move |rm, s| {
        let n = rm["next_version"].as_i64().unwrap_or(1);
        rm["next_version"] = json!(n + 1);
        let t = now_ms();
        // The logged model a version is of: the request's, or the one its source names.
        let logged = model_id.clone().filter(|m| !m.is_empty()).or_else(|| {
            source
                .strip_prefix("models:/m-")
                .map(|rest| format!("m-{}", rest.split('/').next().unwrap_or_default()))
        });
        // A version of a logged model is from the run that logged it.
        let run_id = run_id.filter(|r| !r.is_empty()).or_else(|| {
            let m = get_model(s, logged.as_deref()?, true).ok()?;
            m["info"]["source_run_id"].as_str().map(str::to_string)
        });
        let mut v = json!({"name": name, "version": n.to_string(), "creation_timestamp": t,
                           "last_updated_timestamp": t, "current_stage": "None", "source": source,
                           "status": "READY", "description": description.unwrap_or_default(),
                           "run_link": run_link.unwrap_or_default(), "user_id": ""});
        for (k, x) in [("run_id", run_id), ("model_id", model_id.clone())] {
            if let Some(x) = x.filter(|x| !x.is_empty()) {
                v[k] = json!(x);
            }
        }
        if !tags.is_empty() {
            v["tags"] = json!(tags);
        }
        let mut list = versions(rm);
        list.push(v.clone());
        rm["versions"] = Value::Array(list);
        // The logged model records where it was registered, as MLflow's does.
        if let Some(mid) = logged {
            if let Ok(mut m) = get_model(s, &mid, false) {
                let mut regs = m["info"]["registrations"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                regs.push(json!({"name": name, "version": n.to_string()}));
                m["info"]["registrations"] = Value::Array(regs);
                add_model_version_tag(&mut m, &name, n);
                s.put_doc(LOGGED_MODEL, &mid, &m).map_err(internal)?;
            }
        }
        Ok(json!({"model_version": v}))
    })
    .await
}

/// The logged model's `mlflow.modelVersions` tag gets `{"name": …, "version": n}` (the
/// server's entry, version as a number, written as Python's `json.dumps` writes it: the
/// client then appends its own with the version as text).
fn add_model_version_tag(m: &mut Value, name: &str, version: i64) {
    const KEY: &str = "mlflow.modelVersions";
    let mut tags = m["info"]["tags"].as_array().cloned().unwrap_or_default();
    let cur = tags
        .iter()
        .find(|t| t["key"] == KEY)
        .and_then(|t| t["value"].as_str())
        .and_then(|v| serde_json::from_str::<Vec<Value>>(v).ok())
        .unwrap_or_default();
    let mut items: Vec<String> = cur
        .iter()
        .map(|e| format!("{{\"name\": {}, \"version\": {}}}", e["name"], e["version"]))
        .collect();
    items.push(format!(
        "{{\"name\": {}, \"version\": {version}}}",
        json!(name)
    ));
    tags.retain(|t| t["key"] != KEY);
    tags.push(json!({"key": KEY, "value": format!("[{}]", items.join(", "))}));
    m["info"]["tags"] = Value::Array(tags);
}

/// Changes one version with `f`; answers `{"model_version": …}` unless `f` answers itself.
async fn change_version(
    ctx: &EndpointState,
    r: Req,
    f: impl FnOnce(&mut Value, &mut Value) -> Result<Option<Value>, ApiError> + Send + 'static,
) -> ApiResult {
    let (name, version) = (r.need("name")?, r.need("version")?);
    change(ctx, name, move |rm, _| {
        let mut v = version_of(rm, &version)?;
        let answer = f(rm, &mut v)?;
        v["last_updated_timestamp"] = json!(now_ms());
        set_version(rm, v.clone());
        Ok(answer.unwrap_or_else(|| json!({"model_version": version_json(rm, &v)})))
    })
    .await
}

pub(super) async fn mv_get(State(ctx): State<EndpointState>, q: Q, body: Bytes) -> ApiResult {
    let r = req(q.0, &body)?;
    let (name, version) = (r.need("name")?, r.need("version")?);
    store(&ctx, move |s| {
        let rm = get_rm(s, &name)?;
        Ok(Json(
            json!({"model_version": version_json(&rm, &version_of(&rm, &version)?)}),
        ))
    })
    .await
}

pub(super) async fn mv_update(State(ctx): State<EndpointState>, q: Q, body: Bytes) -> ApiResult {
    let r = req(q.0, &body)?;
    let d = r.text("description");
    change_version(&ctx, r, move |_, v| {
        if let Some(d) = d {
            v["description"] = json!(d);
        }
        Ok(None)
    })
    .await
}

pub(super) async fn mv_transition(
    State(ctx): State<EndpointState>,
    q: Q,
    body: Bytes,
) -> ApiResult {
    let r = req(q.0, &body)?;
    let stage = r.need("stage")?;
    let stage = ["None", "Staging", "Production", "Archived"]
        .into_iter()
        .find(|s| s.eq_ignore_ascii_case(&stage))
        .ok_or_else(|| invalid(format!("Invalid Model Version stage: {stage}. Value must be one of None, Staging, Production, Archived.")))?
        .to_string();
    let archive = r.0["archive_existing_versions"].as_bool().unwrap_or(false);
    change_version(&ctx, r, move |rm, v| {
        v["current_stage"] = json!(stage);
        if archive && (stage == "Staging" || stage == "Production") {
            let vs: Vec<Value> = versions(rm)
                .into_iter()
                .map(|mut x| {
                    if x["version"] != v["version"] && x["current_stage"] == json!(stage) {
                        x["current_stage"] = json!("Archived");
                    }
                    x
                })
                .collect();
            rm["versions"] = Value::Array(vs);
        }
        Ok(None)
    })
    .await
}

pub(super) async fn mv_delete(State(ctx): State<EndpointState>, q: Q, body: Bytes) -> ApiResult {
    let r = req(q.0, &body)?;
    let (name, version) = (r.need("name")?, r.need("version")?);
    change(&ctx, name, move |rm, _| {
        version_of(rm, &version)?;
        let vs: Vec<Value> = versions(rm)
            .into_iter()
            .filter(|v| v["version"] != json!(version))
            .collect();
        rm["versions"] = Value::Array(vs);
        let al: Vec<Value> = rm["aliases"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a["version"] != json!(version))
            .collect();
        rm["aliases"] = Value::Array(al);
        Ok(json!({}))
    })
    .await
}

fn mv_value(v: &Value, kind: &str, key: &str) -> Option<DocVal> {
    match kind {
        "tags" => tag_value(&v["tags"], key),
        _ => match key {
            "version_number" => v["version"]
                .as_str()
                .and_then(|s| s.parse::<f64>().ok())
                .map(DocVal::Num),
            "creation_timestamp" | "last_updated_timestamp" => v[key].as_f64().map(DocVal::Num),
            k => Some(DocVal::Text(v[k].as_str().unwrap_or_default().to_string())),
        },
    }
}

pub(super) async fn mv_search(State(ctx): State<EndpointState>, q: Q, body: Bytes) -> ApiResult {
    let r = req(q.0.clone(), &body)?;
    let order = order_list(&q.0, &r);
    let filter = DocFilter::parse(
        &r.text("filter").unwrap_or_default(),
        |kind, key| kind == "attributes" && (key == "version_number" || key.ends_with("timestamp")),
        |key| {
            [
                "name",
                "run_id",
                "source",
                "version_number",
                "model_id",
                "creation_timestamp",
                "last_updated_timestamp",
                "current_stage",
            ]
            .contains(&key)
        },
    )
    .map_err(|e| invalid(e.message))?;
    store(&ctx, move |s| {
        let mut all = Vec::new();
        for (_, rm) in s.docs(REGISTERED_MODEL).map_err(internal)? {
            for v in versions(&rm) {
                if filter.matches_with(|kind, key| mv_value(&v, kind, key), true) {
                    all.push(version_json(&rm, &v));
                }
            }
        }
        sort_by_order(&mut all, &order, "last_updated_timestamp DESC");
        let (items, next) = page(all, &r, 10_000)?;
        let mut out = json!({"model_versions": items});
        if let Some(n) = next {
            out["next_page_token"] = json!(n);
        }
        Ok(Json(out))
    })
    .await
}

pub(super) async fn mv_download_uri(
    State(ctx): State<EndpointState>,
    q: Q,
    body: Bytes,
) -> ApiResult {
    let r = req(q.0, &body)?;
    let (name, version) = (r.need("name")?, r.need("version")?);
    store(&ctx, move |s| {
        let rm = get_rm(s, &name)?;
        let v = version_of(&rm, &version)?;
        // A version of a logged model downloads from the model's artifacts.
        let uri = match v["model_id"]
            .as_str()
            .and_then(|m| get_model(s, m, true).ok())
        {
            Some(m) => m["info"]["artifact_uri"].clone(),
            None => v["source"].clone(),
        };
        Ok(Json(json!({"artifact_uri": uri})))
    })
    .await
}

pub(super) async fn mv_set_tag(State(ctx): State<EndpointState>, q: Q, body: Bytes) -> ApiResult {
    let r = req(q.0, &body)?;
    let (k, x) = kv(&r.0, "Tag", 5000)?;
    change_version(&ctx, r, move |_, v| {
        set_pair(&mut v["tags"], &k, json!(x));
        Ok(Some(json!({})))
    })
    .await
}

pub(super) async fn mv_delete_tag(
    State(ctx): State<EndpointState>,
    q: Q,
    body: Bytes,
) -> ApiResult {
    let r = req(q.0, &body)?;
    let k = r.need("key")?;
    change_version(&ctx, r, move |_, v| {
        remove_pair(&mut v["tags"], &k);
        if v["tags"] == json!([]) {
            v.as_object_mut().map(|o| o.remove("tags"));
        }
        Ok(Some(json!({})))
    })
    .await
}

pub(super) async fn alias_set(State(ctx): State<EndpointState>, q: Q, body: Bytes) -> ApiResult {
    let r = req(q.0, &body)?;
    let (name, alias, version) = (r.need("name")?, r.need("alias")?, r.need("version")?);
    change(&ctx, name, move |rm, _| {
        version_of(rm, &version)?;
        let mut al: Vec<Value> = rm["aliases"].as_array().cloned().unwrap_or_default();
        al.retain(|a| a["alias"] != json!(alias));
        al.push(json!({"alias": alias, "version": version}));
        rm["aliases"] = Value::Array(al);
        Ok(json!({}))
    })
    .await
}

pub(super) async fn alias_delete(State(ctx): State<EndpointState>, q: Q, body: Bytes) -> ApiResult {
    let r = req(q.0, &body)?;
    let (name, alias) = (r.need("name")?, r.need("alias")?);
    change(&ctx, name, move |rm, _| {
        let al: Vec<Value> = rm["aliases"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a["alias"] != json!(alias))
            .collect();
        rm["aliases"] = Value::Array(al);
        Ok(json!({}))
    })
    .await
}

pub(super) async fn alias_get(State(ctx): State<EndpointState>, q: Q, body: Bytes) -> ApiResult {
    let r = req(q.0, &body)?;
    let (name, alias) = (r.need("name")?, r.need("alias")?);
    store(&ctx, move |s| {
        let rm = get_rm(s, &name)?;
        let version = rm["aliases"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["alias"] == json!(alias))
            .and_then(|a| a["version"].as_str().map(str::to_string))
            .ok_or_else(|| missing(format!("Registered model alias {alias} not found.")))?;
        Ok(Json(
            json!({"model_version": version_json(&rm, &version_of(&rm, &version)?)}),
        ))
    })
    .await
}
