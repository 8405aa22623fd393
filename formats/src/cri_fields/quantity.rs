//! Sizes and rates written as Kubernetes quantities, the one form the pod annotations take
//! (`io.criox.shm-size`, `kubernetes.io/ingress-bandwidth`, `…/egress-bandwidth`).
//!
//! A quantity is a number with an optional unit suffix, and the suffix alone says the
//! base: `k`, `M`, `G`, `T`, `P`, `E` are powers of 1000; `Ki`, `Mi`, `Gi`, `Ti`, `Pi`,
//! `Ei` powers of 1024. So `64Mi` is 67108864 and `64M` is 64000000. A fraction is allowed
//! (`1.5Gi`) and rounds up to a whole unit, as Kubernetes does. Suffixes that other tools
//! read differently (`m`, which Kubernetes reads as milli and docker as mebi; `K`, `kb`,
//! `MB`) are refused rather than guessed.

/// A unit suffix and the number it multiplies by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    One,
    Kilo,
    Mega,
    Giga,
    Tera,
    Peta,
    Exa,
    Kibi,
    Mebi,
    Gibi,
    Tebi,
    Pebi,
    Exbi,
}

impl Unit {
    const ALL: [Unit; 13] = [
        Unit::One,
        Unit::Kilo,
        Unit::Mega,
        Unit::Giga,
        Unit::Tera,
        Unit::Peta,
        Unit::Exa,
        Unit::Kibi,
        Unit::Mebi,
        Unit::Gibi,
        Unit::Tebi,
        Unit::Pebi,
        Unit::Exbi,
    ];

    pub fn suffix(self) -> &'static str {
        match self {
            Unit::One => "",
            Unit::Kilo => "k",
            Unit::Mega => "M",
            Unit::Giga => "G",
            Unit::Tera => "T",
            Unit::Peta => "P",
            Unit::Exa => "E",
            Unit::Kibi => "Ki",
            Unit::Mebi => "Mi",
            Unit::Gibi => "Gi",
            Unit::Tebi => "Ti",
            Unit::Pebi => "Pi",
            Unit::Exbi => "Ei",
        }
    }

    pub fn factor(self) -> u64 {
        match self {
            Unit::One => 1,
            Unit::Kilo => 1_000,
            Unit::Mega => 1_000_000,
            Unit::Giga => 1_000_000_000,
            Unit::Tera => 1_000_000_000_000,
            Unit::Peta => 1_000_000_000_000_000,
            Unit::Exa => 1_000_000_000_000_000_000,
            Unit::Kibi => 1 << 10,
            Unit::Mebi => 1 << 20,
            Unit::Gibi => 1 << 30,
            Unit::Tebi => 1 << 40,
            Unit::Pebi => 1 << 50,
            Unit::Exbi => 1 << 60,
        }
    }

    fn from_suffix(suffix: &str) -> Option<Unit> {
        Unit::ALL.into_iter().find(|u| u.suffix() == suffix)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("{text:?} is not a quantity: expected a number such as 64 or 1.5")]
    Number { text: String },
    #[error(
        "{text:?}: unknown unit {suffix:?}; use k, M, G, T, P, E (powers of 1000) or \
         Ki, Mi, Gi, Ti, Pi, Ei (powers of 1024)"
    )]
    Unit { text: String, suffix: String },
    #[error("{text:?} is too large")]
    TooLarge { text: String },
}

/// The whole number `text` stands for, fractions rounded up.
pub fn parse(text: &str) -> Result<u64, QuantityError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let unit = Unit::from_suffix(suffix).ok_or_else(|| QuantityError::Unit {
        text: text.to_string(),
        suffix: suffix.to_string(),
    })?;
    let bad_number = || QuantityError::Number {
        text: text.to_string(),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return Err(bad_number());
    }
    let too_large = || QuantityError::TooLarge {
        text: text.to_string(),
    };
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| too_large())?
    };
    let mut value = whole.checked_mul(unit.factor()).ok_or_else(too_large)?;
    // The fraction times the factor, exactly: digits beyond what u128 holds cannot change
    // a value in bytes except by rounding up, which any non-zero rest does.
    let fraction = fraction.trim_end_matches('0');
    if !fraction.is_empty() {
        let kept = &fraction[..fraction.len().min(18)];
        let denominator = 10u128.pow(kept.len() as u32);
        let scaled = kept.parse::<u128>().map_err(|_| bad_number())? * u128::from(unit.factor());
        let mut part = scaled / denominator;
        if scaled % denominator != 0 || kept.len() < fraction.len() {
            part += 1;
        }
        let part = u64::try_from(part).map_err(|_| too_large())?;
        value = value.checked_add(part).ok_or_else(too_large)?;
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_and_binary_units_are_told_apart_by_their_names() {
        assert_eq!(parse("1000"), Ok(1000));
        assert_eq!(parse("500k"), Ok(500_000));
        assert_eq!(parse("10M"), Ok(10_000_000));
        assert_eq!(parse("1G"), Ok(1_000_000_000));
        assert_eq!(parse("2T"), Ok(2_000_000_000_000));
        assert_eq!(parse("512Ki"), Ok(512 * 1024));
        assert_eq!(parse("64Mi"), Ok(64 << 20));
        assert_eq!(parse("1Gi"), Ok(1 << 30));
        assert_eq!(parse("1Ti"), Ok(1 << 40));
        assert_eq!(parse("1Ei"), Ok(1 << 60));
        assert_eq!(parse(" 7 "), Ok(7));
    }

    #[test]
    fn fractions_round_up_to_a_whole_number() {
        assert_eq!(parse("1.5Gi"), Ok(3 << 29));
        assert_eq!(parse("0.5Ki"), Ok(512));
        assert_eq!(parse(".5k"), Ok(500));
        assert_eq!(parse("1.0001k"), Ok(1001));
        assert_eq!(parse("2.5"), Ok(3));
        assert_eq!(parse("1.000000000000000000001"), Ok(2));
    }

    #[test]
    fn units_other_tools_read_differently_are_refused() {
        for text in ["64m", "64K", "64kb", "64MB", "1gi", "12x", "1e3"] {
            assert!(
                matches!(parse(text), Err(QuantityError::Unit { .. })),
                "{text}"
            );
        }
        for text in ["", "Mi", ".", "1.2.3"] {
            assert!(parse(text).is_err(), "{text:?}");
        }
        assert!(matches!(parse("19E"), Err(QuantityError::TooLarge { .. })));
        assert!(matches!(
            parse("99999999999999999999"),
            Err(QuantityError::TooLarge { .. })
        ));
    }

    #[test]
    fn errors_name_the_text_and_the_units() {
        let message = parse("64m").unwrap_err().to_string();
        assert!(message.contains("\"64m\""), "{message}");
        assert!(message.contains("Mi"), "{message}");
    }
}
