//! Simulated sensor readings: a mean-reverting random walk of temperature (°C) and relative
//! humidity (%), rendered as a small JSON object.
//!
//! Never used for anything but demo data: the generator is a xorshift, not a real RNG.

/// xorshift64* — enough for plausible noise, tiny.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [-1, 1).
    pub fn symmetric(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

/// The walk's current state.
pub struct Sensor {
    rng: Rng,
    pub temperature: f64,
    pub humidity: f64,
}

impl Sensor {
    pub fn new(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let temperature = 21.0 + rng.symmetric() * 2.0;
        let humidity = 48.0 + rng.symmetric() * 5.0;
        Self {
            rng,
            temperature,
            humidity,
        }
    }

    /// Moves one step: small noise plus a pull back towards 21 °C / 48 %.
    pub fn step(&mut self) {
        let t = self.temperature + self.rng.symmetric() * 0.3 + (21.0 - self.temperature) * 0.05;
        let h = self.humidity + self.rng.symmetric() * 1.0 + (48.0 - self.humidity) * 0.05;
        self.temperature = t.clamp(-10.0, 45.0);
        self.humidity = h.clamp(5.0, 95.0);
    }

    /// `{"device":…,"temperature":21.4,"humidity":48.2,"ts":…}` (ts: unix seconds).
    pub fn json(&self, device: &str, ts: u64) -> String {
        format!(
            "{{\"device\":\"{}\",\"temperature\":{:.1},\"humidity\":{:.1},\"ts\":{}}}",
            escape(device),
            self.temperature,
            self.humidity,
            ts
        )
    }
}

fn escape(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .flat_map(|c| match c {
            '"' | '\\' => vec!['\\', c],
            _ => vec![c],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_stays_plausible() {
        let mut s = Sensor::new(42);
        for _ in 0..100_000 {
            s.step();
            assert!((10.0..35.0).contains(&s.temperature), "{}", s.temperature);
            assert!((20.0..80.0).contains(&s.humidity), "{}", s.humidity);
        }
    }

    #[test]
    fn json_shape() {
        let s = Sensor {
            rng: Rng::new(1),
            temperature: 21.44,
            humidity: 48.16,
        };
        assert_eq!(
            s.json("dev\"1", 7),
            r#"{"device":"dev\"1","temperature":21.4,"humidity":48.2,"ts":7}"#
        );
    }
}
