//! Settings, layered: built-in defaults → config file (`--config`, TOML) → environment
//! (`CITYWATCH_<KEY>`) → command-line flags. Unknown keys are errors.

use crate::logging::LogFormat;
use anyhow::Context;
use clap::Args;
use dataflow::ClockMode;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Every setting of `citywatch run`. Each key is also `CITYWATCH_<KEY>` in the environment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// HTTP listen address.
    pub http: SocketAddr,
    /// `embedded` or `mqtt://host:port`.
    pub mqtt: String,
    /// Where the embedded broker listens.
    pub embedded_broker_addr: SocketAddr,
    /// Where citywatch keeps its state (dead letters, …).
    pub data_dir: PathBuf,
    /// Timely worker threads.
    pub workers: usize,
    /// Reference data directory; none means empty registries.
    pub reference: Option<PathBuf>,
    /// Rule files directory; `none` for no rules; unset: the default pack built into the
    /// binary.
    pub rules: Option<PathBuf>,
    /// Log line format.
    pub log_format: LogFormat,
    /// MQTT client id (stable: the broker keeps this session while citywatch is down).
    pub mqtt_client_id: String,
    /// MQTT user name.
    pub mqtt_username: Option<String>,
    /// MQTT password (prefer the environment, `CITYWATCH_MQTT_PASSWORD`, to a flag).
    pub mqtt_password: Option<String>,
    /// CA certificates (PEM) of the broker's certificate for `mqtts://` (the system's roots
    /// without it).
    pub mqtt_tls_ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM) for the broker.
    pub mqtt_tls_client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub mqtt_tls_client_key: Option<PathBuf>,
    /// The embedded broker's users file (`name sha256-hex-of-password` per line).
    pub embedded_broker_users: Option<PathBuf>,
    /// Take maintenance units' MQTT answers without a signature (only behind a broker whose
    /// ACLs let each unit publish on its own ack topic alone).
    pub accept_unsigned_acks: bool,
    /// CA certificates (PEM) trusted for https webhooks besides the system's roots.
    pub webhook_ca_file: Option<PathBuf>,
    /// Bounds on rule text (API and files): `[rule_limits]` with `max_expr_bytes`,
    /// `max_expr_depth`, `max_expr_tokens`, `max_file_bytes`, `max_file_depth`.
    pub rule_limits: rules::limits::Limits,
    /// Topic prefix of the device contract.
    pub mqtt_prefix: String,
    /// Largest accepted payload, bytes.
    pub max_payload_bytes: usize,
    /// Events queued between MQTT and the dataflow.
    pub queue_capacity: usize,
    /// How far the frontier is held behind the newest event, ms.
    pub lateness_ms: u64,
    /// Granularity of dataflow timestamps, ms.
    pub tick_ms: u64,
    /// What drives the frontier: `wall` (live) or `event` (replay).
    pub clock: ClockMode,
    /// Disk space for dead letters, bytes.
    pub deadletter_max_bytes: u64,
    /// Log every device message before acknowledging it, and replay at start what was not
    /// journaled (on by default; off acknowledges once the dataflow has a message).
    pub input_log: bool,
    /// `fsync` (survives a power cut) or `os` (survives the process dying only).
    pub input_log_sync: ingest::input_log::SyncPolicy,
    /// How long a segment of the input log is kept after its last write once the alerts have
    /// accounted for it, ms: the history "why did this rule not fire" reads (docs/explain.md).
    pub input_log_keep_ms: u64,
    /// How often the dataflow's state is checkpointed, ms (needs the input log; 0: never, a
    /// restart then starts the rules' state afresh).
    pub checkpoint_every_ms: u64,
    /// A device event up to this far behind the frontier is judged by the rules at its own
    /// time on its device's timeline; one further behind, at the frontier, ms.
    pub max_backlog_ms: u64,
    /// The same for complaints (a 12315 feed that delivers a day's complaints late), ms.
    pub complaint_max_backlog_ms: u64,
    /// A device whose own time jumps by more than this keeps what it takes to put a late part
    /// of the gap in order (docs/rules.md, "Every device on its own clock"), ms; 0: every event.
    pub reorder_gap_ms: u64,
    /// ... for this long after the gap, ms (0: events older than the latest are judged at it).
    pub reorder_ms: u64,
    /// ... and for at most this many events.
    pub reorder_events: usize,
    /// How many matched events (or window items) an alert's explanation keeps
    /// (docs/explain.md).
    pub explain_events: usize,
    /// InfluxDB v2 base URL; the time-series sink is off without it.
    pub influx_url: Option<String>,
    /// InfluxDB organization.
    pub influx_org: String,
    /// InfluxDB bucket.
    pub influx_bucket: String,
    /// InfluxDB token: set it in the environment (`CITYWATCH_INFLUX_TOKEN`), never as a flag.
    pub influx_token: Option<String>,
    /// Points per write.
    pub influx_batch_points: usize,
    /// Longest a point waits for its batch, ms.
    pub influx_batch_interval_ms: u64,
    /// Disk for batches waiting for the server, bytes.
    pub influx_spool_max_bytes: u64,
    /// Also write every raw event (large: off by default).
    pub influx_raw_telemetry: bool,
    /// How often (in event time) a snapshot of every counter is written, ms.
    pub influx_snapshot_interval_ms: u64,
    /// `writes` (writes need a token with the right role) or `off`.
    pub auth: api::auth::AuthMode,
    /// Processes of the timely cluster (1: no cluster).
    pub processes: usize,
    /// This process's index in the cluster, from 0.
    pub process_index: usize,
    /// The cluster's hosts file: per process, in index order, `host:port` of its workers and
    /// optionally the URL of its HTTP API.
    pub hosts: Option<PathBuf>,
    /// The shared-subscription group the processes of a cluster subscribe in.
    pub mqtt_share_group: String,
}

/// Where the rules in force come from (`--rules`).
#[derive(Debug, Clone, PartialEq)]
pub enum RuleSource {
    /// Unset: the default pack built into the binary (changeable through the API).
    BuiltIn,
    /// `--rules none`: no rules, no alerts.
    None,
    /// `--rules DIR`: the rule files there, reloaded when they change.
    Dir(PathBuf),
}

impl RuleSource {
    /// Whether any rules run (and so alerts exist).
    pub fn any(&self) -> bool {
        *self != RuleSource::None
    }

    /// What to say at start about where the rules come from.
    pub fn describe(&self, n: usize) -> String {
        match self {
            RuleSource::BuiltIn => format!(
                "rules: the built-in default pack ({n} rules); --rules DIR for others, --rules none for none"
            ),
            RuleSource::None => "rules: none (--rules none): no conditions, no alerts".into(),
            RuleSource::Dir(d) => format!("rules: {n} from {}", d.display()),
        }
    }
}

/// This process's place in a cluster, from the hosts file.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    pub process: usize,
    /// Where each process's timely workers listen.
    pub addresses: Vec<String>,
    /// Each process's HTTP API, where the hosts file gives it.
    pub api_urls: Vec<Option<String>>,
}

impl Cluster {
    /// Parses a hosts file: one process per line (`host:port [http://host:port]`), blank lines
    /// and `#` comments skipped.
    pub fn parse(text: &str, process: usize, processes: usize) -> anyhow::Result<Cluster> {
        let mut addresses = Vec::new();
        let mut api_urls = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let addr = parts.next().unwrap_or_default();
            anyhow::ensure!(
                addr.rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()),
                "hosts file line {}: {addr:?} is not host:port",
                n + 1
            );
            let url = parts.next().map(|u| u.trim_end_matches('/').to_owned());
            if let Some(u) = &url {
                anyhow::ensure!(
                    u.starts_with("http://") || u.starts_with("https://"),
                    "hosts file line {}: {u:?} is not an http(s) URL",
                    n + 1
                );
            }
            anyhow::ensure!(
                parts.next().is_none(),
                "hosts file line {}: expected host:port and at most a URL",
                n + 1
            );
            addresses.push(addr.to_owned());
            api_urls.push(url);
        }
        anyhow::ensure!(
            addresses.len() == processes,
            "the hosts file names {} processes, but processes = {processes}",
            addresses.len()
        );
        anyhow::ensure!(
            process < processes,
            "process_index {process} is not below processes = {processes}"
        );
        Ok(Cluster {
            process,
            addresses,
            api_urls,
        })
    }
}

impl Default for Settings {
    fn default() -> Self {
        let mqtt = ingest::MqttConfig::default();
        let df = dataflow::DataflowConfig::default();
        let influx = influx::InfluxConfig::default();
        Settings {
            http: SocketAddr::from(([127, 0, 0, 1], 8080)),
            mqtt: mqtt.url,
            embedded_broker_addr: mqtt.embedded_broker_addr,
            data_dir: PathBuf::from("./citywatch-data"),
            workers: df.workers,
            reference: None,
            rules: None,
            log_format: LogFormat::Text,
            mqtt_client_id: mqtt.client_id,
            mqtt_username: None,
            mqtt_password: None,
            mqtt_tls_ca_file: None,
            mqtt_tls_client_cert: None,
            mqtt_tls_client_key: None,
            embedded_broker_users: None,
            accept_unsigned_acks: false,
            webhook_ca_file: None,
            rule_limits: rules::limits::Limits::default(),
            mqtt_prefix: mqtt.prefix,
            max_payload_bytes: mqtt.max_payload_bytes,
            queue_capacity: mqtt.queue_capacity,
            lateness_ms: df.lateness_ms,
            tick_ms: df.tick_ms,
            clock: df.clock,
            deadletter_max_bytes: 64 << 20,
            input_log: true,
            input_log_sync: ingest::input_log::SyncPolicy::Fsync,
            input_log_keep_ms: 3_600_000,
            checkpoint_every_ms: 10_000,
            max_backlog_ms: df.max_backlog_ms,
            complaint_max_backlog_ms: df.complaint_max_backlog_ms,
            reorder_gap_ms: df.reorder_gap_ms,
            reorder_ms: df.reorder_ms,
            reorder_events: df.reorder_events,
            explain_events: df.explain_events,
            influx_url: None,
            influx_org: influx.org,
            influx_bucket: influx.bucket,
            influx_token: None,
            influx_batch_points: influx.batch_points,
            influx_batch_interval_ms: influx.batch_interval_ms,
            influx_spool_max_bytes: influx.spool_max_bytes,
            influx_raw_telemetry: false,
            influx_snapshot_interval_ms: 10_000,
            auth: api::auth::AuthMode::Writes,
            processes: 1,
            process_index: 0,
            hosts: None,
            mqtt_share_group: "citywatch".into(),
        }
    }
}

/// Flags of `citywatch run` (each overrides the file and the environment).
#[derive(Debug, Clone, Default, Args, Serialize)]
pub struct RunArgs {
    /// Config file (TOML).
    #[arg(long, env = "CITYWATCH_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// HTTP listen address [default: 127.0.0.1:8080].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<SocketAddr>,
    /// `embedded` or `mqtt://host:port` [default: embedded].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtt: Option<String>,
    /// Embedded broker address [default: 127.0.0.1:1884].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedded_broker_addr: Option<SocketAddr>,
    /// MQTT user name.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtt_username: Option<String>,
    /// MQTT password (visible in the process list: prefer CITYWATCH_MQTT_PASSWORD).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtt_password: Option<String>,
    /// CA file (PEM) of the broker's certificate, for mqtts:// [default: system roots].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtt_tls_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for the broker.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtt_tls_client_cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtt_tls_client_key: Option<PathBuf>,
    /// Users file of the embedded broker (`name sha256-hex` per line).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedded_broker_users: Option<PathBuf>,
    /// CA file (PEM) trusted for https webhooks besides the system's roots.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_ca_file: Option<PathBuf>,
    /// Data directory [default: ./citywatch-data].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Timely worker threads [default: 2].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
    /// Reference data directory.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<PathBuf>,
    /// Rule files directory (TOML), or `none` [default: the built-in default pack].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<PathBuf>,
    /// Log format [default: text].
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    /// Lateness bound, ms [default: 2000].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lateness_ms: Option<u64>,
    /// Frontier driver: wall or event [default: wall; replay uses event].
    #[arg(long, value_parser = parse_clock)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock: Option<ClockMode>,
    /// InfluxDB v2 URL, e.g. http://127.0.0.1:8086 (token: CITYWATCH_INFLUX_TOKEN).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub influx_url: Option<String>,
    /// InfluxDB organization [default: citywatch].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub influx_org: Option<String>,
    /// InfluxDB bucket [default: citywatch].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub influx_bucket: Option<String>,
    /// Also write every raw event to InfluxDB (large) [default: false].
    #[arg(long = "influx-raw", num_args = 0..=1, default_missing_value = "true")]
    #[serde(
        rename = "influx_raw_telemetry",
        skip_serializing_if = "Option::is_none"
    )]
    pub influx_raw: Option<bool>,
    /// `writes`: API writes need a token (`citywatch token create`); `all`: reads too; `off`:
    /// no checks [default: writes].
    #[arg(long, value_parser = parse_auth)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<api::auth::AuthMode>,
    /// Processes of the timely cluster [default: 1].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processes: Option<usize>,
    /// This process's index in the cluster [default: 0].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_index: Option<usize>,
    /// The cluster's hosts file (one `host:port [http://api]` line per process).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hosts: Option<PathBuf>,
}

fn parse_auth(s: &str) -> Result<api::auth::AuthMode, String> {
    match s {
        "writes" => Ok(api::auth::AuthMode::Writes),
        "all" => Ok(api::auth::AuthMode::All),
        "off" => Ok(api::auth::AuthMode::Off),
        _ => Err(format!("{s:?}: expected writes, all or off")),
    }
}

fn parse_clock(s: &str) -> Result<ClockMode, String> {
    match s {
        "wall" => Ok(ClockMode::Wall),
        "event" => Ok(ClockMode::Event),
        _ => Err(format!("{s:?}: expected wall or event")),
    }
}

impl Settings {
    /// Merges the layers and validates.
    pub fn load(args: &RunArgs) -> anyhow::Result<Settings> {
        let mut fig = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = &args.config {
            anyhow::ensure!(
                path.exists(),
                "config file {} does not exist",
                path.display()
            );
            fig = fig.merge(Toml::file(path));
        }
        // Only known keys: other CITYWATCH_ variables (secrets for other parts) are not ours.
        let known: Vec<String> = match serde_json::to_value(Settings::default()) {
            Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
            _ => Vec::new(),
        };
        let fig = fig
            .merge(
                Env::prefixed("CITYWATCH_")
                    .filter(move |k| known.iter().any(|n| k.as_str().eq_ignore_ascii_case(n))),
            )
            .merge(Serialized::defaults(args));
        let s: Settings = fig.extract().context("invalid settings")?;
        anyhow::ensure!(s.workers >= 1, "workers must be at least 1");
        anyhow::ensure!(s.tick_ms >= 1, "tick_ms must be at least 1");
        // An episode found inside a late backlog stops a millisecond after it starts; a
        // checkpoint (at a multiple of the tick) must never fall between the two.
        anyhow::ensure!(
            s.tick_ms >= 2 || s.checkpoint_every_ms == 0,
            "tick_ms must be at least 2 with checkpoints on (checkpoint_every_ms > 0)"
        );
        anyhow::ensure!(s.processes >= 1, "processes must be at least 1");
        anyhow::ensure!(
            s.mqtt_tls_client_cert.is_some() == s.mqtt_tls_client_key.is_some(),
            "mqtt_tls_client_cert and mqtt_tls_client_key go together"
        );
        if s.processes > 1 {
            anyhow::ensure!(
                s.mqtt != "embedded",
                "a cluster needs an external broker (--mqtt mqtt://host:port): the embedded one \
                 would stop with the process that runs it"
            );
            s.cluster()?;
        }
        Ok(s)
    }

    /// This process's place in the cluster; none when it runs alone.
    pub fn cluster(&self) -> anyhow::Result<Option<Cluster>> {
        if self.processes <= 1 {
            return Ok(None);
        }
        let path = self
            .hosts
            .as_ref()
            .context("a cluster (processes > 1) needs a hosts file (--hosts FILE)")?;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the hosts file {}", path.display()))?;
        Cluster::parse(&text, self.process_index, self.processes)
            .with_context(|| format!("in the hosts file {}", path.display()))
            .map(Some)
    }

    /// Whether this process owns the alerts, the API and rule changes (process 0).
    pub fn is_leader(&self) -> bool {
        self.processes <= 1 || self.process_index == 0
    }

    /// The payload decoder ingest uses, for messages fed again from a log at start.
    pub fn decoder(&self) -> model::Decoder {
        model::Decoder::new(model::DecoderConfig {
            prefix: self.mqtt_prefix.clone(),
            max_payload_bytes: self.max_payload_bytes,
            ..model::DecoderConfig::default()
        })
    }

    pub fn mqtt_config(&self) -> ingest::MqttConfig {
        let mut config = ingest::MqttConfig {
            url: self.mqtt.clone(),
            embedded_broker_addr: self.embedded_broker_addr,
            embedded_broker_users: self.embedded_broker_users.clone(),
            tls_ca_file: self.mqtt_tls_ca_file.clone(),
            tls_client_cert: self.mqtt_tls_client_cert.clone(),
            tls_client_key: self.mqtt_tls_client_key.clone(),
            client_id: self.mqtt_client_id.clone(),
            username: self.mqtt_username.clone(),
            password: self.mqtt_password.clone(),
            prefix: self.mqtt_prefix.clone(),
            max_payload_bytes: self.max_payload_bytes,
            queue_capacity: self.queue_capacity,
            ..ingest::MqttConfig::default()
        };
        // In a cluster each process has its own session and takes its share of the messages.
        if self.processes > 1 {
            config.client_id = format!("{}-{}", self.mqtt_client_id, self.process_index);
            config.share_group = Some(self.mqtt_share_group.clone());
        }
        config
    }

    pub fn dataflow_config(&self) -> dataflow::DataflowConfig {
        dataflow::DataflowConfig {
            workers: self.workers,
            tick_ms: self.tick_ms,
            lateness_ms: self.lateness_ms,
            clock: self.clock,
            max_backlog_ms: self.max_backlog_ms,
            complaint_max_backlog_ms: self.complaint_max_backlog_ms,
            reorder_gap_ms: self.reorder_gap_ms,
            reorder_ms: self.reorder_ms,
            reorder_events: self.reorder_events,
            explain_events: self.explain_events,
            cluster: self
                .cluster()
                .ok()
                .flatten()
                .map(|c| dataflow::ClusterConfig {
                    process: c.process,
                    addresses: c.addresses,
                }),
            ..dataflow::DataflowConfig::default()
        }
    }

    pub fn influx_config(&self) -> influx::InfluxConfig {
        influx::InfluxConfig {
            url: self.influx_url.clone().filter(|u| !u.is_empty()),
            org: self.influx_org.clone(),
            bucket: self.influx_bucket.clone(),
            token: self.influx_token.clone(),
            batch_points: self.influx_batch_points,
            batch_interval_ms: self.influx_batch_interval_ms,
            spool_max_bytes: self.influx_spool_max_bytes,
            ..influx::InfluxConfig::default()
        }
    }

    /// Where the rules in force come from.
    pub fn rule_source(&self) -> RuleSource {
        match &self.rules {
            None => RuleSource::BuiltIn,
            Some(p) if p.as_os_str() == "none" => RuleSource::None,
            Some(dir) => RuleSource::Dir(dir.clone()),
        }
    }

    /// The rules in force at start, or an error listing every problem
    /// (`file:line:column: why`).
    pub fn rules(&self) -> anyhow::Result<Vec<rules::Rule>> {
        match self.rule_source() {
            RuleSource::None => Ok(Vec::new()),
            RuleSource::BuiltIn => rules::default_pack()
                .map_err(|e| anyhow::anyhow!("invalid built-in rules:\n{}", listed(&e))),
            RuleSource::Dir(dir) => rules::load_dir(&dir).map_err(|e| {
                anyhow::anyhow!("invalid rules in {}:\n{}", dir.display(), listed(&e))
            }),
        }
    }

    /// The incident rules of the rule files (or the built-in pack's), checked against the
    /// alert rules `base` read from the same place ([`Settings::rules`]); none without rules.
    pub fn incidents(&self, base: &[rules::Rule]) -> anyhow::Result<Vec<rules::IncidentRule>> {
        match self.rule_source() {
            RuleSource::None => Ok(Vec::new()),
            RuleSource::BuiltIn => rules::default_incidents(base)
                .map_err(|e| anyhow::anyhow!("invalid built-in incident rules:\n{}", listed(&e))),
            RuleSource::Dir(dir) => rules::load_incidents_dir(&dir, base).map_err(|e| {
                anyhow::anyhow!(
                    "invalid incident rules in {}:\n{}",
                    dir.display(),
                    listed(&e)
                )
            }),
        }
    }

    /// The reference data: the tables of `--reference`, each replaced by its copy in
    /// [`Settings::reference_changes_dir`] when it was changed at run time.
    pub fn reference(&self) -> anyhow::Result<dataflow::Reference> {
        let changed = self.reference_changes_dir();
        let dirs: Vec<&std::path::Path> = self
            .reference
            .as_deref()
            .into_iter()
            .chain([changed.as_path()])
            .collect();
        dataflow::Reference::load_layers(&dirs).with_context(|| {
            format!(
                "loading reference data from {}",
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" and ")
            )
        })
    }

    /// Where tables replaced through the API are kept.
    pub fn reference_changes_dir(&self) -> PathBuf {
        self.data_dir.join("reference")
    }
}

/// Every problem of a rule file, one `file:line:column: why` a line.
fn listed(errors: &[rules::RuleError]) -> String {
    let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_config_parses_and_flags_win() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/citywatch.toml");
        let args = RunArgs {
            config: Some(path),
            workers: Some(3),
            ..Default::default()
        };
        let s = Settings::load(&args).unwrap();
        assert_eq!(s.workers, 3);
        assert_eq!(s.lateness_ms, 2000);
        assert!(s.reference.is_some());
        assert!(!s.influx_raw_telemetry && !s.accept_unsigned_acks);
        assert_eq!(s.rule_limits, rules::limits::Limits::default());
        assert_eq!(s.rule_source(), RuleSource::BuiltIn);
    }

    #[test]
    fn flags_of_the_command_line_reach_their_keys() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            run: RunArgs,
        }
        let cli = Cli::parse_from([
            "citywatch",
            "--influx-raw",
            "--rules",
            "none",
            "--mqtt-username",
            "cw",
            "--mqtt-tls-ca-file",
            "/etc/ca.crt",
        ]);
        let s = Settings::load(&cli.run).unwrap();
        assert!(s.influx_raw_telemetry);
        assert_eq!(s.rule_source(), RuleSource::None);
        assert_eq!(s.mqtt_username.as_deref(), Some("cw"));
        assert_eq!(
            s.mqtt_config().tls_ca_file,
            Some(PathBuf::from("/etc/ca.crt"))
        );
        let quiet = Cli::parse_from(["citywatch"]);
        assert!(!Settings::load(&quiet.run).unwrap().influx_raw_telemetry);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "htpp = \"127.0.0.1:1\"\n").unwrap();
        let err = Settings::load(&RunArgs {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("htpp"), "{err:#}");
    }

    #[test]
    fn a_one_millisecond_tick_needs_checkpoints_off() {
        let dir = tempfile::tempdir().unwrap();
        let load = |text: &str| {
            let path = dir.path().join("c.toml");
            std::fs::write(&path, text).unwrap();
            Settings::load(&RunArgs {
                config: Some(path),
                ..Default::default()
            })
        };
        let err = load("tick_ms = 1\n").unwrap_err();
        assert!(
            format!("{err:#}").contains("tick_ms must be at least 2"),
            "{err:#}"
        );
        assert!(load("tick_ms = 1\ncheckpoint_every_ms = 0\n").is_ok());
        assert!(load("tick_ms = 2\n").is_ok());
    }

    #[test]
    fn a_hosts_file_places_this_process_in_its_cluster() {
        let text = "# the city\n10.0.0.1:2101 http://10.0.0.1:8080/\n\n10.0.0.2:2101\n";
        let c = Cluster::parse(text, 1, 2).unwrap();
        assert_eq!(c.process, 1);
        assert_eq!(c.addresses, ["10.0.0.1:2101", "10.0.0.2:2101"]);
        assert_eq!(c.api_urls, [Some("http://10.0.0.1:8080".to_owned()), None]);
        for (text, index, n, why) in [
            (text, 0, 3, "names 2 processes"),
            (text, 2, 2, "not below processes"),
            ("10.0.0.1\n", 0, 1, "not host:port"),
            ("10.0.0.1:1 ftp://x\n", 0, 1, "not an http(s) URL"),
            ("10.0.0.1:1 http://x y\n", 0, 1, "at most a URL"),
        ] {
            let err = Cluster::parse(text, index, n).unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
        }
    }

    #[test]
    fn a_cluster_needs_a_hosts_file_and_an_external_broker() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("hosts");
        std::fs::write(&hosts, "127.0.0.1:2101\n127.0.0.1:2102\n").unwrap();
        let args = |mqtt: &str, hosts: Option<PathBuf>| RunArgs {
            mqtt: Some(mqtt.to_owned()),
            processes: Some(2),
            process_index: Some(1),
            hosts,
            ..Default::default()
        };
        let err = Settings::load(&args("embedded", Some(hosts.clone()))).unwrap_err();
        assert!(format!("{err:#}").contains("external broker"), "{err:#}");
        let err = Settings::load(&args("mqtt://127.0.0.1:1883", None)).unwrap_err();
        assert!(format!("{err:#}").contains("--hosts"), "{err:#}");
        let s = Settings::load(&args("mqtt://127.0.0.1:1883", Some(hosts))).unwrap();
        assert!(!s.is_leader());
        let mqtt = s.mqtt_config();
        assert_eq!(mqtt.client_id, "citywatch-1");
        assert_eq!(mqtt.filter(), "$share/citywatch/cw/v1/#");
        let df = s.dataflow_config();
        assert_eq!(df.cluster.map(|c| c.process), Some(1));
    }
}
