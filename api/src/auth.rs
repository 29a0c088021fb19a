//! Who may write: bearer tokens with roles, kept hashed in `DATA_DIR/tokens.json`.
//!
//! Roles: `viewer` (reads), `operator` (alert actions, silences), `unit:<id>` (actions on
//! that maintenance unit's alerts only; its alert list shows only those), `admin` (rules, and
//! everything an operator may). With `auth = "writes"` (the default) reads are open (wall
//! screens on the bureau's network) and every write needs a token of the right role; with
//! `auth = "all"` every call under `/api/` and `/metrics` needs a token too (any role), for a
//! network the bureau does not control; with `auth = "off"` nothing is checked (a laptop,
//! tests). The page itself (`/`, its assets) and the health probes stay open in every mode.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Whether tokens are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// Writes need a token with the right role; reads are open.
    #[default]
    Writes,
    /// Reads need a token as well (any role).
    All,
    /// Nothing is checked.
    Off,
}

/// A role a token carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Viewer,
    Operator,
    /// A maintenance unit: only its own alerts.
    Unit(String),
    Admin,
}

impl Role {
    /// Parses `viewer`, `operator`, `admin` or `unit:<id>`.
    pub fn parse(s: &str) -> Result<Role, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            _ => match s.strip_prefix("unit:") {
                Some(id) if !id.is_empty() => Ok(Role::Unit(id.to_owned())),
                _ => Err(format!(
                    "role {s:?}: expected viewer, operator, admin or unit:<unit id>"
                )),
            },
        }
    }

    pub fn as_string(&self) -> String {
        match self {
            Role::Viewer => "viewer".into(),
            Role::Operator => "operator".into(),
            Role::Admin => "admin".into(),
            Role::Unit(id) => format!("unit:{id}"),
        }
    }
}

/// A stored token: never the token itself, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenRow {
    /// Who holds it: recorded as the actor of what it does.
    pub name: String,
    /// `viewer`, `operator`, `admin` or `unit:<id>`.
    pub role: String,
    /// Only the hash is kept; never shown by the API.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sha256: String,
    pub created_ms: u64,
}

/// The token store, the mode, and each token's request budget.
#[derive(Debug)]
pub struct Auth {
    pub mode: AuthMode,
    path: PathBuf,
    /// Serialises changes of the token file within the process.
    writing: std::sync::Mutex<()>,
    /// Per token name: requests left in the bucket, and when it was last filled.
    buckets: Buckets<String>,
    /// The same per client address, for requests without a known token.
    strangers: Buckets<std::net::IpAddr>,
}

type Buckets<K> = std::sync::Mutex<std::collections::HashMap<K, (f64, std::time::Instant)>>;

/// Requests a client address may make per second without a known token, sustained (wall
/// screens read without one; a guesser of tokens is slowed down).
pub const STRANGER_RATE_PER_S: f64 = 50.0;
/// Requests a client address may make at once without a known token.
pub const STRANGER_BURST: f64 = 200.0;
/// Addresses remembered at most; full buckets are forgotten first.
const MAX_STRANGERS: usize = 10_000;

/// Requests a token may make per second, sustained.
pub const RATE_PER_S: f64 = 20.0;
/// Requests a token may make at once.
pub const BURST: f64 = 100.0;

/// One request from `key`'s token bucket; `false` when it is spent.
fn take<K: std::hash::Hash + Eq>(buckets: &Buckets<K>, key: K, burst: f64, rate: f64) -> bool {
    let now = std::time::Instant::now();
    let mut buckets = buckets
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (left, at) = buckets.entry(key).or_insert((burst, now));
    *left = (*left + now.duration_since(*at).as_secs_f64() * rate).min(burst);
    *at = now;
    if *left >= 1.0 {
        *left -= 1.0;
        true
    } else {
        false
    }
}

/// Checks a token's holder name: what the journal records as the actor, shown in the page.
pub fn check_name(name: &str) -> Result<(), String> {
    let n = name.chars().count();
    if n == 0 || n > 64 {
        return Err(format!("token name must be 1-64 characters, got {n}"));
    }
    if name.trim() != name {
        return Err("token name must not begin or end with a space".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_control() || matches!(c, '<' | '>' | '"' | '\\'))
    {
        return Err(format!("token name must not hold {c:?}"));
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn digest(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

impl Auth {
    /// Tokens in `data_dir/tokens.json`.
    pub fn new(mode: AuthMode, data_dir: &Path) -> Auth {
        Auth {
            mode,
            path: data_dir.join("tokens.json"),
            writing: Default::default(),
            buckets: Default::default(),
            strangers: Default::default(),
        }
    }

    /// Takes one request from `name`'s budget (a token bucket: `BURST` at once, `RATE_PER_S`
    /// sustained); `false` when it is spent.
    pub fn allow(&self, name: &str) -> bool {
        take(&self.buckets, name.to_owned(), BURST, RATE_PER_S)
    }

    /// Takes one request from the budget of a client address without a known token.
    pub fn allow_stranger(&self, addr: std::net::IpAddr) -> bool {
        {
            let mut map = self
                .strangers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if map.len() >= MAX_STRANGERS {
                let now = std::time::Instant::now();
                map.retain(|_, (left, at)| {
                    *left + now.duration_since(*at).as_secs_f64() * STRANGER_RATE_PER_S
                        < STRANGER_BURST
                });
            }
        }
        take(&self.strangers, addr, STRANGER_BURST, STRANGER_RATE_PER_S)
    }

    fn load(&self) -> Result<Vec<TokenRow>, String> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => {
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", self.path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(format!("{}: {e}", self.path.display())),
        }
    }

    /// Creates a token for `name` with `role`, stores its hash, and returns the token (shown
    /// once). A token of the same name is replaced.
    pub fn create(&self, name: &str, role: &Role) -> Result<String, String> {
        check_name(name)?;
        let mut bytes = [0u8; 24];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .map_err(|e| format!("no randomness for a token: {e}"))?;
        let token = format!("cw_{}", hex(&bytes));
        let _writing = self
            .writing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut rows = self.load()?;
        rows.retain(|r| r.name != name);
        rows.push(TokenRow {
            name: name.to_owned(),
            role: role.as_string(),
            sha256: digest(&token),
            created_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        });
        self.store(&rows)?;
        Ok(token)
    }

    /// Writes the whole file anew and renames it into place: a reader never sees half a file.
    fn store(&self, rows: &[TokenRow]) -> Result<(), String> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        let text = serde_json::to_string_pretty(rows).map_err(|e| e.to_string())?;
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| format!("{}: {e}", self.path.display()))
    }

    /// Every token's name, role and creation time (never a hash), oldest first.
    pub fn list(&self) -> Result<Vec<TokenRow>, String> {
        let mut rows = self.load()?;
        for r in &mut rows {
            r.sha256.clear();
        }
        Ok(rows)
    }

    /// Revokes the token named `name`; `false` when there was none.
    pub fn revoke(&self, name: &str) -> Result<bool, String> {
        let _writing = self
            .writing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut rows = self.load()?;
        let before = rows.len();
        rows.retain(|r| r.name != name);
        if rows.len() == before {
            return Ok(false);
        }
        self.store(&rows)?;
        Ok(true)
    }

    /// The (name, role) a bearer token belongs to. The file is read on each call, so tokens
    /// created by the CLI count at once.
    fn identify(&self, token: &str) -> Result<Option<(String, Role)>, String> {
        let hash = digest(token);
        Ok(self
            .load()?
            .into_iter()
            .find(|r| r.sha256 == hash)
            .and_then(|r| Role::parse(&r.role).ok().map(|role| (r.name, role))))
    }
}

/// Who is calling: from `Authorization: Bearer <token>`.
#[derive(Debug, Clone, PartialEq)]
pub enum Caller {
    /// No token (or auth is off).
    Anonymous,
    Known {
        name: String,
        role: Role,
    },
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Caller, ApiError> {
        // Already identified by the read guard: once per request, against the budget too.
        if let Some(known) = parts.extensions.get::<Caller>() {
            return Ok(known.clone());
        }
        let Some(header) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
            return Ok(Caller::Anonymous);
        };
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| ApiError::unauthorized("Authorization must be \"Bearer <token>\""))?;
        match s.auth.identify(token.trim()) {
            Ok(Some((name, _))) if !s.auth.allow(&name) => Err(ApiError::too_many(format!(
                "{name}: more than {RATE_PER_S} requests/s (bursts of {BURST}); slow down"
            ))),
            Ok(Some((name, role))) => Ok(Caller::Known { name, role }),
            // With auth off nothing is checked, not even that a token was issued.
            Ok(None) if s.auth.mode == AuthMode::Off => Ok(Caller::Anonymous),
            Ok(None) => Err(ApiError::unauthorized("unknown token")),
            Err(e) => Err(ApiError::internal(e)),
        }
    }
}

/// Checks every call before its handler runs and before its body is read:
/// - a call of the API or the metrics without a known token is paced per client address
///   ([`STRANGER_BURST`], [`STRANGER_RATE_PER_S`]; 429 past it);
/// - with [`AuthMode::All`], such a call is refused (401);
/// - a write under `/api/` needs a known token of a role that may write there (401, 403), so
///   a stranger learns nothing from how a body is judged. Handlers check the finer rules (a
///   unit's own alerts) again.
pub async fn guard(
    axum::extract::State(s): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = req.uri().path();
    let guarded = path.starts_with("/api/") && path != "/api/v1/openapi.json" || path == "/metrics";
    if !guarded || s.auth.mode == AuthMode::Off {
        return next.run(req).await;
    }
    let write = write_need(req.method(), path);
    let (mut parts, body) = req.into_parts();
    let caller = Caller::from_request_parts(&mut parts, &s).await;
    if !matches!(caller, Ok(Caller::Known { .. }))
        && let Some(addr) = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        && !s.auth.allow_stranger(addr.0.ip())
    {
        return ApiError::too_many(format!(
            "more than {STRANGER_RATE_PER_S} requests/s without a token (bursts of {STRANGER_BURST}); slow down"
        ))
        .into_response();
    }
    let caller = match caller {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let checked = match (write, &caller) {
        (Some(need), _) => caller.may_write(&s.auth, need),
        (None, Caller::Anonymous) if s.auth.mode == AuthMode::All => Err(ApiError::unauthorized(
            "reads need a token here: Authorization: Bearer <token> (citywatch token create)",
        )),
        (None, _) => Ok(()),
    };
    if let Err(e) = checked {
        return e.into_response();
    }
    if let known @ Caller::Known { .. } = caller {
        parts.extensions.insert(known);
    }
    next.run(axum::extract::Request::from_parts(parts, body))
        .await
}

/// What a write to `path` needs, or `None` for a read.
fn write_need(method: &axum::http::Method, path: &str) -> Option<Need> {
    use axum::http::Method;
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    let under = |p: &str| path == p || path.starts_with(&format!("{p}/"));
    let explains = path.starts_with("/api/v1/rules/") && path.ends_with("/explain");
    Some(if path == "/api/v1/rules/validate" || explains {
        Need::Token
    } else if under("/api/v1/rules") || under("/api/v1/reference") || under("/api/v1/tokens") {
        Need::Admin
    } else if under("/api/v1/alerts") {
        Need::OperatorOrUnit
    } else {
        Need::Operator
    })
}

/// What a write needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Any known token (checking a rule file).
    Token,
    /// Silences: operator or admin.
    Operator,
    /// Alert actions: operator, admin, or a unit (on its own alerts: [`Caller::may_act_on`]).
    OperatorOrUnit,
    /// Rules: admin.
    Admin,
}

impl Caller {
    /// The first check of a write, before its body is read: who, and of which role.
    fn may_write(&self, auth: &Auth, need: Need) -> Result<(), ApiError> {
        match (need, self) {
            (Need::Token | Need::OperatorOrUnit, Caller::Known { .. })
                if need == Need::Token || self.unit().is_some() =>
            {
                Ok(())
            }
            (Need::OperatorOrUnit, _) => self.require(auth, Need::Operator, None).map(drop),
            _ => self.require(auth, need, None).map(drop),
        }
    }

    /// Checks a write; returns the name to record as the actor (`fallback` when auth is off).
    pub fn require(
        &self,
        auth: &Auth,
        need: Need,
        fallback: Option<&str>,
    ) -> Result<String, ApiError> {
        if auth.mode == AuthMode::Off {
            return match self {
                Caller::Known { name, .. } => Ok(name.clone()),
                Caller::Anonymous => Ok(fallback.unwrap_or("anonymous").to_owned()),
            };
        }
        let Caller::Known { name, role } = self else {
            return Err(ApiError::unauthorized(
                "this needs a token: Authorization: Bearer <token> (citywatch token create)",
            ));
        };
        let ok = matches!(
            (need, role),
            (_, Role::Admin)
                | (Need::Token, _)
                | (Need::Operator | Need::OperatorOrUnit, Role::Operator)
        );
        if ok {
            Ok(name.clone())
        } else {
            Err(ApiError::forbidden(format!(
                "{name} ({}) may not do this: it needs {}",
                role.as_string(),
                match need {
                    Need::Token => "a token",
                    Need::Operator | Need::OperatorOrUnit => "operator or admin",
                    Need::Admin => "admin",
                }
            )))
        }
    }

    /// Checks an action on an alert whose maintenance unit is `unit`: operators and admins
    /// may act on any; a unit only on its own.
    pub fn may_act_on(
        &self,
        auth: &Auth,
        unit: Option<&str>,
        fallback: Option<&str>,
    ) -> Result<String, ApiError> {
        if let Caller::Known {
            name,
            role: Role::Unit(id),
        } = self
            && auth.mode != AuthMode::Off
        {
            return if unit == Some(id.as_str()) {
                Ok(name.clone())
            } else {
                Err(ApiError::forbidden(format!(
                    "{name} (unit:{id}) may act only on its own unit's alerts"
                )))
            };
        }
        self.require(auth, Need::Operator, fallback)
    }

    /// The maintenance unit a caller is restricted to, if any.
    pub fn unit(&self) -> Option<&str> {
        match self {
            Caller::Known {
                role: Role::Unit(id),
                ..
            } => Some(id),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stored_hashed_and_identify_their_role() {
        let dir = tempfile::tempdir().unwrap();
        let auth = Auth::new(AuthMode::Writes, dir.path());
        let token = auth.create("李科长", &Role::Operator).unwrap();
        let unit = auth
            .create("安达维保", &Role::Unit("MU-02".into()))
            .unwrap();
        let text = std::fs::read_to_string(dir.path().join("tokens.json")).unwrap();
        assert!(!text.contains(&token), "the token itself is not stored");
        assert_eq!(
            auth.identify(&token).unwrap(),
            Some(("李科长".into(), Role::Operator))
        );
        assert_eq!(
            auth.identify(&unit).unwrap().map(|(_, r)| r),
            Some(Role::Unit("MU-02".into()))
        );
        assert_eq!(auth.identify("cw_nope").unwrap(), None);
        assert!(Role::parse("unit:").is_err());
        assert!(Role::parse("mayor").unwrap_err().contains("expected"));
    }

    #[test]
    fn a_revoked_token_no_longer_identifies_and_listing_shows_no_hash() {
        let dir = tempfile::tempdir().unwrap();
        let auth = Auth::new(AuthMode::Writes, dir.path());
        let a = auth.create("a", &Role::Viewer).unwrap();
        let b = auth.create("b", &Role::Admin).unwrap();
        let listed = auth.list().unwrap();
        assert_eq!(
            listed
                .iter()
                .map(|r| (&*r.name, &*r.role))
                .collect::<Vec<_>>(),
            [("a", "viewer"), ("b", "admin")]
        );
        assert!(listed.iter().all(|r| r.sha256.is_empty()));
        assert!(auth.revoke("a").unwrap());
        assert!(!auth.revoke("a").unwrap(), "already gone");
        assert_eq!(auth.identify(&a).unwrap(), None);
        assert_eq!(auth.identify(&b).unwrap().map(|(n, _)| n), Some("b".into()));
    }

    #[test]
    fn a_token_has_a_burst_then_a_rate() {
        let dir = tempfile::tempdir().unwrap();
        let auth = Auth::new(AuthMode::Writes, dir.path());
        let allowed = (0..(BURST as usize + 10))
            .filter(|_| auth.allow("a"))
            .count();
        assert_eq!(allowed, BURST as usize);
        assert!(auth.allow("b"), "budgets are per token");
    }

    #[test]
    fn roles_draw_the_lines() {
        let dir = tempfile::tempdir().unwrap();
        let auth = Auth::new(AuthMode::Writes, dir.path());
        let known = |role| Caller::Known {
            name: "x".into(),
            role,
        };
        assert!(
            Caller::Anonymous
                .require(&auth, Need::Operator, None)
                .is_err()
        );
        assert!(
            known(Role::Viewer)
                .require(&auth, Need::Operator, None)
                .is_err()
        );
        assert!(
            known(Role::Operator)
                .require(&auth, Need::Operator, None)
                .is_ok()
        );
        assert!(
            known(Role::Operator)
                .require(&auth, Need::Admin, None)
                .is_err()
        );
        assert!(known(Role::Admin).require(&auth, Need::Admin, None).is_ok());
        let unit = known(Role::Unit("MU-02".into()));
        assert!(unit.may_act_on(&auth, Some("MU-02"), None).is_ok());
        assert!(unit.may_act_on(&auth, Some("MU-03"), None).is_err());
        assert!(unit.require(&auth, Need::Operator, None).is_err());
        let off = Auth::new(AuthMode::Off, dir.path());
        assert_eq!(
            Caller::Anonymous
                .require(&off, Need::Admin, Some("控制室"))
                .unwrap(),
            "控制室"
        );
    }
}
