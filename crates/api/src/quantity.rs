//! Resource quantities (`500m`, `1.5Gi`, `2e3`) parsed into a comparable number, as
//! upstream's `resource.Quantity` for validation and comparison (not for re-serialising).

use std::cmp::Ordering;
use std::fmt;

/// A parsed quantity in units of 10^-9 (nano), rounded up like upstream's internal scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quantity {
    nanos: i128,
}

/// Upstream's parse error text.
pub const QUANTITY_ERROR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

impl Quantity {
    /// Parses a quantity string.
    pub fn parse(s: &str) -> Result<Quantity, String> {
        parse(s).ok_or_else(|| QUANTITY_ERROR.to_string())
    }

    /// From a JSON value: strings are parsed, numbers taken as they are.
    pub fn from_json(v: &serde_json::Value) -> Result<Quantity, String> {
        match v {
            serde_json::Value::String(s) => Self::parse(s),
            serde_json::Value::Number(n) => Self::parse(&n.to_string()),
            _ => Err(QUANTITY_ERROR.to_string()),
        }
    }

    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// The value in thousandths (`cpu` millicores), rounded up.
    pub fn milli_value(&self) -> i128 {
        div_ceil(self.nanos, 1_000_000)
    }

    /// The value in whole units, rounded up.
    pub fn value(&self) -> i128 {
        div_ceil(self.nanos, 1_000_000_000)
    }
}

fn div_ceil(a: i128, b: i128) -> i128 {
    let q = a / b;
    if a % b != 0 && (a > 0) == (b > 0) {
        q + 1
    } else {
        q
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos % 1_000_000_000 == 0 {
            write!(f, "{}", self.nanos / 1_000_000_000)
        } else if self.nanos % 1_000_000 == 0 {
            write!(f, "{}m", self.nanos / 1_000_000)
        } else {
            write!(f, "{}n", self.nanos)
        }
    }
}

impl PartialEq<i64> for Quantity {
    fn eq(&self, other: &i64) -> bool {
        self.nanos == i128::from(*other) * 1_000_000_000
    }
}

/// Compares two quantities (handy for `requests <= limits`).
pub fn compare(a: &Quantity, b: &Quantity) -> Ordering {
    a.cmp(b)
}

fn parse(s: &str) -> Option<Quantity> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let (neg, rest) = match s.as_bytes()[0] {
        b'+' => (false, &s[1..]),
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    let num_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (num, suffix) = rest.split_at(num_end);
    if num.is_empty() || num == "." || num.matches('.').count() > 1 {
        return None;
    }
    let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
    // The suffix: binary (Ki..Ei), decimal (n u m "" k M G T P E) or an exponent (e3, E-2).
    let (base2, exp10): (u32, i32) = match suffix {
        "" => (0, 0),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        s if s.starts_with(['e', 'E']) => {
            let e: i32 = s[1..].parse().ok()?;
            if s.len() == 1 {
                return None;
            }
            (0, e)
        }
        _ => return None,
    };
    // digits * 10^(exp10 - frac_len) * 2^base2, in nanos: * 10^9.
    let digits = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    let mut mantissa: i128 = if digits.is_empty() {
        0
    } else {
        if digits.len() > 30 {
            return None;
        }
        digits.parse().ok()?
    };
    let mut exp = exp10 + 9 - frac_part.len() as i32;
    mantissa = mantissa.checked_mul(1i128.checked_shl(base2)?)?;
    while exp > 0 {
        mantissa = mantissa.checked_mul(10)?;
        exp -= 1;
    }
    let mut rounded_up = false;
    while exp < 0 {
        if mantissa % 10 != 0 {
            rounded_up = true;
        }
        mantissa /= 10;
        exp += 1;
    }
    if rounded_up {
        mantissa += 1;
    }
    Some(Quantity {
        nanos: if neg { -mantissa } else { mantissa },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    #[test]
    fn parses_suffixes_and_exponents() {
        assert_eq!(q("1").milli_value(), 1000);
        assert_eq!(q("500m").milli_value(), 500);
        assert_eq!(q("0.5").milli_value(), 500);
        assert_eq!(q("1Ki").value(), 1024);
        assert_eq!(q("1.5Gi").value(), 1_610_612_736);
        assert_eq!(q("128Mi").value(), 134_217_728);
        assert_eq!(q("1k").value(), 1000);
        assert_eq!(q("1M").value(), 1_000_000);
        assert_eq!(q("2e3").value(), 2000);
        assert_eq!(q("1E").value(), 1_000_000_000_000_000_000);
        assert_eq!(q("100n").milli_value(), 1);
        assert_eq!(q("-1").value(), -1);
        assert!(q("-1").is_negative());
        assert!(q("1Gi") > q("1G"));
        assert!(q("1000m") == q("1"));
        assert!(q("250m") < q("0.3"));
        for bad in ["", "abc", "1.2.3", "1Kb", "e3", "1e", "--1", "."] {
            assert_eq!(Quantity::parse(bad).unwrap_err(), QUANTITY_ERROR, "{bad}");
        }
        assert_eq!(
            Quantity::from_json(&serde_json::json!(2)).unwrap().value(),
            2
        );
    }
}
