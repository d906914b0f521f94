//! Human quantities in manifests and configs: sizes (`64Mi`), CPU (`500m`), durations (`10s`).
//!
//! Each quantity is a newtype validated once, when parsed, with overflow-checked
//! arithmetic and an error that shows an example of what was expected. This module must
//! never clamp or round a value silently: a quantity that does not fit is an error.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Why a string is not a valid quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("expected a size like 64Mi or 128M, got {0:?}")]
    Size(String),
    #[error("expected a CPU amount like 500m, 0.5 or 2, got {0:?}")]
    Cpu(String),
    #[error("expected a duration like 10s, 500ms, 5m or 1h, got {0:?}")]
    Duration(String),
    #[error("{0:?} is too large")]
    Overflow(String),
}

/// A number of bytes: `1000`, `512Ki`, `64Mi`, `1Gi`, `100M`, `1G`, `64MiB`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

/// A CPU amount in thousandths of a core: `500m`, `0.5`, `2`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CpuMillis(pub u32);

/// A duration in milliseconds: `500ms`, `10s`, `5m`, `1h`, `1m30s`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DurationMs(pub u64);

/// Splits `s` into its leading ASCII digits and the rest.
fn split_digits(s: &str) -> (&str, &str) {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s.split_at(end)
}

const SIZE_UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("B", 1),
    ("k", 1_000),
    ("K", 1_000),
    ("KB", 1_000),
    ("M", 1_000_000),
    ("MB", 1_000_000),
    ("G", 1_000_000_000),
    ("GB", 1_000_000_000),
    ("T", 1_000_000_000_000),
    ("TB", 1_000_000_000_000),
    ("Ki", 1 << 10),
    ("KiB", 1 << 10),
    ("Mi", 1 << 20),
    ("MiB", 1 << 20),
    ("Gi", 1 << 30),
    ("GiB", 1 << 30),
    ("Ti", 1 << 40),
    ("TiB", 1 << 40),
];

impl FromStr for ByteSize {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || QuantityError::Size(s.to_owned());
        let (digits, unit) = split_digits(s.trim());
        let (_, factor) = SIZE_UNITS
            .iter()
            .find(|(u, _)| *u == unit)
            .ok_or_else(bad)?;
        if digits.is_empty() {
            return Err(bad());
        }
        let n: u64 = digits
            .parse()
            .map_err(|_| QuantityError::Overflow(s.to_owned()))?;
        n.checked_mul(*factor)
            .map(ByteSize)
            .ok_or_else(|| QuantityError::Overflow(s.to_owned()))
    }
}

impl fmt::Display for ByteSize {
    /// The largest binary unit that divides the value exactly (`64Mi`), else bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, factor) in [
            ("Ti", 1u64 << 40),
            ("Gi", 1 << 30),
            ("Mi", 1 << 20),
            ("Ki", 1 << 10),
        ] {
            if self.0 != 0 && self.0.is_multiple_of(factor) {
                return write!(f, "{}{unit}", self.0 / factor);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl FromStr for CpuMillis {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || QuantityError::Cpu(s.to_owned());
        let over = || QuantityError::Overflow(s.to_owned());
        let t = s.trim();
        if let Some(millis) = t.strip_suffix('m') {
            let (digits, rest) = split_digits(millis);
            if digits.is_empty() || !rest.is_empty() {
                return Err(bad());
            }
            return digits.parse().map(CpuMillis).map_err(|_| over());
        }
        let (whole, rest) = split_digits(t);
        let frac = match rest.strip_prefix('.') {
            Some(f) => f,
            None if rest.is_empty() => "",
            None => return Err(bad()),
        };
        let (frac_digits, tail) = split_digits(frac);
        if (whole.is_empty() && frac_digits.is_empty()) || !tail.is_empty() || frac_digits.len() > 3
        {
            return Err(bad());
        }
        let whole: u32 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| over())?
        };
        let frac_millis: u32 = format!("{frac_digits:0<3}").parse().map_err(|_| bad())?;
        whole
            .checked_mul(1000)
            .and_then(|w| w.checked_add(frac_millis))
            .map(CpuMillis)
            .ok_or_else(over)
    }
}

impl fmt::Display for CpuMillis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_multiple_of(1000) {
            write!(f, "{}", self.0 / 1000)
        } else {
            write!(f, "{}m", self.0)
        }
    }
}

const DURATION_UNITS: &[(&str, u64)] = &[("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000)];

impl FromStr for DurationMs {
    type Err = QuantityError;
    /// One or more `<integer><unit>` parts, units `ms`, `s`, `m`, `h` (`1m30s`); or a bare
    /// `0` (as Go's `time.ParseDuration` takes it), since "0 = off" settings say so.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || QuantityError::Duration(s.to_owned());
        let over = || QuantityError::Overflow(s.to_owned());
        let mut rest = s.trim();
        if rest.is_empty() {
            return Err(bad());
        }
        if rest == "0" {
            return Ok(DurationMs(0));
        }
        let mut total: u64 = 0;
        while !rest.is_empty() {
            let (digits, after) = split_digits(rest);
            let unit_len = after
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(after.len());
            let (unit, next) = after.split_at(unit_len);
            let (_, factor) = DURATION_UNITS
                .iter()
                .find(|(u, _)| *u == unit)
                .ok_or_else(bad)?;
            if digits.is_empty() {
                return Err(bad());
            }
            let n: u64 = digits.parse().map_err(|_| over())?;
            let part = n.checked_mul(*factor).ok_or_else(over)?;
            total = total.checked_add(part).ok_or_else(over)?;
            rest = next;
        }
        Ok(DurationMs(total))
    }
}

impl fmt::Display for DurationMs {
    /// The largest unit that divides the value exactly (`10s`, `1500ms`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, factor) in DURATION_UNITS.iter().rev() {
            if self.0 != 0 && self.0.is_multiple_of(*factor) {
                return write!(f, "{}{unit}", self.0 / factor);
            }
        }
        write!(f, "{}ms", self.0)
    }
}

impl DurationMs {
    pub fn as_duration(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0)
    }
}

/// Serde visitor shared by the three quantities: strings always, numbers where they make
/// sense (`bytes` for sizes, cores for CPU, never for durations: a unit is required).
struct QuantityVisitor<T>(std::marker::PhantomData<T>);

trait Quantity: FromStr<Err = QuantityError> {
    const EXPECTING: &'static str;
    fn from_u64(n: u64) -> Result<Self, QuantityError>;
    fn from_f64(x: f64) -> Result<Self, QuantityError> {
        Self::from_str(&x.to_string())
    }
}

impl Quantity for ByteSize {
    const EXPECTING: &'static str = "a size like 64Mi or 128M";
    fn from_u64(n: u64) -> Result<Self, QuantityError> {
        Ok(ByteSize(n))
    }
}

impl Quantity for CpuMillis {
    const EXPECTING: &'static str = "a CPU amount like 500m, 0.5 or 2";
    fn from_u64(n: u64) -> Result<Self, QuantityError> {
        Self::from_str(&n.to_string())
    }
}

impl Quantity for DurationMs {
    const EXPECTING: &'static str = "a duration like 10s, 500ms, 5m or 1h";
    fn from_u64(n: u64) -> Result<Self, QuantityError> {
        Err(QuantityError::Duration(n.to_string()))
    }
}

impl<T: Quantity> Visitor<'_> for QuantityVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(T::EXPECTING)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        T::from_str(v).map_err(E::custom)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        T::from_u64(v).map_err(E::custom)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        let n = u64::try_from(v)
            .map_err(|_| E::custom(format!("expected {}, got {v}", T::EXPECTING)))?;
        self.visit_u64(n)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        T::from_f64(v).map_err(E::custom)
    }
}

macro_rules! serde_as_string {
    ($($t:ty),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(QuantityVisitor(std::marker::PhantomData))
            }
        }
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    )*};
}

serde_as_string!(ByteSize, CpuMillis, DurationMs);

#[cfg(test)]
mod tests {
    use super::*;

    fn size(s: &str) -> Result<u64, QuantityError> {
        s.parse::<ByteSize>().map(|b| b.0)
    }

    #[test]
    fn sizes() {
        assert_eq!(size("1000"), Ok(1000));
        assert_eq!(size("512Ki"), Ok(512 * 1024));
        assert_eq!(size("64Mi"), Ok(64 << 20));
        assert_eq!(size("64MiB"), Ok(64 << 20));
        assert_eq!(size("1Gi"), Ok(1 << 30));
        assert_eq!(size("100M"), Ok(100_000_000));
        assert_eq!(size("1G"), Ok(1_000_000_000));
        for bad in ["", "abc", "Mi", "1.5Gi", "-1", "10 Mi", "1Xi"] {
            assert_eq!(size(bad), Err(QuantityError::Size(bad.into())), "{bad}");
        }
        assert!(matches!(
            size("17000000Ti"),
            Err(QuantityError::Overflow(_))
        ));
        assert!(matches!(
            size("99999999999999999999"),
            Err(QuantityError::Overflow(_))
        ));
        assert_eq!(
            QuantityError::Size("abc".into()).to_string(),
            "expected a size like 64Mi or 128M, got \"abc\""
        );
    }

    #[test]
    fn size_display_round_trips() {
        for s in ["64Mi", "1Gi", "1000", "0", "1536Ki"] {
            assert_eq!(
                s.parse::<ByteSize>().map(|b| b.to_string()),
                Ok(s.to_owned())
            );
        }
    }

    #[test]
    fn cpu() {
        let cpu = |s: &str| s.parse::<CpuMillis>().map(|c| c.0);
        assert_eq!(cpu("500m"), Ok(500));
        assert_eq!(cpu("0.5"), Ok(500));
        assert_eq!(cpu(".25"), Ok(250));
        assert_eq!(cpu("2"), Ok(2000));
        assert_eq!(cpu("1.125"), Ok(1125));
        for bad in ["", "m", "0.0001", "1.2.3", "abc", "-1", "5x"] {
            assert_eq!(cpu(bad), Err(QuantityError::Cpu(bad.into())), "{bad}");
        }
        assert!(matches!(cpu("5000000"), Err(QuantityError::Overflow(_))));
        assert_eq!(CpuMillis(1500).to_string(), "1500m");
        assert_eq!(CpuMillis(2000).to_string(), "2");
    }

    #[test]
    fn durations() {
        let dur = |s: &str| s.parse::<DurationMs>().map(|d| d.0);
        assert_eq!(dur("500ms"), Ok(500));
        assert_eq!(dur("10s"), Ok(10_000));
        assert_eq!(dur("5m"), Ok(300_000));
        assert_eq!(dur("1h"), Ok(3_600_000));
        assert_eq!(dur("1m30s"), Ok(90_000));
        assert_eq!(dur("0"), Ok(0));
        assert_eq!(dur(" 0 "), Ok(0));
        for bad in ["", "10", "00", "s", "10x", "1.5s", "-1s"] {
            assert_eq!(dur(bad), Err(QuantityError::Duration(bad.into())), "{bad}");
        }
        assert!(matches!(
            dur("99999999999999999h"),
            Err(QuantityError::Overflow(_))
        ));
        assert_eq!(DurationMs(10_000).to_string(), "10s");
        assert_eq!(DurationMs(1500).to_string(), "1500ms");
        assert_eq!(DurationMs(0).to_string(), "0ms");
    }
}
