//! The input record: a patient as a source system describes it, in plain text fields.

use serde::{Deserialize, Serialize};

/// A patient record as it arrives from a source, before standardisation. Every field may be empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Given names in order: the first is the given name, the rest middle names.
    pub given_names: Vec<String>,
    pub family_name: String,
    /// Birth date in any common form (`1972-03-14`, `19720314`, `03/14/1972`, `14 March 1972`...).
    pub birth_date: String,
    /// `male`, `female`, `M`, `F`... anything else is treated as unknown.
    pub sex: String,
    /// Address lines in order: the first usually holds the house number and street, the second a unit or building.
    pub address_lines: Vec<String>,
    pub city: String,
    pub state: String,
    pub postcode: String,
    pub phone: String,
    pub email: String,
    pub identifiers: Vec<Identifier>,
}

/// A business identifier such as a social security number or a medical record number.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identifier {
    /// The namespace of `value` (a FHIR `Identifier.system` URI or any agreed label).
    pub system: String,
    pub value: String,
}

impl Identifier {
    pub fn new(system: impl Into<String>, value: impl Into<String>) -> Self {
        Identifier {
            system: system.into(),
            value: value.into(),
        }
    }
}
