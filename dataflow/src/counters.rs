//! The live counters: their keys, and the consistent snapshot the API serves.

use model::time::{format_day, local_day};
use model::{Id, Stream};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The key of one live counter. The counter's value is the accumulated diff of all updates
/// to its key, so counts and sums alike are differential collections with integer diffs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Counter {
    /// Messages received on a stream in the minute starting at `minute` (epoch ms).
    Messages { stream: Stream, minute: u64 },
    /// Events that arrived behind the frontier (entered at the frontier), since start.
    Late { stream: Stream },
    /// Events without a `ts` (timed by arrival), since start.
    Untimed { stream: Stream },
    /// Registered elevators of a district.
    ElevatorsRegistered { district: Id },
    /// Registered elevators of a district with a frame in the last 180 s.
    ElevatorsOnline { district: Id },
    /// Elevators with a frame in the last 180 s that are not in the registry.
    ElevatorsUnregisteredOnline,
    /// Turnover of a market in the minute starting at `minute`, in fen (0.01 yuan).
    MarketTurnoverFen { market: Id, minute: u64 },
    /// Sales of a market in the minute starting at `minute`.
    MarketSales { market: Id, minute: u64 },
    /// Pesticide-residue tests of a market on a local day, by result.
    ResidueTests { market: Id, day: u64, failed: bool },
    /// Registered cameras per venue type.
    CamerasRegistered { venue_type: Id },
    /// Registered cameras per venue type with a heartbeat or detection in the last 180 s.
    CamerasOnline { venue_type: Id },
    /// Complaints received on a local day (days since epoch, Asia/Shanghai) per office.
    ComplaintsReceived { office: Id, day: u64 },
    /// Repeated complaint ids on a local day.
    ComplaintDuplicates { day: u64 },
    /// Complaints and reports of the last 90 days decided (their first status), per office
    /// of their merchant, on time or late (7 working days for a complaint, 15 for a report).
    ComplaintsDecided { office: Id, on_time: bool },
    /// Complaints and reports of the last 90 days still without a decision, per office.
    ComplaintsOpen { office: Id },
}

impl Counter {
    /// When every update to this key is taken back, for the keys a message's own update
    /// schedules the retraction of (at this time, or at the message's entry time if that is
    /// later, where both cancel); `None` for keys kept for good.
    pub fn retracted_at(&self) -> Option<u64> {
        match self {
            Counter::Messages { minute, .. }
            | Counter::MarketTurnoverFen { minute, .. }
            | Counter::MarketSales { minute, .. } => {
                Some(minute + crate::build::MINUTE_RETENTION_MS)
            }
            Counter::ResidueTests { day, .. } => Some(model::time::day_start(day + 2)),
            _ => None,
        }
    }
}

/// All counter values, complete for every event time before `as_of`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// The closed frontier: every event with an event time before it is included, none after.
    pub as_of: u64,
    /// Non-zero counter values.
    pub values: BTreeMap<Counter, i64>,
}

/// The JSON form of a snapshot, grouped for people.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct SnapshotView {
    /// See [`Snapshot::as_of`], epoch ms.
    pub as_of: u64,
    /// `as_of` as an RFC 3339 time in Asia/Shanghai.
    pub as_of_time: String,
    /// Message rates and time quality.
    pub messages: MessagesView,
    /// Elevator registry and liveness.
    pub elevators: ElevatorsView,
    /// Market turnover and sales.
    pub markets: MarketsView,
    /// Kitchen camera coverage.
    pub cameras: CamerasView,
    /// Complaints received today.
    pub complaints: ComplaintsView,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default, utoipa::ToSchema)]
pub struct MessagesView {
    /// Per stream and minute, oldest first.
    pub per_minute: Vec<StreamMinute>,
    /// Late events per stream, since start.
    pub late: BTreeMap<String, i64>,
    /// Untimed events per stream, since start.
    pub untimed: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct StreamMinute {
    pub stream: String,
    /// Start of the minute, epoch ms.
    pub minute: u64,
    pub count: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default, utoipa::ToSchema)]
pub struct ElevatorsView {
    pub registered: i64,
    pub online: i64,
    pub offline: i64,
    /// Online elevators missing from the registry (not in the totals above).
    pub unregistered_online: i64,
    pub by_district: Vec<DistrictElevators>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct DistrictElevators {
    pub district: String,
    pub registered: i64,
    pub online: i64,
    pub offline: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default, utoipa::ToSchema)]
pub struct MarketsView {
    /// Per market and minute, oldest first.
    pub per_minute: Vec<MarketMinute>,
    /// Pesticide-residue tests of the local day, all markets.
    #[serde(default)]
    pub residue_tests_today: i64,
    /// Of those, failed.
    #[serde(default)]
    pub residue_failed_today: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct MarketMinute {
    pub market: String,
    pub minute: u64,
    pub turnover_yuan: f64,
    pub sales: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default, utoipa::ToSchema)]
pub struct CamerasView {
    pub registered: i64,
    pub online: i64,
    pub by_venue_type: Vec<VenueCameras>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct VenueCameras {
    pub venue_type: String,
    pub registered: i64,
    pub online: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default, utoipa::ToSchema)]
pub struct ComplaintsView {
    /// The local day (Asia/Shanghai) of `as_of`, `YYYY-MM-DD`.
    pub day: String,
    pub received_today: i64,
    pub duplicates_today: i64,
    /// Complaints and reports of the last 90 days without a decision yet.
    pub open: i64,
    /// Of the last 90 days': decided, and decided within the limit.
    pub decided: i64,
    pub decided_on_time: i64,
    /// `decided_on_time / decided` (按时办结率); null before any decision.
    pub on_time_rate: Option<f64>,
    pub by_office: Vec<OfficeComplaints>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct OfficeComplaints {
    pub office: String,
    pub received_today: i64,
    pub open: i64,
    pub decided: i64,
    pub decided_on_time: i64,
    pub on_time_rate: Option<f64>,
}

impl Snapshot {
    /// The value of one counter (zero when absent).
    pub fn get(&self, c: &Counter) -> i64 {
        self.values.get(c).copied().unwrap_or(0)
    }

    /// Groups the counters for the API.
    pub fn view(&self) -> SnapshotView {
        let today = local_day(self.as_of.saturating_sub(1));
        let mut messages = MessagesView::default();
        let mut districts: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
        let mut venues: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
        let mut market_minutes: BTreeMap<(u64, &str), (i64, i64)> = BTreeMap::new();
        // Residue tests today: (all, failed).
        let mut residue = (0, 0);
        let mut elevators = ElevatorsView::default();
        let mut complaints = ComplaintsView {
            day: format_day(today),
            ..Default::default()
        };
        // Per office: received today, open, decided, decided on time.
        let mut offices: BTreeMap<&str, [i64; 4]> = BTreeMap::new();
        for (counter, &v) in &self.values {
            match counter {
                Counter::Messages { stream, minute } => messages.per_minute.push(StreamMinute {
                    stream: stream.as_str().to_owned(),
                    minute: *minute,
                    count: v,
                }),
                Counter::Late { stream } => {
                    messages.late.insert(stream.as_str().to_owned(), v);
                }
                Counter::Untimed { stream } => {
                    messages.untimed.insert(stream.as_str().to_owned(), v);
                }
                Counter::ElevatorsRegistered { district } => {
                    districts.entry(district).or_default().0 += v
                }
                Counter::ElevatorsOnline { district } => {
                    districts.entry(district).or_default().1 += v
                }
                Counter::ElevatorsUnregisteredOnline => elevators.unregistered_online += v,
                Counter::MarketTurnoverFen { market, minute } => {
                    market_minutes.entry((*minute, market)).or_default().0 += v
                }
                Counter::MarketSales { market, minute } => {
                    market_minutes.entry((*minute, market)).or_default().1 += v
                }
                Counter::ResidueTests { day, failed, .. } if *day == today => {
                    residue.0 += v;
                    if *failed {
                        residue.1 += v;
                    }
                }
                Counter::ResidueTests { .. } => {}
                Counter::CamerasRegistered { venue_type } => {
                    venues.entry(venue_type).or_default().0 += v
                }
                Counter::CamerasOnline { venue_type } => {
                    venues.entry(venue_type).or_default().1 += v
                }
                Counter::ComplaintsReceived { office, day } if *day == today => {
                    offices.entry(office).or_default()[0] += v
                }
                Counter::ComplaintsOpen { office } => offices.entry(office).or_default()[1] += v,
                Counter::ComplaintsDecided { office, on_time } => {
                    let o = offices.entry(office).or_default();
                    o[2] += v;
                    if *on_time {
                        o[3] += v;
                    }
                }
                Counter::ComplaintDuplicates { day } if *day == today => {
                    complaints.duplicates_today += v
                }
                Counter::ComplaintsReceived { .. } | Counter::ComplaintDuplicates { .. } => {}
            }
        }
        messages
            .per_minute
            .sort_by(|a, b| (a.minute, &a.stream).cmp(&(b.minute, &b.stream)));
        let (registered, online, by_district) = tally(districts, |district, registered, online| {
            DistrictElevators {
                district: district.to_owned(),
                registered,
                online,
                offline: registered - online,
            }
        });
        (elevators.registered, elevators.online) = (registered, online);
        elevators.offline = registered - online;
        elevators.by_district = by_district;
        let (registered, online, by_venue_type) =
            tally(venues, |venue_type, registered, online| VenueCameras {
                venue_type: venue_type.to_owned(),
                registered,
                online,
            });
        let cameras = CamerasView {
            registered,
            online,
            by_venue_type,
        };
        let markets = MarketsView {
            per_minute: market_minutes
                .into_iter()
                .map(|((minute, market), (fen, sales))| MarketMinute {
                    market: market.to_owned(),
                    minute,
                    turnover_yuan: fen as f64 / 100.0,
                    sales,
                })
                .collect(),
            residue_tests_today: residue.0,
            residue_failed_today: residue.1,
        };
        let rate = |on_time: i64, decided: i64| {
            (decided > 0).then(|| (on_time as f64 / decided as f64 * 1000.0).round() / 1000.0)
        };
        for (office, [received, open, decided, on_time]) in offices {
            complaints.received_today += received;
            complaints.open += open;
            complaints.decided += decided;
            complaints.decided_on_time += on_time;
            complaints.by_office.push(OfficeComplaints {
                office: office.to_owned(),
                received_today: received,
                open,
                decided,
                decided_on_time: on_time,
                on_time_rate: rate(on_time, decided),
            });
        }
        complaints.on_time_rate = rate(complaints.decided_on_time, complaints.decided);
        SnapshotView {
            as_of: self.as_of,
            as_of_time: local_rfc3339(self.as_of),
            messages,
            elevators,
            markets,
            cameras,
            complaints,
        }
    }
}

/// Formats epoch ms as RFC 3339 in Asia/Shanghai.
pub fn local_rfc3339(ms: u64) -> String {
    let offset = time::UtcOffset::from_hms(8, 0, 0).unwrap_or(time::UtcOffset::UTC);
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .map(|t| t.to_offset(offset))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Start of the minute containing `ms`.
pub const fn minute_of(ms: u64) -> u64 {
    ms - ms % 60_000
}

/// Rows of registered and online devices per key (a district, a venue type), with the totals
/// of both.
fn tally<'a, T>(
    per_key: BTreeMap<&'a str, (i64, i64)>,
    row: impl Fn(&'a str, i64, i64) -> T,
) -> (i64, i64, Vec<T>) {
    let (mut registered, mut online) = (0, 0);
    let rows = per_key
        .into_iter()
        .map(|(key, (r, o))| {
            registered += r;
            online += o;
            row(key, r, o)
        })
        .collect();
    (registered, online, rows)
}
