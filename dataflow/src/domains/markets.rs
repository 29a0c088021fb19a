//! Markets: turnover and sales per market per minute, residue tests per market per local day
//! by result, each retracted after its retention; and turnover per goods and minute for the
//! time series.

use super::{Counters, Events, PartOf};
use crate::counters::{Counter, minute_of};
use crate::operators::Tumbling;
use crate::series::{MINUTE_MS, Series};
use differential_dataflow::AsCollection;
use model::Event;
use model::time::local_day;
use timely::dataflow::StreamVec;
use timely::dataflow::operators::vec::Map;

/// Turnover (fen) and sales per market per minute.
pub(crate) fn minutes<'s>(sales: Events<'s>) -> Counters<'s> {
    sales
        .flat_map(|(event, t)| {
            let Event::Sale {
                market_id, sale, ..
            } = event
            else {
                return Vec::new();
            };
            let minute = minute_of(sale.ts.unwrap_or(t));
            let fen = (sale.total * 100.0).round() as isize;
            let turnover = Counter::MarketTurnoverFen {
                market: market_id.clone(),
                minute,
            };
            let count = Counter::MarketSales {
                market: market_id,
                minute,
            };
            let until = count.retracted_at().unwrap_or(t).max(t);
            vec![
                (turnover.clone(), t, fen),
                (turnover, until, -fen),
                (count.clone(), t, 1),
                (count, until, -1),
            ]
        })
        .as_collection()
}

/// Residue tests per market per local day, by result.
pub(crate) fn residue_days<'s>(residues: Events<'s>) -> Counters<'s> {
    residues
        .flat_map(|(event, t)| {
            let Event::Residue { market_id, test } = event else {
                return Vec::new();
            };
            let day = local_day(test.ts.unwrap_or(t));
            let tests = Counter::ResidueTests {
                market: market_id,
                day,
                failed: test.outcome() == model::ResidueResult::Fail,
            };
            let until = tests.retracted_at().unwrap_or(t).max(t);
            vec![(tests.clone(), t, 1), (tests, until, -1)]
        })
        .as_collection()
}

/// Turnover (fen) and unit prices per (market, goods) and minute.
pub(crate) fn series<'s>(sales: Events<'s>, part: PartOf<'_>) -> StreamVec<'s, u64, Series> {
    sales
        .flat_map(|(event, t)| match event {
            Event::Sale {
                market_id, sale, ..
            } => Some((
                (market_id, sale.goods_code),
                t,
                ((sale.total * 100.0).round() as i64, sale.unit_price),
            )),
            _ => None,
        })
        .tumbling(MINUTE_MS, part("series/market_goods"))
        .map(
            |((market_id, goods_code), start_ms, window)| Series::MarketGoods {
                market_id,
                goods_code,
                start_ms,
                window,
            },
        )
}
