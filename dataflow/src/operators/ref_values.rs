//! `ref` in rule expressions: the reference row of each event's device, found by an index
//! built once per reference version and shared by the workers of a process. Compiled
//! expressions read a row's fields directly; the interpreter gets a CEL map of the row, built
//! only when it runs.

use crate::reference::{Elevator, Kitchen, Reference};
use cel_interpreter::Value;
use model::{Event, Id};
use rules::compiled::{Lookup, Val};
use rules::expr::map;
use rules::spec::Registry;
use std::sync::Arc;

/// The `ref` rows of every registered device.
pub struct RefValues {
    reference: Arc<Reference>,
    /// Row of each elevator and kitchen in `reference` (looked up once an event: a keyed fast
    /// hash, the ids come from devices).
    elevators: foldhash::HashMap<Id, usize>,
    kitchens: foldhash::HashMap<Id, usize>,
    /// Guidance prices by (market, goods); the empty market is the district-wide price.
    guidance: foldhash::HashMap<(Id, Id), f64>,
    /// Working days, for deadline rules.
    pub(crate) calendar: model::time::WorkCalendar,
}

impl RefValues {
    /// Indexes the rows of `r`.
    pub fn new(r: Arc<Reference>) -> RefValues {
        let index = |ids: Vec<&Id>| ids.into_iter().cloned().zip(0..).collect();
        RefValues {
            elevators: index(r.elevators.iter().map(|e| &e.elevator_id).collect()),
            kitchens: index(r.kitchens.iter().map(|k| &k.kitchen_id).collect()),
            guidance: r
                .guidance_prices
                .iter()
                .map(|g| {
                    let market = g.market_id.clone().unwrap_or_default();
                    ((market, g.goods_code.clone()), g.price)
                })
                .collect(),
            calendar: r.calendar(),
            reference: r,
        }
    }

    /// The reference data indexed.
    pub(crate) fn reference(&self) -> &Arc<Reference> {
        &self.reference
    }

    pub(crate) fn elevator(&self, id: &Id) -> Option<&Elevator> {
        self.elevators
            .get(id)
            .map(|&i| &self.reference.elevators[i])
    }

    pub(crate) fn kitchen(&self, id: &Id) -> Option<&Kitchen> {
        self.kitchens.get(id).map(|&i| &self.reference.kitchens[i])
    }

    /// The market's own guidance price for the goods, else the district-wide one.
    fn guidance_price(&self, market: &Id, goods: &Id) -> Option<f64> {
        let price = self.guidance.get(&(market.clone(), goods.clone()));
        price
            .or_else(|| self.guidance.get(&(Id::default(), goods.clone())))
            .copied()
    }

    /// The reference rows of an event's device, found once for all its rules' `ref` reads.
    pub(crate) fn device<'v>(&'v self, e: &Event) -> DeviceRef<'v> {
        let mut d = DeviceRef::default();
        match e {
            Event::ElevatorStatus { elevator_id, .. }
            | Event::ElevatorEvent { elevator_id, .. } => d.elevator = self.elevator(elevator_id),
            Event::Detection { kitchen_id, .. } | Event::Heartbeat { kitchen_id, .. } => {
                d.kitchen = self.kitchen(kitchen_id)
            }
            Event::Sale {
                market_id, sale, ..
            } => d.guidance_price = self.guidance_price(market_id, &sale.goods_code),
            _ => {}
        }
        d
    }

    /// The `ref` the interpreter binds for an event.
    pub(crate) fn for_event(&self, e: &Event) -> Value {
        self.device(e).value()
    }

    /// The `ref` of a registered device, by its registry key (as for its events).
    pub fn for_device(&self, registry: Registry, key: &str) -> Value {
        let device = match registry {
            Registry::Elevators => DeviceRef {
                elevator: self.elevator(&Id::from(key)),
                ..DeviceRef::default()
            },
            Registry::Cameras => DeviceRef {
                kitchen: self.kitchen(&Id::from(key.split('/').next().unwrap_or_default())),
                ..DeviceRef::default()
            },
            Registry::Scales => DeviceRef::default(),
        };
        device.value()
    }
}

/// The `ref` of one event's device: what [`RefValues::for_event`] would bind, as rows.
#[derive(Default, Clone, Copy)]
pub(crate) struct DeviceRef<'v> {
    elevator: Option<&'v Elevator>,
    kitchen: Option<&'v Kitchen>,
    guidance_price: Option<f64>,
}

impl<'v> DeviceRef<'v> {
    /// The rows `ref` reads, as JSON: the device's registry row, the guidance price.
    pub(crate) fn rows(&self) -> serde_json::Value {
        let mut rows = serde_json::Map::new();
        if let Some(r) = self.elevator {
            rows.insert("elevator".into(), serde_json::json!(r));
        }
        if let Some(r) = self.kitchen {
            rows.insert("kitchen".into(), serde_json::json!(r));
        }
        if let Some(p) = self.guidance_price {
            rows.insert("guidance_price".into(), serde_json::json!(p));
        }
        serde_json::Value::Object(rows)
    }

    /// As the interpreter binds it: a CEL map with what the device has.
    fn value(&self) -> Value {
        let mut entries = Vec::new();
        if let Some(r) = self.elevator {
            entries.push(("elevator".to_owned(), elevator_value(r)));
        }
        if let Some(r) = self.kitchen {
            entries.push(("kitchen".to_owned(), kitchen_value(r)));
        }
        if let Some(p) = self.guidance_price {
            entries.push(("guidance_price".to_owned(), Value::Float(p)));
        }
        map(entries)
    }

    /// `ref.<names>`, without building `ref`.
    pub(crate) fn lookup(&self, names: &[String]) -> Lookup<'v> {
        let Some((first, rest)) = names.split_first() else {
            return Lookup::Map;
        };
        match first.as_str() {
            "elevator" => row(self.elevator, rest, elevator_field),
            "kitchen" => row(self.kitchen, rest, kitchen_field),
            "guidance_price" => match (self.guidance_price, rest) {
                (Some(p), []) => Lookup::Val(Val::Double(p)),
                _ => Lookup::Absent,
            },
            _ => Lookup::Absent,
        }
    }
}

/// `rest` under a row: the row itself (a map) when empty, its field when one name is left.
fn row<'v, R>(
    r: Option<&'v R>,
    rest: &[String],
    field: fn(&'v R, &str) -> Option<Val<'v>>,
) -> Lookup<'v> {
    match (r, rest) {
        (None, _) => Lookup::Absent,
        (Some(_), []) => Lookup::Map,
        (Some(r), [name]) => field(r, name).map_or(Lookup::Absent, Lookup::Val),
        // A field of a field: every field is a scalar.
        (Some(_), _) => Lookup::Absent,
    }
}

fn elevator_field<'v>(e: &'v Elevator, name: &str) -> Option<Val<'v>> {
    Some(match name {
        "building" => Val::Str(e.building.as_str().into()),
        "district" => Val::Str(e.district.as_str().into()),
        "maintenance_unit" => Val::Str(e.maintenance_unit.as_str().into()),
        "rated_speed_mps" => Val::Double(e.rated_speed_mps),
        "floors" => Val::Int(e.floors.into()),
        "lat" => Val::Double(e.lat),
        "lon" => Val::Double(e.lon),
        _ => return None,
    })
}

fn kitchen_field<'v>(k: &'v Kitchen, name: &str) -> Option<Val<'v>> {
    Some(match name {
        "venue" => Val::Str(k.venue.as_str().into()),
        "venue_type" => Val::Str(k.venue_type.as_str().into()),
        "district" => Val::Str(k.district.as_str().into()),
        _ => return None,
    })
}

fn text(v: &str) -> Value {
    Value::String(Arc::new(v.to_owned()))
}

fn elevator_value(e: &Elevator) -> Value {
    map([
        ("building".to_owned(), text(&e.building)),
        ("district".to_owned(), text(&e.district)),
        ("maintenance_unit".to_owned(), text(&e.maintenance_unit)),
        (
            "rated_speed_mps".to_owned(),
            Value::Float(e.rated_speed_mps),
        ),
        ("floors".to_owned(), Value::Int(e.floors.into())),
        ("lat".to_owned(), Value::Float(e.lat)),
        ("lon".to_owned(), Value::Float(e.lon)),
    ])
}

fn kitchen_value(k: &Kitchen) -> Value {
    map([
        ("venue".to_owned(), text(&k.venue)),
        ("venue_type".to_owned(), text(&k.venue_type)),
        ("district".to_owned(), text(&k.district)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field the compiled side reads is the value the interpreter's map holds.
    #[test]
    fn rows_read_as_the_interpreters_maps() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/reference");
        let r = Reference::load(&dir).expect("the sample district");
        let (e, k) = (&r.elevators[0], &r.kitchens[0]);
        same(&elevator_value(e), |n| elevator_field(e, n));
        same(&kitchen_value(k), |n| kitchen_field(k, n));
    }

    fn same<'v>(value: &Value, read: impl Fn(&str) -> Option<Val<'v>>) {
        let Value::Map(m) = value else {
            panic!("a map")
        };
        for (key, v) in m.map.iter() {
            let name = key.to_string();
            let want = match v {
                Value::String(s) => Val::Str(s.to_string().into()),
                Value::Int(i) => Val::Int(*i),
                Value::Float(f) => Val::Double(*f),
                other => panic!("{other:?}"),
            };
            assert_eq!(read(&name), Some(want), "{name}");
        }
        assert_eq!(read("nosuch"), None);
    }
}
