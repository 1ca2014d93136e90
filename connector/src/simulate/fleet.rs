//! The simulated fleet: generators at fixed positions whose readings drift realistically.
//!
//! Pure apart from its seeded random numbers: the same seed gives the same readings, and which
//! of them are to be made invalid. How a reading becomes bytes is [`super::format`](mod@super::format)'s business.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One generator's report, the six fields of the scenario's schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Unique id of the generator.
    pub generator_id: String,
    /// Latitude (fixed per generator).
    pub lat: f64,
    /// Longitude (fixed per generator).
    pub lon: f64,
    /// Engine temperature.
    pub temperature: f64,
    /// Pressure.
    pub pressure: f64,
    /// Fuel level.
    pub fuel: f64,
}

/// One simulated record before encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// The generator's report.
    pub sample: Sample,
    /// Kafka timestamp, milliseconds.
    pub timestamp_ms: i64,
    /// `Some(n)` when this is the n-th (1-based) record to be made invalid on purpose; the
    /// encoder picks the kind of damage from `n`, so every kind comes up in turn.
    pub fault: Option<u64>,
}

impl Reading {
    /// Whether the record is to be made invalid on purpose.
    pub fn is_invalid(&self) -> bool {
        self.fault.is_some()
    }
}

struct Generator {
    id: String,
    lat: f64,
    lon: f64,
    capacity: f64,
    fuel: f64,
    burn_per_reading: f64,
    base_temperature: f64,
    last_timestamp_ms: i64,
}

/// The simulated fleet; pure apart from its seeded random numbers.
pub struct Fleet {
    generators: Vec<Generator>,
    rng: StdRng,
    next: usize,
    invalid_ratio: f64,
    invalid_count: u64,
}

/// Valid readings are rounded to 2 decimals, like a sensor report.
fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

impl Fleet {
    /// A fleet of `size` generators around London, positions drawn from `seed`.
    pub fn new(size: usize, seed: u64, invalid_ratio: f64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let generators = (1..=size.max(1))
            .map(|number| {
                let capacity = [500.0, 1000.0, 2000.0][rng.random_range(0..3)];
                Generator {
                    id: format!("gen-{number}"),
                    lat: round2(51.3 + rng.random::<f64>() * 0.4),
                    lon: round2(-0.5 + rng.random::<f64>() * 0.7),
                    capacity,
                    fuel: round2(capacity * rng.random_range(0.3..1.0)),
                    burn_per_reading: rng.random_range(0.5..3.0),
                    base_temperature: rng.random_range(30.0..45.0),
                    last_timestamp_ms: 0,
                }
            })
            .collect();
        Self {
            generators,
            rng,
            next: 0,
            invalid_ratio: invalid_ratio.clamp(0.0, 1.0),
            invalid_count: 0,
        }
    }

    /// The next reading, round-robin over the generators, stamped no earlier than `now_ms`.
    ///
    /// Each generator's timestamps strictly increase, so no two of its readings share one and
    /// every valid record becomes its own InfluxDB point.
    pub fn next_reading(&mut self, now_ms: i64) -> Reading {
        let index = self.next;
        self.next = (self.next + 1) % self.generators.len();
        // The draws happen in the same order whatever the outcome, so a seed's readings do not
        // depend on the invalid ratio's effect on earlier records.
        let invalid = self.rng.random::<f64>() < self.invalid_ratio;
        let noise_t: f64 = self.rng.random_range(-1.5..1.5);
        let noise_p: f64 = self.rng.random_range(-0.03..0.03);
        let refuel = self.rng.random::<f64>() < 0.002;
        let generator = &mut self.generators[index];
        generator.fuel -= generator.burn_per_reading;
        if generator.fuel < generator.capacity * 0.05 || refuel {
            generator.fuel = generator.capacity;
        }
        generator.fuel = round2(generator.fuel.max(0.0));
        let timestamp_ms = now_ms.max(generator.last_timestamp_ms + 1);
        generator.last_timestamp_ms = timestamp_ms;
        let load = 1.0 - generator.fuel / generator.capacity;
        let fault = invalid.then(|| {
            self.invalid_count += 1;
            self.invalid_count
        });
        Reading {
            sample: Sample {
                generator_id: generator.id.clone(),
                lat: generator.lat,
                lon: generator.lon,
                temperature: round2(generator.base_temperature + 5.0 * load + noise_t),
                pressure: round2(1.0 + noise_p),
                fuel: generator.fuel,
            },
            timestamp_ms,
            fault,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_increase_per_generator_and_fuel_stays_positive() {
        let mut fleet = Fleet::new(3, 7, 0.0);
        let mut last = std::collections::HashMap::new();
        for _ in 0..3000 {
            let reading = fleet.next_reading(1_000);
            assert!(!reading.is_invalid());
            assert!(reading.sample.fuel >= 0.0);
            let previous = last.insert(reading.sample.generator_id.clone(), reading.timestamp_ms);
            assert!(previous.is_none_or(|previous| previous < reading.timestamp_ms));
        }
    }

    #[test]
    fn the_invalid_ratio_holds_and_faults_are_numbered_in_turn() {
        let mut fleet = Fleet::new(5, 1, 0.2);
        let faults: Vec<u64> = (0..5000)
            .filter_map(|_| fleet.next_reading(0).fault)
            .collect();
        assert!((800..1200).contains(&faults.len()), "{}", faults.len());
        assert!(faults.iter().copied().eq(1..=faults.len() as u64));
    }

    #[test]
    fn same_seed_same_fleet() {
        let run = || {
            let mut fleet = Fleet::new(4, 9, 0.1);
            (0..100).map(|_| fleet.next_reading(0)).collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }
}
