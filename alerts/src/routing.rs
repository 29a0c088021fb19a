//! Who a rule's `route` reaches: roles resolved through reference data.

use control::reference::{Elevator, Merchant, Receiver, Reference};
use model::Stream;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Reference data indexed for routing: every lookup by id is a hash lookup, so routing an
/// alert costs the same in a district of 60 elevators and a city of 200,000.
pub struct Directory {
    reference: Arc<Reference>,
    elevators: HashMap<String, usize>,
    kitchens: HashMap<String, usize>,
    markets: HashMap<String, usize>,
    merchants: HashMap<String, usize>,
    office_district: HashMap<String, String>,
    district_offices: HashMap<String, Vec<String>>,
    receivers_by_owner: HashMap<String, Vec<usize>>,
    receivers_by_id: HashMap<String, usize>,
}

fn index<T>(rows: &[T], id: impl Fn(&T) -> &str) -> HashMap<String, usize> {
    rows.iter()
        .enumerate()
        .map(|(i, r)| (id(r).to_owned(), i))
        .collect()
}

impl Directory {
    pub fn new(reference: Arc<Reference>) -> Directory {
        let r = &reference;
        let mut district_offices: HashMap<String, Vec<String>> = HashMap::new();
        for o in &r.offices {
            district_offices
                .entry(o.district.to_string())
                .or_default()
                .push(o.office_id.to_string());
        }
        let mut receivers_by_owner: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, rc) in r.receivers.iter().enumerate() {
            receivers_by_owner
                .entry(rc.owner.clone())
                .or_default()
                .push(i);
        }
        Directory {
            elevators: index(&r.elevators, |e| e.elevator_id.as_str()),
            kitchens: index(&r.kitchens, |k| k.kitchen_id.as_str()),
            markets: index(&r.markets, |m| m.market_id.as_str()),
            merchants: index(&r.merchants, |m| m.merchant_id.as_str()),
            office_district: r
                .offices
                .iter()
                .map(|o| (o.office_id.to_string(), o.district.to_string()))
                .collect(),
            district_offices,
            receivers_by_owner,
            receivers_by_id: index(&r.receivers, |rc| rc.receiver_id.as_str()),
            reference,
        }
    }

    fn elevator(&self, labels: &BTreeMap<String, String>) -> Option<&Elevator> {
        let i = self.elevators.get(labels.get("elevator_id")?)?;
        self.reference.elevators.get(*i)
    }

    fn merchant(&self, labels: &BTreeMap<String, String>) -> Option<&Merchant> {
        let i = self.merchants.get(labels.get("merchant_id")?)?;
        self.reference.merchants.get(*i)
    }

    /// A receiver by id.
    pub fn receiver(&self, id: &str) -> Option<&Receiver> {
        self.reference.receivers.get(*self.receivers_by_id.get(id)?)
    }

    /// The non-empty secrets of `unit`: its receiver's when `unit` is a receiver id, else
    /// those of every receiver it owns.
    pub fn secrets_of(&self, unit: &str) -> Vec<&str> {
        match self.receiver(unit) {
            Some(r) => vec![r.secret.as_str()],
            None => self
                .reference
                .receivers
                .iter()
                .filter(|r| r.owner == unit)
                .map(|r| r.secret.as_str())
                .collect(),
        }
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect()
    }

    /// The district of the device an alert is about.
    fn district(&self, labels: &BTreeMap<String, String>) -> Option<String> {
        if labels.contains_key("elevator_id") {
            return self.elevator(labels).map(|e| e.district.to_string());
        }
        if let Some(id) = labels.get("kitchen_id") {
            let k = self.reference.kitchens.get(*self.kitchens.get(id)?)?;
            return Some(k.district.to_string());
        }
        if let Some(id) = labels.get("market_id") {
            let m = self.reference.markets.get(*self.markets.get(id)?)?;
            return Some(m.district.to_string());
        }
        if let Some(district) = labels
            .get("office")
            .and_then(|o| self.office_district.get(o))
        {
            return Some(district.clone());
        }
        if labels.contains_key("merchant_id") {
            let office = self.merchant(labels)?.office_id.to_string();
            return self.office_district.get(&office).cloned();
        }
        None
    }

    /// The owners a route names for an alert, and the roles that named nobody.
    pub fn owners(
        &self,
        route: &[String],
        labels: &BTreeMap<String, String>,
    ) -> (Vec<String>, Vec<String>) {
        let district = self.district(labels);
        let mut owners = Vec::new();
        let mut unresolved = Vec::new();
        for role in route {
            let before = owners.len();
            match role.as_str() {
                "maintenance_unit" => {
                    if let Some(e) = self.elevator(labels) {
                        owners.push(e.maintenance_unit.to_string());
                    }
                }
                "office" => {
                    // A place's jurisdiction (a complaint's) first, then the merchant's office.
                    if let Some(o) = labels
                        .get("office")
                        .filter(|o| self.office_district.contains_key(*o))
                    {
                        owners.push(o.clone());
                    } else if let Some(m) = self.merchant(labels) {
                        owners.push(m.office_id.to_string());
                    } else if let Some(offices) =
                        district.as_ref().and_then(|d| self.district_offices.get(d))
                    {
                        owners.extend(offices.iter().cloned());
                    }
                }
                "duty_leader" => {
                    if let Some(d) = &district {
                        owners.push(format!("duty:{d}"));
                    }
                }
                _ => {}
            }
            if owners.len() == before {
                unresolved.push(role.clone());
            }
        }
        owners.sort();
        owners.dedup();
        (owners, unresolved)
    }

    /// The receivers of some owners.
    pub fn receivers(&self, owners: &[String]) -> Vec<&Receiver> {
        owners
            .iter()
            .filter_map(|o| self.receivers_by_owner.get(o))
            .flatten()
            .filter_map(|i| self.reference.receivers.get(*i))
            .collect()
    }

    /// Adds what reference data knows about the device an alert is about: its `district`,
    /// and for elevators its `maintenance_unit` and `building`, so silences, policies and the
    /// API can select on them.
    pub fn enrich(&self, labels: &mut BTreeMap<String, String>) {
        if let Some(d) = self.district(labels) {
            labels.entry("district".to_owned()).or_insert(d);
        }
        if let Some((unit, building)) = self
            .elevator(labels)
            .map(|e| (e.maintenance_unit.to_string(), e.building.clone()))
        {
            labels.entry("maintenance_unit".to_owned()).or_insert(unit);
            labels.entry("building".to_owned()).or_insert(building);
        }
    }
}

/// The labels of an alert: the rule's, its `group_by` values, and for absence rules the
/// device's ids.
pub fn labels(rule: &rules::Rule, group: &str) -> BTreeMap<String, String> {
    let mut labels = rule.labels.clone();
    if let rules::spec::Kind::Absence { .. } = rule.kind {
        let names: &[&str] = match rule.stream {
            Stream::ElevatorStatus | Stream::ElevatorEvent => &["elevator_id"],
            Stream::KitchenHeartbeat | Stream::KitchenDetection => &["kitchen_id", "camera_id"],
            _ => &["market_id", "scale_id"],
        };
        for (k, v) in names.iter().zip(group.split('/')) {
            labels.insert((*k).to_owned(), v.to_owned());
        }
    } else {
        for (k, v) in rule.group_by.iter().zip(group.split('/')) {
            labels.insert(k.clone(), v.to_owned());
        }
    }
    labels
}
