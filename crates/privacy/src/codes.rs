//! The vocabularies privacy speaks: confidentiality and sensitivity codes (HL7 v3), purposes of use,
//! practitioners' licence types, and the plain `Coding` that security labels travel in.
//!
//! The purposes are the exchange's own strings (`auth::PurposeOfUse::code`), so the exchange
//! converts by code and this crate depends on none of ours; the licence types are the exchange's
//! (`exchange::participants::LicenceType` is [`Licence`]).

use serde_json::{json, Map, Value};

/// HL7 v3 Confidentiality: the one confidentiality code of a resource's `meta.security`.
pub const CONFIDENTIALITY_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
/// HL7 v3 ActCode: sensitivity codes (PSY, SUD...), obligations (NORDSCLCD), privacy laws
/// (42CFRPart2) and consent policies (OPTIN, OPTOUT).
pub const ACT_CODE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
/// HL7 v3 ActReason: purposes of use.
pub const PURPOSE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
/// The exchange's practitioners' licence types (also a Practitioner's `qualification.code`); here
/// the `meta.tag` that records which kind of practitioner sent a resource.
pub const LICENCE_TYPE_SYSTEM: &str = "https://nutmeg.example/fhir/CodeSystem/licence-type";
/// The `meta.tag` that records that a resource came from a psychiatric facility (code
/// [`PSYCHIATRIC_FACILITY`]).
pub const SOURCE_FACILITY_SYSTEM: &str = "https://nutmeg.example/fhir/CodeSystem/source-facility";
/// The code of [`SOURCE_FACILITY_SYSTEM`] for a psychiatric facility.
pub const PSYCHIATRIC_FACILITY: &str = "psychiatric";
/// The `meta.tag` that records which participant sent a resource: its code is the participant's
/// Organization id (written on intake by the exchange, never taken from a participant).
pub const SOURCE_PARTICIPANT_SYSTEM: &str =
    "https://nutmeg.example/fhir/CodeSystem/source-participant";
/// The ActCode obligation "no redisclosure without consent directive", carried by disclosed
/// 42 CFR Part 2 data.
pub const NORDSCLCD: &str = "NORDSCLCD";

/// Declares a closed set of codes with their displays, in order, parsed exactly.
macro_rules! codes {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $code:literal, $display:literal;)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vmeta])* $variant,)+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub fn code(self) -> &'static str {
                match self { $($name::$variant => $code,)+ }
            }

            pub fn display(self) -> &'static str {
                match self { $($name::$variant => $display,)+ }
            }

            /// The value for a code, exactly as [`Self::code`] prints it.
            pub fn parse(code: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|v| v.code() == code)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.code())
            }
        }
    };
}

codes! {
    /// A confidentiality code, from least to most restricted (the order is the derived `Ord`).
    /// The exchange assigns N, R or V; U, L and M are kept when a source sends them.
    Confidentiality {
        U = "U", "unrestricted";
        L = "L", "low";
        M = "M", "moderate";
        N = "N", "normal";
        R = "R", "restricted";
        V = "V", "very restricted";
    }
}

codes! {
    /// A sensitivity code (HL7 v3 ActCode, ActInformationSensitivityPolicy) the policy reads.
    Sensitivity {
        /// Psychiatric records: from psychiatrists and psychiatric facilities, and the psychotic
        /// and bipolar disorders (see `rules/labels.toml`).
        Psy = "PSY", "psychiatry disorder information sensitivity";
        Mh = "MH", "mental health information sensitivity";
        Bh = "BH", "behavioral health information sensitivity";
        Eth = "ETH", "substance abuse information sensitivity";
        /// Substance use disorder: treated as 42 CFR Part 2 data by the shipped policy.
        Sud = "SUD", "substance use disorder information sensitivity";
        Hiv = "HIV", "HIV/AIDS information sensitivity";
        Std = "STD", "sexually transmitted disease information sensitivity";
        Sdv = "SDV", "sexual assault, abuse, or domestic violence information sensitivity";
        Sex = "SEX", "sexuality and reproductive health information sensitivity";
        Gdis = "GDIS", "genetic disease information sensitivity";
        Psythpn = "PSYTHPN", "psychotherapy note information sensitivity";
    }
}

codes! {
    /// A purpose of use (HL7 v3 ActReason), as `auth::PurposeOfUse` has them.
    Purpose {
        Treat = "TREAT", "treatment";
        Hpaymt = "HPAYMT", "healthcare payment";
        Hoperat = "HOPERAT", "healthcare operations";
        Pubhlth = "PUBHLTH", "public health";
        /// Break-the-glass.
        Etreat = "ETREAT", "Emergency Treatment";
        Patrqt = "PATRQT", "patient requested";
    }
}

codes! {
    /// A practitioner's licence type (the exchange's `participants::LicenceType`).
    Licence {
        Lmft = "LMFT", "Licensed Marriage and Family Therapist";
        Lcsw = "LCSW", "Licensed Clinical Social Worker";
        Lpc = "LPC", "Licensed Professional Counselor";
        Ladc = "LADC", "Licensed Alcohol and Drug Counselor";
        Psychologist = "psychologist", "Psychologist";
        Psychiatrist = "psychiatrist", "Psychiatrist";
        Physician = "physician", "Physician";
        NursePractitioner = "NP", "Nurse Practitioner";
        RegisteredNurse = "RN", "Registered Nurse";
        PhysicianAssistant = "PA", "Physician Assistant";
        Pharmacist = "pharmacist", "Pharmacist";
        Other = "other", "Other licensed professional";
    }
}

impl Licence {
    /// Whether what such a practitioner sends is behavioral-health information.
    pub fn is_behavioral_health(self) -> bool {
        matches!(
            self,
            Licence::Lmft
                | Licence::Lcsw
                | Licence::Lpc
                | Licence::Ladc
                | Licence::Psychologist
                | Licence::Psychiatrist
        )
    }

    /// The licence for a code, case-insensitively (the exchange's parser is).
    pub fn parse_loose(code: &str) -> Option<Licence> {
        Licence::ALL
            .iter()
            .copied()
            .find(|l| l.code().eq_ignore_ascii_case(code))
    }
}

/// A FHIR Coding reduced to what labels need.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Coding {
    pub system: String,
    pub code: String,
    pub display: Option<String>,
}

impl Coding {
    pub fn new(system: &str, code: &str, display: Option<&str>) -> Coding {
        Coding {
            system: system.to_owned(),
            code: code.to_owned(),
            display: display.map(str::to_owned),
        }
    }

    /// The Coding in a JSON object with string `system` and `code`, or none.
    pub fn from_json(value: &Value) -> Option<Coding> {
        let object = value.as_object()?;
        let system = object.get("system")?.as_str()?;
        let code = object.get("code")?.as_str()?;
        Some(Coding {
            system: system.to_owned(),
            code: code.to_owned(),
            display: object
                .get("display")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }

    pub fn to_json(&self) -> Value {
        let mut object = Map::new();
        object.insert("system".into(), json!(self.system));
        object.insert("code".into(), json!(self.code));
        if let Some(display) = &self.display {
            object.insert("display".into(), json!(display));
        }
        Value::Object(object)
    }

    /// Whether this is the coding `system|code`.
    pub fn is(&self, system: &str, code: &str) -> bool {
        self.system == system && self.code == code
    }
}

impl Confidentiality {
    pub fn coding(self) -> Coding {
        Coding::new(CONFIDENTIALITY_SYSTEM, self.code(), Some(self.display()))
    }
}

impl Sensitivity {
    pub fn coding(self) -> Coding {
        Coding::new(ACT_CODE_SYSTEM, self.code(), Some(self.display()))
    }
}

impl Purpose {
    pub fn coding(self) -> Coding {
        Coding::new(PURPOSE_SYSTEM, self.code(), Some(self.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for s in Sensitivity::ALL {
            assert_eq!(Sensitivity::parse(s.code()), Some(*s));
        }
        for p in Purpose::ALL {
            assert_eq!(Purpose::parse(p.code()), Some(*p));
        }
        assert_eq!(Licence::parse_loose("lmft"), Some(Licence::Lmft));
        assert_eq!(Licence::parse("lmft"), None);
    }

    #[test]
    fn confidentiality_is_ordered() {
        assert!(Confidentiality::N < Confidentiality::R);
        assert!(Confidentiality::R < Confidentiality::V);
        assert!(Confidentiality::U < Confidentiality::N);
    }

    #[test]
    fn coding_from_json_needs_system_and_code() {
        assert!(Coding::from_json(&json!({"code": "x"})).is_none());
        assert!(Coding::from_json(&json!({"system": 1, "code": "x"})).is_none());
        let c = Coding::from_json(&json!({"system": "s", "code": "c", "display": "d"}));
        assert_eq!(c, Some(Coding::new("s", "c", Some("d"))));
    }
}
