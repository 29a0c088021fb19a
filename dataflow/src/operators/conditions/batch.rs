//! The records between the two steps of the rules: one [`Batch`] per event and group, its
//! plain observations as bits ([`Plain`]) and the rest listed, and how the conditions
//! operator reads them back in rule-set order.

use super::{Observation, RuleSet, What, machines::changes_nothing_new};
use rules::machine::Item;
use rules::spec::Rule;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// What one event means for every rule of one group: the records that travel between
/// workers. An event yields one batch per distinct group key (most rules of a stream group by
/// the device), so the exchange and the per-group work happen once per event, not per rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub group: model::id::Id,
    pub time: u64,
    /// The event's own time: `time` but for an event more than the lateness behind the
    /// frontier (and no more than `max_backlog`), judged on its group's own timeline.
    pub own: u64,
    /// The rules the event means a plain event to, as bits.
    #[serde(default)]
    pub plain: Plain,
    /// (rule key, what the event means for it) for the rest, in the rule set's order.
    pub items: Vec<(u64, What)>,
}

/// Plain observations as bits by a rule's index in the rule-set version in force at the
/// batch's time (below 64; a rule beyond is listed in `items`): an event that matched or not,
/// cleared or not, and carries nothing. Most observations are plain (an elevator frame is one
/// to ten state rules whose filter it does not match), and a bit travels and waits for the
/// frontier in a 72nd of the room an item takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plain {
    pub rules: u64,
    pub matched: u64,
    pub cleared: u64,
}

impl Plain {
    /// The rules a plain bit can name.
    pub const ROOM: usize = 64;

    pub(super) fn set(&mut self, index: usize, matched: bool, cleared: bool) {
        let bit = 1u64 << index;
        self.rules |= bit;
        if matched {
            self.matched |= bit;
        }
        if cleared {
            self.cleared |= bit;
        }
    }

    /// The observation of the rule of index `index`.
    fn what(&self, index: usize) -> What {
        let bit = 1u64 << index;
        What::Event {
            matched: self.matched & bit != 0,
            cleared: self.cleared & bit != 0,
            item: Item::Unit,
            seen: None,
        }
    }
}

impl From<Observation> for Batch {
    fn from(o: Observation) -> Batch {
        Batch {
            group: o.group.into(),
            time: o.time,
            own: o.time,
            plain: Plain::default(),
            items: vec![(o.rule, o.what)],
        }
    }
}

impl Batch {
    /// Every observation of the batch in the rule set's order, with its rule's index (none
    /// for a rule not in `set`).
    pub(crate) fn observations(
        self,
        set: &RuleSet,
    ) -> impl Iterator<Item = (Option<usize>, u64, What)> + '_ {
        merged(set, self.plain, self.items.into_iter())
    }

    /// The same, as the list of (rule, observation) a group holds to put events in order.
    pub(crate) fn listed(&self, set: &RuleSet) -> Vec<(u64, What)> {
        merged(set, self.plain, self.items.iter().cloned())
            .map(|(_, k, w)| (k, w))
            .collect()
    }

    /// Whether the batch has an observation of a rule `keep` admits.
    pub(crate) fn any_rule(&self, set: &RuleSet, keep: impl Fn(&Rule) -> bool) -> bool {
        self.by_rule(set).any(|(r, _)| keep(r))
    }

    /// Whether the batch would leave a group without machines as it is (see
    /// [`changes_nothing_new`]).
    pub(crate) fn changes_nothing_new(&self, set: &RuleSet) -> bool {
        self.by_rule(set).all(|(r, w)| changes_nothing_new(r, &w))
    }

    /// Each observation whose rule is in `set`, with that rule: the plain ones first, the
    /// listed ones borrowed.
    fn by_rule<'a>(&'a self, set: &'a RuleSet) -> impl Iterator<Item = (&'a Rule, Cow<'a, What>)> {
        let plain = bits(self.plain.rules)
            .filter_map(|i| Some((set.rules.get(i)?, Cow::Owned(self.plain.what(i)))));
        let listed =
            (self.items.iter()).filter_map(|(k, w)| Some((set.get(*k)?, Cow::Borrowed(w))));
        plain.chain(listed)
    }
}

/// The indices of the bits set in `bits`, lowest first.
fn bits(mut bits: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        let i = (bits != 0).then(|| bits.trailing_zeros() as usize)?;
        bits &= bits - 1;
        Some(i)
    })
}

/// The plain bits and the listed items of a batch merged in rule-set order (a stream's rules
/// are listed in that order, so a batch's items are too).
fn merged<'s>(
    set: &'s RuleSet,
    plain: Plain,
    items: impl Iterator<Item = (u64, What)> + 's,
) -> impl Iterator<Item = (Option<usize>, u64, What)> + 's {
    let mut items = items
        .map(|(k, w)| (set.by_key.get(&k).copied(), k, w))
        .peekable();
    let mut bits = bits(plain.rules).peekable();
    std::iter::from_fn(move || match (bits.peek(), items.peek()) {
        (Some(b), Some((i, _, _))) if i.is_some_and(|i| i < *b) => items.next(),
        (Some(_), _) => {
            let b = bits.next()?;
            Some((Some(b), set.keys[b], plain.what(b)))
        }
        (None, _) => items.next(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::conditions::RuleSetVersion;

    #[test]
    fn a_batch_gives_its_plain_bits_and_its_items_in_the_rule_sets_order() {
        let rule = |id: &str, mode: &str| {
            format!(
                "[[rule]]\nid = \"{id}\"\nseverity = \"minor\"\nstream = \"elevator_status\"\n{mode}\ngroup_by = [\"elevator_id\"]\n"
            )
        };
        let text = [
            rule("a", "mode = \"state\""),
            rule("b", "value = \"event.speed_mps\""),
            rule("c", "mode = \"state\""),
        ]
        .concat();
        let rules = rules::load_str("elevators.toml", &text).unwrap();
        let set = RuleSet::compile(&RuleSetVersion::of(0, &rules));
        let key = |id: &str| rules::rule_key(id);
        let plain = |matched, cleared| What::Event {
            matched,
            cleared,
            item: Item::Unit,
            seen: None,
        };
        let carried = What::Event {
            matched: true,
            cleared: false,
            item: Item::Num(1.5),
            seen: None,
        };
        let mut batch = Batch::from(Observation {
            rule: key("b"),
            group: "E1".into(),
            time: 7,
            what: carried.clone(),
        });
        batch.plain.set(0, false, false);
        batch.plain.set(2, true, true);
        let expected = vec![
            (key("a"), plain(false, false)),
            (key("b"), carried),
            (key("c"), plain(true, true)),
        ];
        assert_eq!(batch.listed(&set), expected);
        let indices: Vec<_> = batch.observations(&set).map(|(i, _, _)| i).collect();
        assert_eq!(indices, vec![Some(0), Some(1), Some(2)]);
    }
}
