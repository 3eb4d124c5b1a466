//! The connection application: what an organization or a solo practitioner types on the public
//! form (or an operator's bulk file), checked all at once so every field's problem is shown beside
//! it, and the applications already on file that look like the same applicant (the same NPI or the
//! same licence), which the operator sees instead of a silent merge.

use serde::{Deserialize, Serialize};

use crate::catalog::Product;
use crate::npi;

/// Who applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Organization,
    SoloPractitioner,
}

impl Kind {
    pub fn code(self) -> &'static str {
        match self {
            Kind::Organization => "organization",
            Kind::SoloPractitioner => "solo-practitioner",
        }
    }

    pub fn parse(code: &str) -> Option<Kind> {
        match code {
            "organization" => Some(Kind::Organization),
            "solo-practitioner" => Some(Kind::SoloPractitioner),
            _ => None,
        }
    }
}

/// A state licence type: its code, what it is called, and whether a person or a facility holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LicenceType {
    pub code: &'static str,
    pub label: &'static str,
    pub facility: bool,
}

const fn person(code: &'static str, label: &'static str) -> LicenceType {
    LicenceType {
        code,
        label,
        facility: false,
    }
}

const fn facility(code: &'static str, label: &'static str) -> LicenceType {
    LicenceType {
        code,
        label,
        facility: true,
    }
}

/// The licence types the exchange knows (the codes the roster and the mandate use).
pub const LICENCE_TYPES: &[LicenceType] = &[
    person("physician", "Physician (MD or DO)"),
    person("psychiatrist", "Psychiatrist"),
    person("aprn", "Advanced practice registered nurse"),
    person("pa", "Physician assistant"),
    person("psychologist", "Psychologist"),
    person("lcsw", "Licensed clinical social worker (LCSW)"),
    person("lmft", "Licensed marriage and family therapist (LMFT)"),
    person("lpc", "Licensed professional counselor (LPC)"),
    person("lads", "Licensed alcohol and drug counselor (LADC)"),
    person("dentist", "Dentist"),
    person("chiropractor", "Chiropractor"),
    person("optometrist", "Optometrist"),
    person("podiatrist", "Podiatrist"),
    person("physical-therapist", "Physical therapist"),
    facility("hospital", "Hospital"),
    facility("laboratory", "Clinical laboratory"),
    facility("clinic", "Outpatient clinic"),
    facility("bh-facility", "Behavioral health facility"),
    facility("nursing-home", "Nursing home"),
    facility("home-health", "Home health agency"),
    facility("pharmacy", "Pharmacy"),
];

/// The licence type with this code.
pub fn licence_type(code: &str) -> Option<&'static LicenceType> {
    LICENCE_TYPES.iter().find(|t| t.code == code)
}

/// The two-letter codes of the states, the District of Columbia and the territories.
const STATES: &[&str] = &[
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "DC", "FL", "GA", "HI", "ID", "IL", "IN", "IA",
    "KS", "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM",
    "NY", "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA",
    "WV", "WI", "WY", "PR", "VI", "GU", "AS", "MP",
];

/// A state licence.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Licence {
    /// A code of [`LICENCE_TYPES`].
    pub kind: String,
    /// As the board writes it, upper case, without spaces.
    pub number: String,
    pub state: String,
}

/// A practice address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub line: String,
    pub city: String,
    pub state: String,
    pub postcode: String,
}

/// A person named on the application.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub title: String,
    pub email: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub phone: String,
}

/// The EHR the applicant uses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "value")]
pub enum Ehr {
    /// A product of the catalog, by id.
    Catalog(String),
    /// One the catalog does not list, as the applicant named it.
    Other(String),
    /// No EHR.
    None,
}

/// The form as typed: every field a string, so a redisplayed form shows exactly what was sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Form {
    pub kind: String,
    pub legal_name: String,
    pub npi: String,
    pub licence_type: String,
    pub licence_number: String,
    pub licence_state: String,
    pub address_line: String,
    pub city: String,
    pub state: String,
    pub postcode: String,
    /// `none`, `other`, or a catalog product id.
    pub ehr: String,
    /// The product's name when `ehr` is `other`.
    pub ehr_other: String,
    pub signer_name: String,
    pub signer_title: String,
    pub signer_email: String,
    pub contact_name: String,
    pub contact_email: String,
    pub contact_phone: String,
}

/// A checked application.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Application {
    pub kind: Kind,
    pub legal_name: String,
    pub npi: String,
    pub licence: Licence,
    pub address: Address,
    pub ehr: Ehr,
    pub signer: Person,
    pub contact: Person,
}

/// One field's problem, named by the form field it belongs beside.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Longest text accepted in any field (a pasted document is a mistake, not a name).
pub const MAX_FIELD: usize = 200;

impl Form {
    /// Checks every field; all problems at once, or the application.
    pub fn check(&self, catalog: &[Product]) -> Result<Application, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut fail = |field: &str, message: &str| {
            errors.push(FieldError {
                field: field.to_string(),
                message: message.to_string(),
            })
        };
        for (field, value) in self.fields() {
            if value.chars().count() > MAX_FIELD {
                fail(field, &format!("at most {MAX_FIELD} characters"));
            } else if value.chars().any(|c| c.is_control()) {
                fail(field, "must be a single line without control characters");
            }
        }
        let kind = Kind::parse(self.kind.trim());
        if kind.is_none() {
            fail("kind", "choose an organization or a solo practitioner");
        }
        let required = [
            ("legal_name", &self.legal_name, "the legal name is required"),
            (
                "address_line",
                &self.address_line,
                "the street address is required",
            ),
            ("city", &self.city, "the city is required"),
            (
                "signer_name",
                &self.signer_name,
                "the authorized signer's name is required",
            ),
            (
                "signer_title",
                &self.signer_title,
                "the authorized signer's title is required",
            ),
            (
                "contact_name",
                &self.contact_name,
                "a contact name is required",
            ),
        ];
        for (field, value, message) in required {
            if value.trim().is_empty() {
                fail(field, message);
            }
        }
        let npi = match npi::check(&self.npi) {
            Ok(npi) => Some(npi),
            Err(e) => {
                fail("npi", &e.to_string());
                None
            }
        };
        if let (Some(npi), Some(kind)) = (&npi, kind) {
            if kind == Kind::SoloPractitioner && !npi.is_individual() {
                fail(
                    "npi",
                    "a solo practitioner's own NPI starts with 1 (2 is an organization's)",
                );
            }
        }
        let licence = licence_type(self.licence_type.trim());
        match (licence, kind) {
            (None, _) => fail("licence_type", "choose a licence type from the list"),
            (Some(t), Some(Kind::SoloPractitioner)) if t.facility => fail(
                "licence_type",
                "a solo practitioner holds a personal licence, not a facility's",
            ),
            _ => {}
        }
        let number = licence_number(&self.licence_number);
        if number.is_empty() {
            fail("licence_number", "the licence number is required");
        } else if number.len() > 20
            || !number
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.')
        {
            fail(
                "licence_number",
                "a licence number has letters, digits and dots only",
            );
        }
        let licence_state = self.licence_state.trim().to_ascii_uppercase();
        if !STATES.contains(&licence_state.as_str()) {
            fail(
                "licence_state",
                "the two-letter code of the licensing state",
            );
        }
        let state = self.state.trim().to_ascii_uppercase();
        if !STATES.contains(&state.as_str()) {
            fail("state", "the two-letter code of the state");
        }
        let postcode: String = self
            .postcode
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let zip_ok = match postcode.len() {
            5 => postcode.chars().all(|c| c.is_ascii_digit()),
            10 => {
                postcode.as_bytes()[5] == b'-'
                    && postcode
                        .chars()
                        .enumerate()
                        .all(|(i, c)| i == 5 || c.is_ascii_digit())
            }
            _ => false,
        };
        if !zip_ok {
            fail("postcode", "a ZIP code is 5 digits, or 5+4 (06103-1234)");
        }
        let ehr = match self.ehr.trim() {
            "" => {
                fail("ehr", "choose your EHR, \"other\", or \"none\"");
                None
            }
            "none" => Some(Ehr::None),
            "other" => {
                if self.ehr_other.trim().is_empty() {
                    fail("ehr_other", "name the EHR product you use");
                    None
                } else {
                    Some(Ehr::Other(self.ehr_other.trim().to_string()))
                }
            }
            id => {
                if catalog.iter().any(|p| p.id == id) {
                    Some(Ehr::Catalog(id.to_string()))
                } else {
                    fail(
                        "ehr",
                        "that product is not in the catalog; choose \"other\" and name it",
                    );
                    None
                }
            }
        };
        for (field, value, required) in [
            ("signer_email", &self.signer_email, true),
            ("contact_email", &self.contact_email, true),
        ] {
            if !is_email(value.trim()) {
                fail(
                    field,
                    if required && value.trim().is_empty() {
                        "an email address is required"
                    } else {
                        "not an email address (name@example.org)"
                    },
                );
            }
        }
        let phone = us_phone(&self.contact_phone);
        if phone.is_none() {
            fail("contact_phone", "a 10-digit US phone number");
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        // Every `None` above added an error, so these hold.
        let (Some(kind), Some(npi), Some(licence), Some(ehr), Some(phone)) =
            (kind, npi, licence, ehr, phone)
        else {
            return Err(vec![FieldError {
                field: "kind".into(),
                message: "the form could not be read".into(),
            }]);
        };
        Ok(Application {
            kind,
            legal_name: self.legal_name.trim().to_string(),
            npi: npi.as_str().to_string(),
            licence: Licence {
                kind: licence.code.to_string(),
                number,
                state: licence_state,
            },
            address: Address {
                line: self.address_line.trim().to_string(),
                city: self.city.trim().to_string(),
                state,
                postcode,
            },
            ehr,
            signer: Person {
                name: self.signer_name.trim().to_string(),
                title: self.signer_title.trim().to_string(),
                email: self.signer_email.trim().to_string(),
                phone: String::new(),
            },
            contact: Person {
                name: self.contact_name.trim().to_string(),
                title: String::new(),
                email: self.contact_email.trim().to_string(),
                phone,
            },
        })
    }

    fn fields(&self) -> [(&'static str, &String); 18] {
        [
            ("kind", &self.kind),
            ("legal_name", &self.legal_name),
            ("npi", &self.npi),
            ("licence_type", &self.licence_type),
            ("licence_number", &self.licence_number),
            ("licence_state", &self.licence_state),
            ("address_line", &self.address_line),
            ("city", &self.city),
            ("state", &self.state),
            ("postcode", &self.postcode),
            ("ehr", &self.ehr),
            ("ehr_other", &self.ehr_other),
            ("signer_name", &self.signer_name),
            ("signer_title", &self.signer_title),
            ("signer_email", &self.signer_email),
            ("contact_name", &self.contact_name),
            ("contact_email", &self.contact_email),
            ("contact_phone", &self.contact_phone),
        ]
    }
}

/// A licence number as boards compare them: upper case, without spaces or dashes.
pub fn licence_number(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

fn is_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !text
            .chars()
            .any(|c| c.is_whitespace() || c == ',' || c == '<' || c == '>')
}

/// `(860) 555-0100`, `860.555.0100`, `+1 860 555 0100` -> `8605550100`.
fn us_phone(text: &str) -> Option<String> {
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    let digits = match digits.len() {
        11 if digits.starts_with('1') => digits[1..].to_string(),
        10 => digits,
        _ => return None,
    };
    if text.chars().any(|c| c.is_alphabetic()) {
        return None;
    }
    Some(digits)
}

/// An application on file, as duplicates are looked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnFile<'a> {
    pub id: &'a str,
    pub npi: &'a str,
    pub licence: &'a Licence,
}

/// Why an application looks like one on file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Duplicate {
    pub application: String,
    /// `npi`, `licence`, or both.
    pub by: Vec<String>,
}

/// The applications on file with the same NPI or the same licence (type, number and state), in
/// the order given. Never merged: the operator decides.
pub fn duplicates(new: &Application, on_file: &[OnFile<'_>]) -> Vec<Duplicate> {
    on_file
        .iter()
        .filter_map(|f| {
            let mut by = Vec::new();
            if f.npi == new.npi {
                by.push("npi".to_string());
            }
            if f.licence.kind == new.licence.kind
                && licence_number(&f.licence.number) == new.licence.number
                && f.licence.state == new.licence.state
            {
                by.push("licence".to_string());
            }
            (!by.is_empty()).then(|| Duplicate {
                application: f.id.to_string(),
                by,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Capability, Status};

    fn catalog() -> Vec<Product> {
        vec![Product {
            id: "acme-ehr".into(),
            vendor: "Acme".into(),
            product: "EHR".into(),
            version: None,
            onc_certification: None,
            capabilities: vec![Capability::FhirR4],
            status: Status::Connected,
        }]
    }

    fn good() -> Form {
        Form {
            kind: "solo-practitioner".into(),
            legal_name: "Jane Doe, LMFT".into(),
            npi: "1234567893".into(),
            licence_type: "lmft".into(),
            licence_number: "lmft 001234".into(),
            licence_state: "ct".into(),
            address_line: "12 Main Street".into(),
            city: "Hartford".into(),
            state: "CT".into(),
            postcode: "06103".into(),
            ehr: "none".into(),
            ehr_other: String::new(),
            signer_name: "Jane Doe".into(),
            signer_title: "Owner".into(),
            signer_email: "jane@example.org".into(),
            contact_name: "Jane Doe".into(),
            contact_email: "jane@example.org".into(),
            contact_phone: "(860) 555-0100".into(),
        }
    }

    fn fields(errors: Vec<FieldError>) -> Vec<String> {
        errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn a_good_form_is_an_application() {
        let a = good().check(&catalog()).unwrap();
        assert_eq!(a.licence.number, "LMFT001234");
        assert_eq!(a.licence.state, "CT");
        assert_eq!(a.contact.phone, "8605550100");
        assert_eq!(a.ehr, Ehr::None);
        let mut f = good();
        f.ehr = "acme-ehr".into();
        assert_eq!(
            f.check(&catalog()).unwrap().ehr,
            Ehr::Catalog("acme-ehr".into())
        );
    }

    #[test]
    fn every_problem_is_named_at_once() {
        let mut f = good();
        f.npi = "1234567890".into();
        f.postcode = "6103".into();
        f.signer_email = "jane".into();
        f.ehr = "other".into();
        f.licence_type = "astrologer".into();
        f.city = "  ".into();
        assert_eq!(
            fields(f.check(&catalog()).unwrap_err()),
            vec![
                "city",
                "npi",
                "licence_type",
                "postcode",
                "ehr_other",
                "signer_email"
            ]
        );
    }

    #[test]
    fn kind_and_licence_must_agree() {
        let mut f = good();
        f.licence_type = "hospital".into();
        assert_eq!(
            fields(f.check(&catalog()).unwrap_err()),
            vec!["licence_type"]
        );
        let mut f = good();
        f.npi = "2234567891".into();
        // 2234567891 is a valid organization NPI only if its check digit holds; whatever it is,
        // the error is on the NPI field.
        assert_eq!(fields(f.check(&catalog()).unwrap_err()), vec!["npi"]);
        let mut f = good();
        f.ehr = "unknown-product".into();
        assert_eq!(fields(f.check(&catalog()).unwrap_err()), vec!["ehr"]);
        let mut f = good();
        f.legal_name = "x".repeat(MAX_FIELD + 1);
        assert_eq!(fields(f.check(&catalog()).unwrap_err()), vec!["legal_name"]);
    }

    #[test]
    fn duplicates_are_found_by_npi_or_licence() {
        let a = good().check(&catalog()).unwrap();
        let same_licence = Licence {
            kind: "lmft".into(),
            number: "LMFT-001234".into(),
            state: "CT".into(),
        };
        let other = Licence {
            kind: "lmft".into(),
            number: "999".into(),
            state: "CT".into(),
        };
        let on_file = [
            OnFile {
                id: "app-1",
                npi: "1234567893",
                licence: &other,
            },
            OnFile {
                id: "app-2",
                npi: "1999999999",
                licence: &same_licence,
            },
            OnFile {
                id: "app-3",
                npi: "1999999999",
                licence: &other,
            },
            OnFile {
                id: "app-4",
                npi: "1234567893",
                licence: &same_licence,
            },
        ];
        let found = duplicates(&a, &on_file);
        let ids: Vec<(&str, Vec<String>)> = found
            .iter()
            .map(|d| (d.application.as_str(), d.by.clone()))
            .collect();
        assert_eq!(
            ids,
            vec![
                ("app-1", vec!["npi".to_string()]),
                ("app-2", vec!["licence".to_string()]),
                ("app-4", vec!["npi".to_string(), "licence".to_string()]),
            ]
        );
    }
}
