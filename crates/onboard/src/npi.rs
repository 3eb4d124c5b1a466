//! The National Provider Identifier: ten digits, the first 1 (an individual) or 2 (an
//! organization), the last a Luhn check digit computed over the card-issuer prefix 80840 and the
//! first nine digits (45 CFR 162.406; CMS, "Requirements for NPI check digit").

use std::fmt;

/// A checked NPI.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Npi(String);

impl Npi {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether it names an individual (type 1) rather than an organization (type 2).
    pub fn is_individual(&self) -> bool {
        self.0.starts_with('1')
    }
}

impl fmt::Display for Npi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a text is not an NPI, in words a provider can act on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NpiError {
    #[error("an NPI is 10 digits")]
    Length,
    #[error("an NPI has only digits")]
    NotDigits,
    #[error("an NPI starts with 1 (a person) or 2 (an organization)")]
    Prefix,
    #[error("the NPI's last digit does not match the others (check for a typing mistake)")]
    CheckDigit,
}

/// Checks an NPI as typed: spaces and dashes are ignored.
pub fn check(text: &str) -> Result<Npi, NpiError> {
    let digits: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(NpiError::NotDigits);
    }
    if digits.len() != 10 {
        return Err(NpiError::Length);
    }
    if !(digits.starts_with('1') || digits.starts_with('2')) {
        return Err(NpiError::Prefix);
    }
    let body: Vec<u32> = digits
        .bytes()
        .take(9)
        .map(|b| u32::from(b - b'0'))
        .collect();
    if check_digit(&body) != u32::from(digits.as_bytes()[9] - b'0') {
        return Err(NpiError::CheckDigit);
    }
    Ok(Npi(digits))
}

/// The Luhn check digit of nine NPI digits with the prefix 80840, whose doubled-and-summed
/// contribution is the constant 24.
pub fn check_digit(first_nine: &[u32]) -> u32 {
    let mut sum = 24;
    // From the right of the nine, every other digit starting with the rightmost is doubled.
    for (i, d) in first_nine.iter().rev().enumerate() {
        sum += if i % 2 == 0 {
            let twice = d * 2;
            twice / 10 + twice % 10
        } else {
            *d
        };
    }
    (10 - sum % 10) % 10
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain Luhn algorithm over the fifteen digits `80840` + NPI, written independently.
    fn luhn_valid(npi: &str) -> bool {
        let full = format!("80840{npi}");
        let mut sum = 0;
        for (i, c) in full.chars().rev().enumerate() {
            let d = c.to_digit(10).unwrap();
            sum += if i % 2 == 1 {
                let t = d * 2;
                if t > 9 {
                    t - 9
                } else {
                    t
                }
            } else {
                d
            };
        }
        sum % 10 == 0
    }

    #[test]
    fn the_cms_example_checks() {
        // CMS's worked example: 123456789 has check digit 3.
        assert_eq!(check("1234567893").unwrap().as_str(), "1234567893");
        assert_eq!(check("123-456-7893").unwrap().as_str(), "1234567893");
        assert!(check("1234567893").unwrap().is_individual());
    }

    #[test]
    fn mistakes_are_named() {
        assert_eq!(check("1234567890"), Err(NpiError::CheckDigit));
        assert_eq!(check("1234567"), Err(NpiError::Length));
        assert_eq!(check("12345678x3"), Err(NpiError::NotDigits));
        assert_eq!(check("3234567893"), Err(NpiError::Prefix));
        // A swap of two neighbouring digits is caught.
        assert_eq!(check("1234567983"), Err(NpiError::CheckDigit));
    }

    #[test]
    fn every_check_digit_agrees_with_plain_luhn() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let nine = format!("{}{:08}", 1 + seed % 2, (seed >> 8) % 100_000_000);
            let digits: Vec<u32> = nine.chars().map(|c| c.to_digit(10).unwrap()).collect();
            let npi = format!("{nine}{}", check_digit(&digits));
            assert!(luhn_valid(&npi), "{npi}");
            assert!(check(&npi).is_ok());
            let wrong = format!("{nine}{}", (check_digit(&digits) + 1) % 10);
            assert!(!luhn_valid(&wrong) && check(&wrong).is_err());
        }
    }
}
