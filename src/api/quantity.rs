//! Kubernetes resource quantities (`512Mi`, `4Gi`, `1.5T`), parsed to whole bytes.
//!
//! The CRDs validate quantities server-side with CEL's `quantity()` library; this parser
//! is what the operator uses to turn them into the MiB that Ganeti wants.

use std::fmt;

/// Why a quantity string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("empty quantity")]
    Empty,
    #[error("{0:?} is not a Kubernetes quantity (examples: 512Mi, 4Gi, 100G)")]
    Syntax(String),
    #[error("{0:?} is too large")]
    Overflow(String),
    #[error("{0:?} is not a whole number of bytes")]
    Fractional(String),
    #[error("{0:?} is negative")]
    Negative(String),
}

/// A size in bytes, as parsed from a quantity string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Bytes(pub u64);

impl Bytes {
    pub const MIB: u64 = 1 << 20;

    /// Size in MiB, rounded up: Ganeti allocates whole MiB, and rounding down
    /// would hand out less than was asked for.
    pub fn mebibytes_ceil(self) -> u64 {
        self.0.div_ceil(Self::MIB)
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 5] = [
            ("Pi", 1 << 50),
            ("Ti", 1 << 40),
            ("Gi", 1 << 30),
            ("Mi", 1 << 20),
            ("Ki", 1 << 10),
        ];
        for (suffix, size) in UNITS {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{}{}", self.0 / size, suffix);
            }
        }
        write!(f, "{}", self.0)
    }
}

/// Parses a Kubernetes quantity into bytes. Accepts binary (`Ki`..`Ei`) and decimal
/// (`k`, `M`..`E`) suffixes, decimal fractions and `e` exponents, as the apiserver does;
/// refuses negatives and values that are not a whole number of bytes.
pub fn parse_bytes(input: &str) -> Result<Bytes, QuantityError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(QuantityError::Empty);
    }
    let syntax = || QuantityError::Syntax(input.to_string());
    let (sign, rest) = match s.as_bytes()[0] {
        b'-' => (-1, &s[1..]),
        b'+' => (1, &s[1..]),
        _ => (1, s),
    };
    let digits_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(digits_end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err(syntax());
    }
    // Exact arithmetic: mantissa as an integer and a power-of-ten scale.
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    let mut mantissa: u128 = 0;
    for c in int_part.chars().chain(frac_part.chars()) {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(u128::from(c as u8 - b'0')))
            .ok_or_else(|| QuantityError::Overflow(input.to_string()))?;
    }
    let mut exp10: i32 = -(frac_part.len() as i32);
    let mut factor: u128 = 1;
    match suffix {
        "" => {}
        "Ki" => factor = 1 << 10,
        "Mi" => factor = 1 << 20,
        "Gi" => factor = 1 << 30,
        "Ti" => factor = 1 << 40,
        "Pi" => factor = 1 << 50,
        "Ei" => factor = 1 << 60,
        "n" => exp10 -= 9,
        "u" => exp10 -= 6,
        "m" => exp10 -= 3,
        "k" => exp10 += 3,
        "M" => exp10 += 6,
        "G" => exp10 += 9,
        "T" => exp10 += 12,
        "P" => exp10 += 15,
        "E" => exp10 += 18,
        _ => {
            let exp = suffix
                .strip_prefix(['e', 'E'])
                .ok_or_else(syntax)?
                .parse::<i32>()
                .map_err(|_| syntax())?;
            if !(-30..=30).contains(&exp) {
                return Err(QuantityError::Overflow(input.to_string()));
            }
            exp10 += exp;
        }
    }
    let overflow = || QuantityError::Overflow(input.to_string());
    let mut value = mantissa.checked_mul(factor).ok_or_else(overflow)?;
    if exp10 >= 0 {
        value = value
            .checked_mul(10u128.checked_pow(exp10 as u32).ok_or_else(overflow)?)
            .ok_or_else(overflow)?;
    } else {
        let div = 10u128
            .checked_pow((-exp10) as u32)
            .ok_or_else(|| QuantityError::Fractional(input.to_string()))?;
        if !value.is_multiple_of(div) {
            return Err(QuantityError::Fractional(input.to_string()));
        }
        value /= div;
    }
    if sign < 0 && value != 0 {
        return Err(QuantityError::Negative(input.to_string()));
    }
    u64::try_from(value).map(Bytes).map_err(|_| overflow())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binary_and_decimal_suffixes() {
        assert_eq!(parse_bytes("4Gi"), Ok(Bytes(4 << 30)));
        assert_eq!(parse_bytes("512Mi"), Ok(Bytes(512 << 20)));
        assert_eq!(parse_bytes("1.5Gi"), Ok(Bytes(3 << 29)));
        assert_eq!(parse_bytes("100G"), Ok(Bytes(100_000_000_000)));
        assert_eq!(parse_bytes("2k"), Ok(Bytes(2000)));
        assert_eq!(parse_bytes("1e3"), Ok(Bytes(1000)));
        assert_eq!(parse_bytes("1024"), Ok(Bytes(1024)));
        assert_eq!(parse_bytes("0"), Ok(Bytes(0)));
        assert_eq!(parse_bytes("-0"), Ok(Bytes(0)));
    }

    #[test]
    fn refuses_what_the_apiserver_would_not_store_as_bytes() {
        assert!(matches!(parse_bytes(""), Err(QuantityError::Empty)));
        assert!(matches!(parse_bytes("4GB"), Err(QuantityError::Syntax(_))));
        assert!(matches!(parse_bytes("Gi"), Err(QuantityError::Syntax(_))));
        assert!(matches!(parse_bytes("1.2.3"), Err(QuantityError::Syntax(_))));
        assert!(matches!(parse_bytes("-1Gi"), Err(QuantityError::Negative(_))));
        assert!(matches!(parse_bytes("1.5"), Err(QuantityError::Fractional(_))));
        assert!(matches!(parse_bytes("100m"), Err(QuantityError::Fractional(_))));
        assert!(matches!(parse_bytes("99Ei"), Err(QuantityError::Overflow(_))));
    }

    #[test]
    fn mebibytes_round_up_and_display_is_compact() {
        assert_eq!(Bytes(1).mebibytes_ceil(), 1);
        assert_eq!(Bytes(4 << 30).mebibytes_ceil(), 4096);
        assert_eq!(Bytes(4 << 30).to_string(), "4Gi");
        assert_eq!(Bytes(1000).to_string(), "1000");
    }
}
