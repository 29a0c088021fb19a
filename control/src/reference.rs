//! Reference data: the registries the streams are joined with (elevators, kitchens and
//! cameras, markets, stalls, scales, merchants, offices, maintenance units, guidance prices,
//! jurisdictions). Loaded from a directory at start; each table is one file, `NAME.csv`
//! (with a header row) or `NAME.json` (an array of objects). A missing file is an empty table.

use model::Id;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Why reference data could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A CSV row did not match the table's columns.
    #[error("{path}:{line}: {message}")]
    Csv {
        path: PathBuf,
        line: u64,
        message: String,
    },
    /// A JSON file did not match the table's fields.
    #[error("{path}:{line}:{column}: {message}")]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// A row is well-formed but breaks a rule (bad id, duplicate key).
    #[error("{path}: row {row}: {message}")]
    Invalid {
        path: PathBuf,
        row: usize,
        message: String,
    },
}

/// A registered elevator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Elevator {
    pub elevator_id: Id,
    pub building: String,
    pub district: Id,
    pub lat: f64,
    pub lon: f64,
    pub maintenance_unit: Id,
    pub rated_speed_mps: f64,
    pub floors: i32,
}

/// A kitchen under the bright-kitchen programme.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kitchen {
    pub kitchen_id: Id,
    pub venue: String,
    /// `school`, `restaurant` or `canteen`.
    pub venue_type: Id,
    pub district: Id,
    /// WGS-84 position for the control-room map (an optional extension column).
    #[serde(default)]
    pub lat: Option<f64>,
    #[serde(default)]
    pub lon: Option<f64>,
}

/// A registered kitchen camera (an extension of the contract's kitchen table: cameras are
/// registered so that a silent camera can be told from a missing one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Camera {
    pub kitchen_id: Id,
    pub camera_id: Id,
}

/// A day off or a make-up working day (`holidays.csv`: `date,kind,name`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Holiday {
    /// `YYYY-MM-DD`, local.
    pub date: String,
    /// `holiday` (a weekday off) or `workday` (a weekend day worked).
    pub kind: String,
    #[serde(default)]
    pub name: String,
}

/// A smart market.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Market {
    pub market_id: Id,
    pub name: String,
    pub district: Id,
    /// WGS-84 position for the control-room map (an optional extension column).
    #[serde(default)]
    pub lat: Option<f64>,
    #[serde(default)]
    pub lon: Option<f64>,
}

/// A stall of a market.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stall {
    pub stall_id: Id,
    pub market_id: Id,
    pub merchant_id: Id,
}

/// A registered scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scale {
    pub scale_id: Id,
    pub market_id: Id,
    pub stall_id: Id,
}

/// A registered merchant and the office responsible for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Merchant {
    pub merchant_id: Id,
    pub name: String,
    pub office_id: Id,
}

/// A market-supervision office (市场监管所).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Office {
    pub office_id: Id,
    pub name: String,
    pub district: Id,
}

/// An elevator maintenance unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceUnit {
    pub unit_id: Id,
    pub name: String,
}

/// A guidance price, for one market or (without `market_id`) all of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuidancePrice {
    #[serde(default)]
    pub market_id: Option<Id>,
    pub goods_code: Id,
    pub price: f64,
}

/// Where a notification goes: a webhook (URL) or an MQTT topic, for an owner (a maintenance
/// unit id, an office id, or `duty:<district>` for a district's duty leader).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receiver {
    pub receiver_id: Id,
    /// `webhook` or `mqtt`.
    pub kind: String,
    /// The URL or the topic.
    pub target: String,
    /// Key of the webhook signature (HMAC-SHA256).
    #[serde(default)]
    pub secret: String,
    pub owner: String,
}

/// All reference tables.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    pub elevators: Vec<Elevator>,
    pub kitchens: Vec<Kitchen>,
    pub cameras: Vec<Camera>,
    pub markets: Vec<Market>,
    pub stalls: Vec<Stall>,
    pub scales: Vec<Scale>,
    pub merchants: Vec<Merchant>,
    pub offices: Vec<Office>,
    pub maintenance_units: Vec<MaintenanceUnit>,
    pub guidance_prices: Vec<GuidancePrice>,
    /// Notification receivers.
    #[serde(default)]
    pub receivers: Vec<Receiver>,
    /// Public holidays and make-up working days, for deadlines in working days.
    #[serde(default)]
    pub holidays: Vec<Holiday>,
    /// Jurisdiction polygons (GeoJSON FeatureCollection), kept as loaded.
    #[serde(default, with = "geojson_text")]
    pub jurisdictions: Option<serde_json::Value>,
}

impl Reference {
    /// Rows of table `name` (features of `jurisdictions`), without copying it.
    pub fn rows(&self, name: &str) -> Option<usize> {
        Some(match name {
            "elevators" => self.elevators.len(),
            "kitchens" => self.kitchens.len(),
            "cameras" => self.cameras.len(),
            "markets" => self.markets.len(),
            "stalls" => self.stalls.len(),
            "scales" => self.scales.len(),
            "merchants" => self.merchants.len(),
            "offices" => self.offices.len(),
            "maintenance_units" => self.maintenance_units.len(),
            "guidance_prices" => self.guidance_prices.len(),
            "receivers" => self.receivers.len(),
            "holidays" => self.holidays.len(),
            "jurisdictions" => self
                .jurisdictions
                .as_ref()
                .map_or(0, |j| j["features"].as_array().map_or(0, Vec::len)),
            _ => return None,
        })
    }

    /// Table `name` alone as JSON (not the whole reference data).
    pub fn table_json(&self, name: &str) -> Option<serde_json::Value> {
        fn json<T: Serialize>(t: &T) -> Option<serde_json::Value> {
            serde_json::to_value(t).ok()
        }
        match name {
            "elevators" => json(&self.elevators),
            "kitchens" => json(&self.kitchens),
            "cameras" => json(&self.cameras),
            "markets" => json(&self.markets),
            "stalls" => json(&self.stalls),
            "scales" => json(&self.scales),
            "merchants" => json(&self.merchants),
            "offices" => json(&self.offices),
            "maintenance_units" => json(&self.maintenance_units),
            "guidance_prices" => json(&self.guidance_prices),
            "receivers" => json(&self.receivers),
            "holidays" => json(&self.holidays),
            "jurisdictions" => Some(
                self.jurisdictions
                    .clone()
                    .unwrap_or(serde_json::Value::Null),
            ),
            _ => None,
        }
    }
}

/// GeoJSON as itself in JSON, and as its text in binary encodings (bincode, between the
/// processes of a cluster), which cannot read a self-describing value.
mod geojson_text {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(
        v: &Option<serde_json::Value>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            v.serialize(s)
        } else {
            v.as_ref().map(|v| v.to_string()).serialize(s)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<serde_json::Value>, D::Error> {
        if d.is_human_readable() {
            Option::<serde_json::Value>::deserialize(d)
        } else {
            Option::<String>::deserialize(d)?
                .map(|text| serde_json::from_str(&text).map_err(D::Error::custom))
                .transpose()
        }
    }
}

/// A polygon: its rings (the outer one, then holes), each a list of (lon, lat).
type Polygon = Vec<Vec<(f64, f64)>>;

/// The jurisdictions as polygons, for finding the office of a place.
#[derive(Debug, Clone, Default)]
pub struct Jurisdictions {
    /// (office id, its polygons).
    areas: Vec<(Id, Vec<Polygon>)>,
}

impl Jurisdictions {
    /// The office whose jurisdiction holds the point (the first, should they overlap).
    pub fn office_at(&self, lat: f64, lon: f64) -> Option<&Id> {
        self.areas
            .iter()
            .find(|(_, polygons)| polygons.iter().any(|rings| inside(rings, lon, lat)))
            .map(|(office, _)| office)
    }

    /// Whether there are any.
    pub fn is_empty(&self) -> bool {
        self.areas.is_empty()
    }

    /// Their bounding box: (lat min, lat max, lon min, lon max); none without polygons.
    pub fn bounds(&self) -> Option<(f64, f64, f64, f64)> {
        let points = self
            .areas
            .iter()
            .flat_map(|(_, ps)| ps.iter().flatten().flatten());
        points.fold(None, |b, &(lon, lat)| {
            let (a, b, c, d) = b.unwrap_or((lat, lat, lon, lon));
            Some((a.min(lat), b.max(lat), c.min(lon), d.max(lon)))
        })
    }
}

/// Even-odd ray casting over a polygon's rings (its holes count against it). Written out:
/// the one test the district needs is shorter than a geometry crate's dependencies.
fn inside(rings: &[Vec<(f64, f64)>], x: f64, y: f64) -> bool {
    let mut inside = false;
    for ring in rings {
        for i in 0..ring.len() {
            let (xi, yi) = ring[i];
            let (xj, yj) = ring[(i + ring.len() - 1) % ring.len()];
            if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
                inside = !inside;
            }
        }
    }
    inside
}

impl Reference {
    /// The jurisdiction polygons of `jurisdictions.geojson` (features with an `office_id` and
    /// a Polygon or MultiPolygon geometry; others are skipped).
    pub fn jurisdictions(&self) -> Jurisdictions {
        let ring = |r: &serde_json::Value| -> Vec<(f64, f64)> {
            r.as_array()
                .map(|pts| {
                    pts.iter()
                        .filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()?)))
                        .collect()
                })
                .unwrap_or_default()
        };
        let polygon = |p: &serde_json::Value| -> Polygon {
            p.as_array()
                .map(|rings| rings.iter().map(ring).collect())
                .unwrap_or_default()
        };
        let mut areas = Vec::new();
        let features = self
            .jurisdictions
            .as_ref()
            .and_then(|j| j["features"].as_array());
        for f in features.into_iter().flatten() {
            let Some(office) = f["properties"]["office_id"].as_str() else {
                continue;
            };
            let g = &f["geometry"];
            let polygons = match g["type"].as_str() {
                Some("Polygon") => vec![polygon(&g["coordinates"])],
                Some("MultiPolygon") => g["coordinates"]
                    .as_array()
                    .map(|ps| ps.iter().map(polygon).collect())
                    .unwrap_or_default(),
                _ => continue,
            };
            areas.push((Id::from(office), polygons));
        }
        Jurisdictions { areas }
    }

    /// The working-day calendar of `holidays`.
    pub fn calendar(&self) -> model::time::WorkCalendar {
        let days = |kind: &'static str| {
            self.holidays
                .iter()
                .filter(move |h| h.kind == kind)
                .filter_map(|h| model::time::parse_day(&h.date))
        };
        model::time::WorkCalendar::new(days("holiday"), days("workday"))
    }

    /// Loads every table found in `dir`.
    pub fn load(dir: &Path) -> Result<Reference, ReferenceError> {
        Reference::load_layers(&[dir])
    }

    /// Loads every table from the last of `dirs` that holds it: a table changed at run time
    /// (kept in the data directory) wins over the one it replaced.
    pub fn load_layers(dirs: &[&Path]) -> Result<Reference, ReferenceError> {
        let mut r = Reference::default();
        for t in TABLES {
            let mut found = None;
            for dir in dirs {
                if let Some(table) = load_table(dir, t)? {
                    found = Some(table);
                }
            }
            r.set_table(t, found)?;
        }
        r.validate(dirs.first().copied().unwrap_or(Path::new(".")))?;
        Ok(r)
    }

    /// A copy with table `name` replaced by `text` (CSV with a header row, or JSON: an array
    /// of objects, GeoJSON for `jurisdictions`), checked like a loaded directory. Errors name
    /// `name.csv`/`name.json` under `dir`, the line and the reason.
    pub fn with_table(
        &self,
        dir: &Path,
        name: &str,
        text: &str,
        format: Format,
    ) -> Result<Reference, ReferenceError> {
        let Some(table) = TABLES.iter().find(|t| **t == name) else {
            return Err(ReferenceError::Invalid {
                path: dir.join(name),
                row: 0,
                message: format!("no table {name:?}; the tables are {}", TABLES.join(", ")),
            });
        };
        let mut r = self.clone();
        r.set_table(
            table,
            Some((table_path(dir, table, format), text.to_owned(), format)),
        )?;
        r.validate(dir)?;
        Ok(r)
    }

    /// Parses one table's text into its field (none: the table is empty).
    fn set_table(
        &mut self,
        name: &str,
        source: Option<(PathBuf, String, Format)>,
    ) -> Result<(), ReferenceError> {
        let Some((path, text, format)) = source else {
            if name == "jurisdictions" {
                self.jurisdictions = None;
            } else {
                self.set_rows(name, &PathBuf::new(), "", Format::Json, true)?;
            }
            return Ok(());
        };
        if name == "jurisdictions" {
            self.jurisdictions =
                Some(serde_json::from_str(&text).map_err(|e| json_error(&path, &e))?);
            return Ok(());
        }
        self.set_rows(name, &path, &text, format, false)
    }

    fn set_rows(
        &mut self,
        name: &str,
        path: &Path,
        text: &str,
        format: Format,
        empty: bool,
    ) -> Result<(), ReferenceError> {
        fn rows<T: DeserializeOwned>(
            path: &Path,
            text: &str,
            format: Format,
            empty: bool,
            ids: impl Fn(&T) -> Vec<&Id>,
        ) -> Result<Vec<T>, ReferenceError> {
            if empty {
                return Ok(Vec::new());
            }
            parse_rows(path, text, format, ids)
        }
        let (p, f, e) = (path, format, empty);
        match name {
            "elevators" => {
                self.elevators = rows(p, text, f, e, |e: &Elevator| {
                    vec![&e.elevator_id, &e.district, &e.maintenance_unit]
                })?
            }
            "kitchens" => {
                self.kitchens = rows(p, text, f, e, |k: &Kitchen| {
                    vec![&k.kitchen_id, &k.venue_type, &k.district]
                })?
            }
            "cameras" => {
                self.cameras = rows(p, text, f, e, |c: &Camera| {
                    vec![&c.kitchen_id, &c.camera_id]
                })?
            }
            "markets" => {
                self.markets = rows(p, text, f, e, |m: &Market| vec![&m.market_id, &m.district])?
            }
            "stalls" => {
                self.stalls = rows(p, text, f, e, |s: &Stall| {
                    vec![&s.stall_id, &s.market_id, &s.merchant_id]
                })?
            }
            "scales" => {
                self.scales = rows(p, text, f, e, |s: &Scale| {
                    vec![&s.scale_id, &s.market_id, &s.stall_id]
                })?
            }
            "merchants" => {
                self.merchants = rows(p, text, f, e, |m: &Merchant| {
                    vec![&m.merchant_id, &m.office_id]
                })?
            }
            "offices" => {
                self.offices = rows(p, text, f, e, |o: &Office| vec![&o.office_id, &o.district])?
            }
            "maintenance_units" => {
                self.maintenance_units =
                    rows(p, text, f, e, |u: &MaintenanceUnit| vec![&u.unit_id])?
            }
            "guidance_prices" => {
                self.guidance_prices = rows(p, text, f, e, |g: &GuidancePrice| vec![&g.goods_code])?
            }
            "receivers" => {
                self.receivers = rows(p, text, f, e, |r: &Receiver| vec![&r.receiver_id])?
            }
            "holidays" => self.holidays = rows(p, text, f, e, |_: &Holiday| vec![])?,
            other => unreachable!("table {other} is in TABLES but has no field"),
        }
        Ok(())
    }

    /// The checks across rows: unique keys, well-formed holidays.
    fn validate(&self, dir: &Path) -> Result<(), ReferenceError> {
        let r = self;
        check_unique(
            dir,
            "elevators",
            r.elevators.iter().map(|e| e.elevator_id.clone()),
        )?;
        check_unique(
            dir,
            "kitchens",
            r.kitchens.iter().map(|k| k.kitchen_id.clone()),
        )?;
        check_unique(
            dir,
            "cameras",
            r.cameras
                .iter()
                .map(|c| format!("{}/{}", c.kitchen_id, c.camera_id).into()),
        )?;
        for (i, h) in r.holidays.iter().enumerate() {
            let problem = if model::time::parse_day(&h.date).is_none() {
                Some(format!("date {:?} is not YYYY-MM-DD", h.date))
            } else if !matches!(h.kind.as_str(), "holiday" | "workday") {
                Some(format!("kind {:?}: expected holiday or workday", h.kind))
            } else {
                None
            };
            if let Some(message) = problem {
                return Err(ReferenceError::Csv {
                    path: dir.join("holidays.csv"),
                    line: i as u64 + 2,
                    message,
                });
            }
        }
        check_unique(
            dir,
            "merchants",
            r.merchants.iter().map(|m| m.merchant_id.clone()),
        )?;
        Ok(())
    }
}

/// The tables of a reference directory, by file stem.
pub const TABLES: [&str; 13] = [
    "elevators",
    "kitchens",
    "cameras",
    "markets",
    "stalls",
    "scales",
    "merchants",
    "offices",
    "maintenance_units",
    "guidance_prices",
    "receivers",
    "holidays",
    "jurisdictions",
];

/// How a table is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A header row, then one row per record.
    Csv,
    /// An array of objects (GeoJSON for the jurisdictions).
    Json,
}

/// Where table `name` lives in `dir` in `format`.
pub fn table_path(dir: &Path, name: &str, format: Format) -> PathBuf {
    match (name, format) {
        ("jurisdictions", _) => dir.join("jurisdictions.geojson"),
        (_, Format::Csv) => dir.join(format!("{name}.csv")),
        (_, Format::Json) => dir.join(format!("{name}.json")),
    }
}

/// Writes table `name` into `dir` in place of whichever file held it, atomically (a reader
/// sees the old file or the new one, never half of one).
pub fn write_table(dir: &Path, name: &str, text: &str, format: Format) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = table_path(dir, name, format);
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        use std::io::Write as _;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    // The other format would shadow (CSV) or be shadowed by the new file: it goes.
    let other = match format {
        Format::Csv => Format::Json,
        Format::Json => Format::Csv,
    };
    let other = table_path(dir, name, other);
    if other != path && other.exists() {
        std::fs::remove_file(other)?;
    }
    Ok(())
}

/// The file of table `name` in `dir`, if there is one: (path, text, format). CSV wins.
fn load_table(dir: &Path, name: &str) -> Result<Option<(PathBuf, String, Format)>, ReferenceError> {
    for format in [Format::Csv, Format::Json] {
        let path = table_path(dir, name, format);
        if path.exists() {
            let text = read(&path)?;
            return Ok(Some((path, text, format)));
        }
    }
    Ok(None)
}

/// The reference data in force, shared by the parts that read it (routing, the map, the
/// API); replaced whole when a table changes.
#[derive(Debug, Default)]
pub struct Current(std::sync::RwLock<std::sync::Arc<Reference>>);

impl Current {
    pub fn new(r: std::sync::Arc<Reference>) -> Current {
        Current(std::sync::RwLock::new(r))
    }

    /// The reference data in force now.
    pub fn get(&self) -> std::sync::Arc<Reference> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Puts `r` in force.
    pub fn set(&self, r: std::sync::Arc<Reference>) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = r;
    }
}

fn read(path: &Path) -> Result<String, ReferenceError> {
    std::fs::read_to_string(path).map_err(|source| ReferenceError::Io {
        path: path.to_owned(),
        source,
    })
}

fn json_error(path: &Path, e: &serde_json::Error) -> ReferenceError {
    ReferenceError::Json {
        path: path.to_owned(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    }
}

fn parse_rows<T: DeserializeOwned>(
    path: &Path,
    text: &str,
    format: Format,
    ids: impl Fn(&T) -> Vec<&Id>,
) -> Result<Vec<T>, ReferenceError> {
    let rows: Vec<T> = match format {
        Format::Csv => {
            let mut reader = csv::ReaderBuilder::new()
                .trim(csv::Trim::All)
                .from_reader(text.as_bytes());
            let mut rows = Vec::new();
            for row in reader.deserialize() {
                rows.push(row.map_err(|e: csv::Error| ReferenceError::Csv {
                    path: path.to_owned(),
                    line: e.position().map_or(0, |p| p.line()),
                    message: match e.kind() {
                        csv::ErrorKind::Deserialize { err, .. } => err.to_string(),
                        _ => e.to_string(),
                    },
                })?);
            }
            rows
        }
        Format::Json => serde_json::from_str(text).map_err(|e| json_error(path, &e))?,
    };
    for (i, row) in rows.iter().enumerate() {
        if let Some(bad) = ids(row).into_iter().find(|id| !model::id::is_valid_id(id)) {
            return Err(ReferenceError::Invalid {
                path: path.to_owned(),
                row: i + 1,
                message: format!("id {bad:?} is not 1-64 characters of [A-Za-z0-9_.-]"),
            });
        }
    }
    Ok(rows)
}

fn check_unique(
    dir: &Path,
    name: &str,
    keys: impl Iterator<Item = Id>,
) -> Result<(), ReferenceError> {
    let mut seen = std::collections::HashSet::new();
    for (i, k) in keys.enumerate() {
        if !seen.insert(k.clone()) {
            return Err(ReferenceError::Invalid {
                path: dir.join(name),
                row: i + 1,
                message: format!("duplicate key {k:?}"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_place_finds_the_office_whose_jurisdiction_holds_it() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/reference");
        let r = Reference::load(&dir).unwrap();
        let j = r.jurisdictions();
        assert!(!j.is_empty());
        // Jiefangbei (解放碑) lies in O-JFB's square, Daping (大坪) in O-DP's.
        assert_eq!(
            j.office_at(29.5569, 106.5658).map(|o| o.as_str()),
            Some("O-JFB")
        );
        assert_eq!(
            j.office_at(29.5396, 106.5152).map(|o| o.as_str()),
            Some("O-DP")
        );
        assert_eq!(j.office_at(29.60, 106.50), None, "outside the district");
        assert_eq!(j.bounds(), Some((29.535, 29.57, 106.51, 106.59)));
    }

    use super::*;

    #[test]
    fn the_shipped_calendar_counts_working_days_across_the_2026_national_day_week() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/reference");
        let calendar = Reference::load(&dir).unwrap().calendar();
        let day = |s: &str| model::time::parse_day(s).unwrap();
        // Received Wednesday 30 September 2026, 10:00 in Chongqing (02:00 UTC). Off from
        // 1 to 7 October; Saturday 10 October is worked in their place: the fifth working
        // day after is Tuesday 13 October (8, 9, 10, 12, 13), so the limit runs out at its end.
        let received = model::time::day_start(day("2026-09-30")) + 10 * 3_600_000;
        assert_eq!(
            calendar.working_days_after(received, 5),
            model::time::day_start(day("2026-10-14"))
        );
        assert!(
            calendar.is_working(day("2026-09-20")),
            "Sunday 20 September is worked"
        );
        assert!(
            !calendar.is_working(day("2026-10-05")),
            "Monday 5 October is off"
        );
        assert!(
            !calendar.is_working(day("2026-02-23")),
            "the Spring Festival's last day"
        );
        assert!(calendar.is_working(day("2026-02-28")), "a make-up Saturday");
    }

    #[test]
    fn loads_the_shipped_sample_district() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/reference");
        let r = Reference::load(&dir).unwrap();
        assert!(!r.elevators.is_empty());
        assert!(!r.kitchens.is_empty());
        assert!(!r.cameras.is_empty());
        assert!(!r.merchants.is_empty());
        assert!(r.jurisdictions.is_some());
    }

    #[test]
    fn errors_name_file_line_and_reason() {
        let dir = std::env::temp_dir().join(format!("cw-ref-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("kitchens.csv"),
            "kitchen_id,venue,venue_type,district\nK1,A,school,D1\nK2,B,school\n",
        )
        .unwrap();
        let err = Reference::load(&dir).unwrap_err().to_string();
        assert!(err.contains("kitchens.csv:3"), "{err}");
        std::fs::write(
            dir.join("kitchens.csv"),
            "kitchen_id,venue,venue_type,district\nK 1,A,school,D1\n",
        )
        .unwrap();
        let err = Reference::load(&dir).unwrap_err().to_string();
        assert!(err.contains("row 1") && err.contains("\"K 1\""), "{err}");
        std::fs::write(
            dir.join("kitchens.csv"),
            "kitchen_id,venue,venue_type,district,color\nK1,A,school,D1,red\n",
        )
        .unwrap();
        let err = Reference::load(&dir).unwrap_err().to_string();
        assert!(err.contains("unknown field"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
