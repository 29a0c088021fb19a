//! Reference data through the API: read a table, replace one at run time.
//!
//! A replacement is checked like a loaded directory (columns, ids, unique keys), kept in the
//! data directory (it wins over the `--reference` directory at the next start), and put in
//! force everywhere at once: the dataflow (registries, `ref` in rules, absence rules' devices,
//! complaint routing) from its current frontier, alert routing for alerts that open from then.

use crate::auth::{Caller, Need};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use dataflow::Reference;
use dataflow::reference::{Current, Format, ReferenceError, TABLES};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The largest table a PUT takes: a city's elevator registry, not just a district's. The body
/// is refused while it is read once past this, so a larger upload costs no more memory.
pub const MAX_TABLE_BYTES: usize = 64 << 20;
/// Most rows of a table (CSV lines after the header). A 50 MB elevator registry of 727 908
/// rows took a debug build from 62 to 451 MB of resident memory in all (the registry in the
/// dataflow included).
pub const MAX_TABLE_ROWS: usize = 1_000_000;

/// Called with the new reference data once it is in force.
pub type Listener = Box<dyn Fn(Arc<Reference>) + Send + Sync>;

/// The reference data in force, and the way to change it.
pub struct ReferenceManager {
    current: Current,
    /// Where replaced tables are kept; none: changes last until the process stops.
    dir: Option<PathBuf>,
    listeners: Vec<Listener>,
    /// One replacement at a time, so none is built on data another is replacing.
    changing: Mutex<()>,
}

/// Why a table was not replaced.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The text is not a valid table (which line, which field, why).
    #[error(transparent)]
    Invalid(#[from] ReferenceError),
    /// It could not be kept.
    #[error("keeping the table in {dir}: {source}")]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
}

impl ReferenceManager {
    /// `initial` in force; replacements kept in `dir` and told to `listeners`.
    pub fn new(
        initial: Arc<Reference>,
        dir: Option<PathBuf>,
        listeners: Vec<Listener>,
    ) -> ReferenceManager {
        ReferenceManager {
            current: Current::new(initial),
            dir,
            listeners,
            changing: Mutex::new(()),
        }
    }

    /// A manager for data that never changes (tools and tests).
    pub fn fixed(reference: Arc<Reference>) -> ReferenceManager {
        ReferenceManager::new(reference, None, Vec::new())
    }

    /// The reference data in force.
    pub fn current(&self) -> Arc<Reference> {
        self.current.get()
    }

    /// Replaces table `name` with `text`: checked, kept, then in force.
    pub fn replace_table(
        &self,
        name: &str,
        text: &str,
        format: Format,
    ) -> Result<Arc<Reference>, ChangeError> {
        let _one = self
            .changing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let next = Arc::new(self.current.get().with_table(
            std::path::Path::new(""),
            name,
            text,
            format,
        )?);
        if let Some(dir) = &self.dir {
            dataflow::reference::write_table(dir, name, text, format).map_err(|source| {
                ChangeError::Io {
                    dir: dir.clone(),
                    source,
                }
            })?;
        }
        self.current.set(next.clone());
        for listen in &self.listeners {
            listen(next.clone());
        }
        tracing::info!(table = name, "reference table replaced");
        Ok(next)
    }

    /// Whether replacements outlive the process.
    pub fn is_kept(&self) -> bool {
        self.dir.is_some()
    }
}

/// A table and its size.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TableView {
    /// The table's name (its file stem in a reference directory).
    #[schema(example = "elevators")]
    pub name: String,
    /// Rows (features for `jurisdictions`).
    pub rows: usize,
}

/// The tables of the reference data in force.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TablesView {
    pub tables: Vec<TableView>,
}

/// What a replacement did.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Replaced {
    #[schema(example = "elevators")]
    pub table: String,
    pub rows: usize,
    /// Whether the table was written to the data directory (and is loaded at the next start).
    pub kept: bool,
}

/// The rows of one table as JSON (receivers' webhook secrets are not shown).
fn rows(r: &Reference, name: &str) -> Option<serde_json::Value> {
    let mut table = r.table_json(name)?;
    if name == "receivers"
        && let Some(list) = table.as_array_mut()
    {
        for rc in list {
            if rc["secret"].as_str().is_some_and(|s| !s.is_empty()) {
                rc["secret"] = serde_json::json!("***");
            }
        }
    }
    if name == "jurisdictions" && table.is_null() {
        table = serde_json::json!({ "type": "FeatureCollection", "features": [] });
    }
    Some(table)
}

fn unknown(name: &str) -> ApiError {
    ApiError::not_found(format!(
        "no reference table {name:?}; the tables are {}",
        TABLES.join(", ")
    ))
}

/// A maintenance unit's token reads its own alerts and elevators, not the registries.
fn not_for_units(caller: &Caller) -> Result<(), ApiError> {
    match caller.unit() {
        Some(unit) => Err(ApiError::forbidden(format!(
            "a maintenance unit's token (unit:{unit}) does not read the reference tables"
        ))),
        None => Ok(()),
    }
}

/// `GET /api/v1/reference`: the tables and their sizes.
#[utoipa::path(get, path = "/api/v1/reference", tag = "reference",
    responses((status = 200, description = "Every table with its number of rows", body = TablesView),
        (status = 403, description = "A maintenance unit's token", body = ErrorBody)))]
pub(crate) async fn tables(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Json<TablesView>, ApiError> {
    not_for_units(&caller)?;
    let r = s.reference.current();
    Ok(Json(TablesView {
        tables: TABLES
            .iter()
            .map(|t| TableView {
                name: (*t).to_owned(),
                rows: r.rows(t).unwrap_or(0),
            })
            .collect(),
    }))
}

/// `GET /api/v1/reference/{table}`: the rows of a table, as JSON.
#[utoipa::path(get, path = "/api/v1/reference/{table}", tag = "reference",
    params(("table" = String, Path, description = "A table: elevators, kitchens, cameras, markets, stalls, scales, merchants, offices, maintenance_units, guidance_prices, receivers, holidays, jurisdictions", example = "elevators")),
    responses((status = 200, description = "An array of rows (a GeoJSON FeatureCollection for jurisdictions)", body = serde_json::Value),
        (status = 403, description = "A maintenance unit's token", body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(crate) async fn table(
    State(s): State<AppState>,
    caller: Caller,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    not_for_units(&caller)?;
    rows(&s.reference.current(), &name)
        .map(Json)
        .ok_or_else(|| unknown(&name))
}

/// `PUT /api/v1/reference/{table}`: replaces a table. The body is the table's file: CSV with a
/// header row (`Content-Type: text/csv`) or JSON, an array of objects (`application/json`;
/// GeoJSON for jurisdictions). It is in force from the dataflow's current frontier; an invalid
/// table changes nothing.
#[utoipa::path(put, path = "/api/v1/reference/{table}", tag = "reference",
    params(("table" = String, Path, description = "The table to replace", example = "elevators")),
    request_body(content = String, content_type = "text/csv",
        description = "The whole table, as its reference file (CSV with a header row, or JSON with Content-Type application/json)",
        example = "elevator_id,building,district,lat,lon,maintenance_unit,rated_speed_mps,floors\nE-1,Tower A,D1,29.56,106.57,MU-01,1.75,30\n"),
    security(("token" = ["admin"])),
    responses((status = 200, description = "Replaced and in force", body = Replaced),
        (status = 400, description = "Not a valid table: the file, line and reason", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 500, description = "It could not be kept", body = ErrorBody)))]
pub(crate) async fn replace(
    State(s): State<AppState>,
    caller: Caller,
    axum::extract::Path(name): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Result<String, axum::extract::rejection::StringRejection>,
) -> Result<Json<Replaced>, ApiError> {
    caller.require(&s.auth, Need::Admin, None)?;
    if !TABLES.contains(&name.as_str()) {
        return Err(unknown(&name));
    }
    let body = body.map_err(|r| ApiError::rejected(r.status(), r.body_text()))?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let format = if name == "jurisdictions" || content_type.contains("json") {
        Format::Json
    } else {
        Format::Csv
    };
    let rows = body.lines().count().saturating_sub(1);
    if format == Format::Csv && rows > MAX_TABLE_ROWS {
        return Err(ApiError::rejected(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            format!("{rows} rows, over the limit of {MAX_TABLE_ROWS} rows a table may have"),
        ));
    }
    let manager = s.reference.clone();
    let table = name.clone();
    // Parsing a city's registry and rebuilding the indexes is seconds of CPU: off the runtime.
    let next = tokio::task::spawn_blocking(move || manager.replace_table(&table, &body, format))
        .await
        .map_err(|e| ApiError::internal(format!("replacing the table: {e}")))?
        .map_err(|e| match e {
            ChangeError::Invalid(e) => ApiError::bad_field("body", e.to_string()),
            e @ ChangeError::Io { .. } => ApiError::internal(e.to_string()),
        })?;
    Ok(Json(Replaced {
        rows: next.rows(&name).unwrap_or(0),
        table: name,
        kept: s.reference.is_kept(),
    }))
}

/// The routes of this module.
pub(crate) fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/api/v1/reference", axum::routing::get(tables))
        .route(
            "/api/v1/reference/{table}",
            axum::routing::get(table)
                .put(replace)
                .layer(axum::extract::DefaultBodyLimit::max(MAX_TABLE_BYTES)),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_table_is_in_force_kept_and_told() {
        let dir = std::env::temp_dir().join(format!("cw-refmgr-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let told = Arc::new(Mutex::new(Vec::new()));
        let sink = told.clone();
        let m = ReferenceManager::new(
            Arc::new(Reference::default()),
            Some(dir.clone()),
            vec![Box::new(move |r: Arc<Reference>| {
                sink.lock().unwrap().push(r.merchants.len())
            })],
        );
        let csv = "merchant_id,name,office_id\nM1,甲,O1\nM2,乙,O2\n";
        let r = m.replace_table("merchants", csv, Format::Csv).unwrap();
        assert_eq!(r.merchants.len(), 2);
        assert_eq!(m.current().merchants[1].office_id.as_str(), "O2");
        assert_eq!(*told.lock().unwrap(), vec![2]);
        assert_eq!(
            std::fs::read_to_string(dir.join("merchants.csv")).unwrap(),
            csv
        );
        // Reloading the kept directory gives the same data.
        assert_eq!(Reference::load(&dir).unwrap().merchants, r.merchants);

        // A bad table names its line and changes nothing.
        let err = m
            .replace_table(
                "merchants",
                "merchant_id,name,office_id\nM3,丙\n",
                Format::Csv,
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("merchants.csv:2"), "{err}");
        let err = m
            .replace_table("merchants", csv.replace("M2", "M1").as_str(), Format::Csv)
            .unwrap_err()
            .to_string();
        assert!(err.contains("duplicate key \"M1\""), "{err}");
        assert_eq!(m.current().merchants.len(), 2);
        assert_eq!(told.lock().unwrap().len(), 1);

        // JSON replaces the CSV file rather than hiding behind it.
        let json = r#"[{"merchant_id":"M9","name":"丁","office_id":"O1"}]"#;
        m.replace_table("merchants", json, Format::Json).unwrap();
        assert!(!dir.join("merchants.csv").exists());
        assert_eq!(Reference::load(&dir).unwrap().merchants.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn webhook_secrets_are_not_shown() {
        let r = Reference {
            receivers: vec![dataflow::reference::Receiver {
                receiver_id: "R1".into(),
                kind: "webhook".into(),
                target: "http://127.0.0.1:9/hook".into(),
                secret: "s3cret".into(),
                owner: "MU-01".into(),
            }],
            ..Reference::default()
        };
        let v = rows(&r, "receivers").unwrap();
        assert_eq!(v[0]["secret"], "***");
        assert!(rows(&r, "nope").is_none());
        assert_eq!(
            rows(&r, "jurisdictions").unwrap()["features"],
            serde_json::json!([])
        );
        assert_eq!(
            (r.rows("receivers"), r.rows("jurisdictions")),
            (Some(1), Some(0))
        );
    }
}
