//! A city of a chosen size from a seed: the reference data the pipeline loads (CSV files) and
//! the [`District`] the simulator drives, with matching ids.

use crate::district::{Camera, District, Elevator, Scale};
use crate::rng::Rng;
use std::fmt::Write as _;
use std::path::Path;

/// How big the city is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub elevators: u64,
    pub kitchens: u64,
    pub cameras_per_kitchen: u64,
    pub markets: u64,
    pub scales_per_market: u64,
    /// Merchants with complaints on file (besides the market stalls' merchants).
    pub merchants: u64,
}

/// Offices (市场监管所) the city is split into, and the district they are in.
const OFFICES: [(&str, &str); 4] = [
    ("O-01", "第一市场监管所"),
    ("O-02", "第二市场监管所"),
    ("O-03", "第三市场监管所"),
    ("O-04", "第四市场监管所"),
];
const DISTRICT: &str = "sim";
const VENUE_TYPES: [&str; 3] = ["school", "restaurant", "canteen"];
const RATED_SPEEDS: [f64; 4] = [1.0, 1.5, 1.75, 2.5];

/// A generated city: its files (name, CSV text) and the district to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct City {
    pub files: Vec<(&'static str, String)>,
    pub district: District,
}

impl City {
    /// The city of `size` from `seed`.
    pub fn generate(size: Size, seed: u64) -> City {
        let mut rng = Rng::new(seed ^ 0x0c17);
        let units = (size.elevators / 1000).max(3);
        let mut district = District::default();

        let mut elevators = String::from(
            "elevator_id,building,district,lat,lon,maintenance_unit,rated_speed_mps,floors\n",
        );
        for i in 0..size.elevators {
            let id = format!("E{i:06}");
            let floors = 6 + rng.below(28) as i32;
            let speed = RATED_SPEEDS[rng.below(RATED_SPEEDS.len() as u64) as usize];
            let _ = writeln!(
                elevators,
                "{id},B{:05},{DISTRICT},{:.5},{:.5},MU-{:03},{speed},{floors}",
                i / 4,
                29.50 + rng.unit() * 0.1,
                106.50 + rng.unit() * 0.1,
                i % units
            );
            district.elevators.push(Elevator {
                id,
                rated_speed_mps: speed,
                floors,
                // Synthetic cities carry no complaints beside their devices: their
                // recordings stay comparable across versions.
                place: None,
            });
        }
        let mut maintenance_units = String::from("unit_id,name\n");
        for u in 0..units {
            let _ = writeln!(maintenance_units, "MU-{u:03},维保单位 {u}");
        }

        let mut kitchens = String::from("kitchen_id,venue,venue_type,district\n");
        let mut cameras = String::from("kitchen_id,camera_id\n");
        for k in 0..size.kitchens {
            let id = format!("K{k:05}");
            let venue_type = VENUE_TYPES[rng.below(VENUE_TYPES.len() as u64) as usize];
            let _ = writeln!(kitchens, "{id},后厨 {k},{venue_type},{DISTRICT}");
            for c in 0..size.cameras_per_kitchen {
                let _ = writeln!(cameras, "{id},C{}", c + 1);
                district.cameras.push(Camera {
                    kitchen_id: id.clone(),
                    camera_id: format!("C{}", c + 1),
                    school: venue_type == "school",
                    place: None,
                });
            }
        }

        let mut markets = String::from("market_id,name,district\n");
        let mut scales = String::from("scale_id,market_id,stall_id\n");
        let mut stalls = String::from("stall_id,market_id,merchant_id\n");
        let mut merchants = String::from("merchant_id,name,office_id\n");
        let office = |n: u64| OFFICES[(n % OFFICES.len() as u64) as usize].0;
        for m in 0..size.markets {
            let market = format!("M{m:03}");
            let _ = writeln!(markets, "{market},农贸市场 {m},{DISTRICT}");
            for s in 0..size.scales_per_market {
                let stall = format!("{market}-ST{s:03}");
                let merchant = format!("MER-{market}-{s:03}");
                let _ = writeln!(scales, "{market}-SC{s:03},{market},{stall}");
                let _ = writeln!(stalls, "{stall},{market},{merchant}");
                let _ = writeln!(merchants, "{merchant},摊位 {stall},{}", office(m));
                district.scales.push(Scale {
                    market_id: market.clone(),
                    scale_id: format!("{market}-SC{s:03}"),
                    stall_id: stall,
                });
                district.merchants.push(merchant);
            }
        }
        for n in 0..size.merchants {
            let merchant = format!("MER{n:05}");
            let _ = writeln!(merchants, "{merchant},商户 {n},{}", office(n));
            district.merchants.push(merchant);
        }

        let mut offices = String::from("office_id,name,district\n");
        for (id, name) in OFFICES {
            let _ = writeln!(offices, "{id},{name},{DISTRICT}");
        }
        // Every unit, office and the duty leader gets a push topic on the broker.
        let mut receivers = String::from("receiver_id,kind,target,secret,owner\n");
        for u in 0..units {
            let _ = writeln!(
                receivers,
                "R-MU-{u:03},mqtt,cw/v1/notify/R-MU-{u:03},,MU-{u:03}"
            );
        }
        for (id, _) in OFFICES {
            let _ = writeln!(receivers, "R-{id},mqtt,cw/v1/notify/R-{id},,{id}");
        }
        let _ = writeln!(
            receivers,
            "R-DUTY,mqtt,cw/v1/notify/R-DUTY,,duty:{DISTRICT}"
        );
        let guidance = "market_id,goods_code,price\n,pork,28.0\n,beef,78.0\n,cabbage,3.5\n,rice,6.2\n,eggs,11.0\n,oil,16.5\n".to_owned();

        City {
            files: vec![
                ("elevators.csv", elevators),
                ("maintenance_units.csv", maintenance_units),
                ("kitchens.csv", kitchens),
                ("cameras.csv", cameras),
                ("markets.csv", markets),
                ("scales.csv", scales),
                ("stalls.csv", stalls),
                ("merchants.csv", merchants),
                ("offices.csv", offices),
                ("receivers.csv", receivers),
                ("guidance_prices.csv", guidance),
            ],
            district,
        }
    }

    /// Writes the reference files into `dir` (created if needed).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        for (name, text) in &self.files {
            std::fs::write(dir.join(name), text)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: Size = Size {
        elevators: 50,
        kitchens: 4,
        cameras_per_kitchen: 3,
        markets: 2,
        scales_per_market: 5,
        merchants: 7,
    };

    #[test]
    fn the_same_seed_gives_the_same_city() {
        assert_eq!(City::generate(SIZE, 3), City::generate(SIZE, 3));
        assert_ne!(City::generate(SIZE, 3), City::generate(SIZE, 4));
    }

    #[test]
    fn the_district_matches_the_files() {
        let city = City::generate(SIZE, 1);
        let d = &city.district;
        assert_eq!(d.elevators.len(), 50);
        assert_eq!(d.cameras.len(), 12);
        assert_eq!(d.scales.len(), 10);
        assert_eq!(d.merchants.len(), 17);
        let file = |n: &str| &city.files.iter().find(|(f, _)| *f == n).unwrap().1;
        assert_eq!(file("elevators.csv").lines().count(), 51);
        assert!(file("elevators.csv").contains(&d.elevators[49].id));
        assert!(file("cameras.csv").contains("K00003,C3"));
    }
}
