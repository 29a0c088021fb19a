//! Who a rule's `route` reaches: roles resolved through reference data.

use dataflow::reference::{Receiver, Reference};
use model::Stream;
use std::collections::BTreeMap;

/// The owners a route names for an alert, and the roles that named nobody.
pub fn owners(
    route: &[String],
    labels: &BTreeMap<String, String>,
    reference: &Reference,
) -> (Vec<String>, Vec<String>) {
    let district = district(labels, reference);
    let mut owners = Vec::new();
    let mut unresolved = Vec::new();
    for role in route {
        let before = owners.len();
        match role.as_str() {
            "maintenance_unit" => {
                if let Some(e) = labels.get("elevator_id").and_then(|id| {
                    reference
                        .elevators
                        .iter()
                        .find(|e| e.elevator_id == id.as_str())
                }) {
                    owners.push(e.maintenance_unit.to_string());
                }
            }
            "office" => {
                if let Some(m) = labels.get("merchant_id").and_then(|id| {
                    reference
                        .merchants
                        .iter()
                        .find(|m| m.merchant_id == id.as_str())
                }) {
                    owners.push(m.office_id.to_string());
                } else if let Some(d) = &district {
                    owners.extend(
                        reference
                            .offices
                            .iter()
                            .filter(|o| o.district == d.as_str())
                            .map(|o| o.office_id.to_string()),
                    );
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

/// Adds what reference data knows about the device an alert is about: its `district`, and
/// for elevators its `maintenance_unit` and `building`, so silences, policies and the API can
/// select on them.
pub fn enrich(labels: &mut BTreeMap<String, String>, reference: &Reference) {
    if let Some(d) = district(labels, reference) {
        labels.entry("district".to_owned()).or_insert(d);
    }
    if let Some(e) = labels.get("elevator_id").and_then(|id| {
        reference
            .elevators
            .iter()
            .find(|e| e.elevator_id == id.as_str())
    }) {
        let (unit, building) = (e.maintenance_unit.to_string(), e.building.clone());
        labels.entry("maintenance_unit".to_owned()).or_insert(unit);
        labels.entry("building".to_owned()).or_insert(building);
    }
}

/// The district of the device an alert is about.
fn district(labels: &BTreeMap<String, String>, r: &Reference) -> Option<String> {
    if let Some(id) = labels.get("elevator_id") {
        return r
            .elevators
            .iter()
            .find(|e| e.elevator_id == id.as_str())
            .map(|e| e.district.to_string());
    }
    if let Some(id) = labels.get("kitchen_id") {
        return r
            .kitchens
            .iter()
            .find(|k| k.kitchen_id == id.as_str())
            .map(|k| k.district.to_string());
    }
    if let Some(id) = labels.get("market_id") {
        return r
            .markets
            .iter()
            .find(|m| m.market_id == id.as_str())
            .map(|m| m.district.to_string());
    }
    if let Some(id) = labels.get("merchant_id") {
        let office = r.merchants.iter().find(|m| m.merchant_id == id.as_str())?;
        return r
            .offices
            .iter()
            .find(|o| o.office_id == office.office_id)
            .map(|o| o.district.to_string());
    }
    None
}

/// The receivers of some owners.
pub fn receivers<'a>(owners: &[String], reference: &'a Reference) -> Vec<&'a Receiver> {
    reference
        .receivers
        .iter()
        .filter(|r| owners.contains(&r.owner))
        .collect()
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
