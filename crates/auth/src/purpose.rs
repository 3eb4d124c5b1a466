//! Purpose of use: why a system asks for data, from the HL7 v3 ActReason code system. It travels with the token
//! request as the form parameter [`PARAMETER`] (`purpose_of_use=TREAT`), defaults to treatment, and is carried in
//! the access token so the access decision point and the audit trail see it.

use std::fmt;
use std::str::FromStr;

/// The token-request form parameter that carries the purpose of use.
pub const PARAMETER: &str = "purpose_of_use";

/// The code system of the codes, for a `Coding` (for example in an AuditEvent's `purposeOfEvent`).
pub const SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";

/// The purposes of use the exchange accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum PurposeOfUse {
    /// Treatment.
    #[default]
    Treat,
    /// Healthcare payment.
    Hpaymt,
    /// Healthcare operations.
    Hoperat,
    /// Public health.
    Pubhlth,
    /// Emergency treatment: break-the-glass access, which the access decision point may allow beyond the usual
    /// rules and the audit trail must flag.
    Etreat,
    /// Requested by the patient.
    Patrqt,
}

impl PurposeOfUse {
    pub const ALL: [PurposeOfUse; 6] = [
        PurposeOfUse::Treat,
        PurposeOfUse::Hpaymt,
        PurposeOfUse::Hoperat,
        PurposeOfUse::Pubhlth,
        PurposeOfUse::Etreat,
        PurposeOfUse::Patrqt,
    ];

    /// The ActReason code.
    pub fn code(self) -> &'static str {
        match self {
            PurposeOfUse::Treat => "TREAT",
            PurposeOfUse::Hpaymt => "HPAYMT",
            PurposeOfUse::Hoperat => "HOPERAT",
            PurposeOfUse::Pubhlth => "PUBHLTH",
            PurposeOfUse::Etreat => "ETREAT",
            PurposeOfUse::Patrqt => "PATRQT",
        }
    }

    /// The code's display in the ActReason code system.
    pub fn display(self) -> &'static str {
        match self {
            PurposeOfUse::Treat => "treatment",
            PurposeOfUse::Hpaymt => "healthcare payment",
            PurposeOfUse::Hoperat => "healthcare operations",
            PurposeOfUse::Pubhlth => "public health",
            PurposeOfUse::Etreat => "Emergency Treatment",
            PurposeOfUse::Patrqt => "patient requested",
        }
    }

    /// Whether this is break-the-glass access.
    pub fn is_emergency(self) -> bool {
        self == PurposeOfUse::Etreat
    }

    /// The purpose from the token request's [`PARAMETER`]: treatment when it is absent or empty. Codes are
    /// case-sensitive, as in the code system.
    pub fn from_parameter(value: Option<&str>) -> Result<PurposeOfUse, PurposeError> {
        match value {
            None | Some("") => Ok(PurposeOfUse::default()),
            Some(code) => code.parse(),
        }
    }
}

impl FromStr for PurposeOfUse {
    type Err = PurposeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PurposeOfUse::ALL
            .into_iter()
            .find(|p| p.code() == s)
            .ok_or(PurposeError)
    }
}

impl fmt::Display for PurposeOfUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// An unknown purpose of use: an OAuth `invalid_request` at the token endpoint. The value is not echoed.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
#[error("purpose_of_use must be one of TREAT, HPAYMT, HOPERAT, PUBHLTH, ETREAT, PATRQT")]
pub struct PurposeError;
