//! The EHR compatibility catalog: each product with its vendor, version, ONC certification id,
//! what it can exchange, and whether it is connected, compatible or not yet compatible; a search
//! that answers "is my EHR in it", the advice a provider reads for each status, and the tally of
//! providers' requests to add or review a product (so the operator sees which vendors to press).

use serde::{Deserialize, Serialize};

/// What a product can exchange with the exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    FhirR4,
    Ccda,
    Hl7v2,
    Direct,
}

impl Capability {
    pub const ALL: [Capability; 4] = [
        Capability::FhirR4,
        Capability::Ccda,
        Capability::Hl7v2,
        Capability::Direct,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Capability::FhirR4 => "fhir-r4",
            Capability::Ccda => "ccda",
            Capability::Hl7v2 => "hl7v2",
            Capability::Direct => "direct",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Capability::FhirR4 => "FHIR R4",
            Capability::Ccda => "C-CDA documents",
            Capability::Hl7v2 => "HL7 v2 messages",
            Capability::Direct => "Direct secure messaging",
        }
    }

    pub fn parse(code: &str) -> Option<Capability> {
        Capability::ALL.into_iter().find(|c| c.code() == code)
    }
}

/// Where a product stands with the exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Participants already exchange data with it.
    Connected,
    /// It can connect (its interfaces have passed the exchange's tests) but nobody has yet.
    Compatible,
    /// It cannot connect yet.
    NotYetCompatible,
}

impl Status {
    pub fn code(self) -> &'static str {
        match self {
            Status::Connected => "connected",
            Status::Compatible => "compatible",
            Status::NotYetCompatible => "not-yet-compatible",
        }
    }

    pub fn parse(code: &str) -> Option<Status> {
        [
            Status::Connected,
            Status::Compatible,
            Status::NotYetCompatible,
        ]
        .into_iter()
        .find(|s| s.code() == code)
    }

    /// What a provider using a product with this status should do, in plain words.
    pub fn advice(self) -> &'static str {
        match self {
            Status::Connected => {
                "Your EHR already connects to the exchange. Apply to connect: your practice takes the EHR path \
                 (sign the agreements, register your interface, pass the test messages, go live)."
            }
            Status::Compatible => {
                "Your EHR can connect to the exchange. Apply to connect: your practice takes the EHR path; \
                 ask your vendor to schedule the interface work once your agreements are signed."
            }
            Status::NotYetCompatible => {
                "Your EHR cannot connect to the exchange yet. You meet the law by being able to send and receive \
                 secure messages: apply, sign the agreements and the exchange issues you a Direct address and a \
                 web inbox. You can ask for your EHR to be reviewed so the exchange can press your vendor."
            }
        }
    }
}

/// One product in the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    pub id: String,
    pub vendor: String,
    pub product: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The ONC Certified Health IT Product List id, where the product is certified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onc_certification: Option<String>,
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    pub status: Status,
}

impl Product {
    /// Whether a practice using it takes the EHR path by default: it is not "not yet compatible"
    /// and can send clinical data by FHIR, C-CDA or HL7 v2.
    pub fn can_connect(&self) -> bool {
        self.status != Status::NotYetCompatible
            && self
                .capabilities
                .iter()
                .any(|c| matches!(c, Capability::FhirR4 | Capability::Ccda | Capability::Hl7v2))
    }

    /// "Vendor Product version".
    pub fn name(&self) -> String {
        match &self.version {
            Some(v) => format!("{} {} {v}", self.vendor, self.product),
            None => format!("{} {}", self.vendor, self.product),
        }
    }
}

/// The products every word of `query` appears in (vendor, product, version or certification id;
/// case, accents and punctuation ignored), connected first, then compatible, then by name. An
/// empty query lists everything.
pub fn search<'a>(products: &'a [Product], query: &str) -> Vec<&'a Product> {
    let words: Vec<String> = mpi::standardise::clean(query)
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    let mut found: Vec<&Product> = products
        .iter()
        .filter(|p| {
            let hay = mpi::standardise::clean(&format!(
                "{} {} {} {}",
                p.vendor,
                p.product,
                p.version.as_deref().unwrap_or(""),
                p.onc_certification.as_deref().unwrap_or("")
            ));
            let hay: Vec<&str> = hay.split(' ').collect();
            words
                .iter()
                .all(|w| hay.iter().any(|h| h.starts_with(w.as_str())))
        })
        .collect();
    found.sort_by_key(|p| (p.status, p.name()));
    found
}

/// The key requests for one product are counted under, however the provider typed its name
/// ("Acme EHR", "acme  ehr!" and "ACME-EHR" are one product).
pub fn request_key(vendor: &str, product: &str) -> String {
    mpi::standardise::clean(&format!("{vendor} {product}"))
}

/// Requests counted per product key, most requested first (ties by key).
pub fn tally<'a>(keys: impl IntoIterator<Item = &'a str>) -> Vec<(String, usize)> {
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for key in keys {
        *counts.entry(key).or_default() += 1;
    }
    let mut out: Vec<(String, usize)> = counts
        .into_iter()
        .map(|(k, n)| (k.to_string(), n))
        .collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(id: &str, vendor: &str, name: &str, status: Status, caps: &[Capability]) -> Product {
        Product {
            id: id.into(),
            vendor: vendor.into(),
            product: name.into(),
            version: None,
            onc_certification: Some(format!("15.04.04.{id}")),
            capabilities: caps.to_vec(),
            status,
        }
    }

    #[test]
    fn search_finds_by_any_words_and_orders_by_status() {
        let catalog = vec![
            product(
                "1",
                "Zenith Health",
                "PracticeOne",
                Status::NotYetCompatible,
                &[],
            ),
            product(
                "2",
                "Acme",
                "Acme EHR",
                Status::Connected,
                &[Capability::FhirR4],
            ),
            product(
                "3",
                "Acme",
                "Acme Therapy Notes",
                Status::Compatible,
                &[Capability::Direct],
            ),
        ];
        let names = |q: &str| {
            search(&catalog, q)
                .iter()
                .map(|p| p.id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names("acme"), vec!["2", "3"]);
        assert_eq!(names("ÁCME therapy"), vec!["3"]);
        assert_eq!(names("practice"), vec!["1"]);
        assert_eq!(names("15.04.04.2"), vec!["2"]);
        assert_eq!(names(""), vec!["2", "3", "1"]);
        assert!(names("nothing").is_empty());
    }

    #[test]
    fn the_default_path_follows_capability_and_status() {
        assert!(product("a", "v", "p", Status::Compatible, &[Capability::Hl7v2]).can_connect());
        // Direct alone is the secure-messaging path.
        assert!(!product("b", "v", "p", Status::Connected, &[Capability::Direct]).can_connect());
        assert!(!product(
            "c",
            "v",
            "p",
            Status::NotYetCompatible,
            &[Capability::FhirR4]
        )
        .can_connect());
    }

    #[test]
    fn requests_are_counted_per_product_however_typed() {
        let keys = [
            request_key("Acme", "EHR"),
            request_key("ACME", "ehr!"),
            request_key("Zenith", "One"),
            request_key("acme ", " EHR"),
        ];
        let t = tally(keys.iter().map(String::as_str));
        assert_eq!(
            t,
            vec![("acme ehr".to_string(), 3), ("zenith one".to_string(), 1)]
        );
    }
}
