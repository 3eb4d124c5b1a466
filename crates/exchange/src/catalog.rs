//! The EHR compatibility catalog's use cases over the store: products checked field by field and
//! stored (one at a time or a whole CSV file at once, every bad row named and nothing stored from
//! a file with errors), their status changed, providers' requests to add or review a product
//! checked and tracked, and the operator's tally of requests (and participants) per product.
//!
//! [`products`] is the one read of the catalog as `onboard::catalog::Product`s: the connection
//! application's form lists its products from it.

use std::collections::BTreeMap;

use onboard::application::FieldError;
use onboard::catalog::{request_key, Capability, Product, Status};
use store::{EhrProduct, EhrRequest, Store, StoreError};

/// Longest text accepted in a catalog field.
pub const MAX_FIELD: usize = 200;
/// Longest note on a request.
pub const MAX_NOTE: usize = 2000;

/// Every catalog product as the pure core knows them, by vendor, product and version. A stored
/// capability or status this version does not know is left out (capability) or read as "not yet
/// compatible" (status), never guessed upwards.
pub async fn products(store: &Store) -> Result<Vec<Product>, StoreError> {
    Ok(store.ehr_products().await?.iter().map(product_of).collect())
}

/// The pure core's product of a stored one.
pub fn product_of(p: &EhrProduct) -> Product {
    Product {
        id: p.product_id.clone(),
        vendor: p.vendor.clone(),
        product: p.product.clone(),
        version: p.version.clone(),
        onc_certification: p.onc_certification.clone(),
        capabilities: p
            .capabilities
            .iter()
            .filter_map(|c| Capability::parse(c))
            .collect(),
        status: Status::parse(&p.status).unwrap_or(Status::NotYetCompatible),
    }
}

/// The key a product version is unique by: vendor, product and version however typed.
pub fn product_key(vendor: &str, product: &str, version: Option<&str>) -> String {
    let base = request_key(vendor, product);
    match version.map(mpi::standardise::clean) {
        Some(v) if !v.is_empty() => format!("{base} {v}"),
        _ => base,
    }
}

/// A product as typed (form, command line or a CSV row): every field text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProductForm {
    pub vendor: String,
    pub product: String,
    pub version: String,
    pub onc_certification: String,
    /// Capability codes separated by spaces, commas or semicolons.
    pub capabilities: String,
    pub status: String,
}

fn bounded(field: &str, value: &str, max: usize, errors: &mut Vec<FieldError>) {
    if value.chars().count() > max {
        errors.push(FieldError {
            field: field.into(),
            message: format!("at most {max} characters"),
        });
    } else if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\r')
    {
        errors.push(FieldError {
            field: field.into(),
            message: "must not contain control characters".into(),
        });
    }
}

fn required(field: &str, value: &str, what: &str, errors: &mut Vec<FieldError>) {
    if value.trim().is_empty() {
        errors.push(FieldError {
            field: field.into(),
            message: format!("give the {what}"),
        });
    } else {
        bounded(field, value, MAX_FIELD, errors);
    }
}

fn optional(value: &str) -> Option<String> {
    let v = value.trim();
    (!v.is_empty()).then(|| v.to_string())
}

impl ProductForm {
    /// Checks every field; every problem at once, or the product to store (`id` and times given).
    pub fn check(&self, id: &str, now: i64) -> Result<EhrProduct, Vec<FieldError>> {
        let mut errors = Vec::new();
        required("vendor", &self.vendor, "vendor's name", &mut errors);
        required("product", &self.product, "product's name", &mut errors);
        bounded("version", &self.version, MAX_FIELD, &mut errors);
        let onc = self.onc_certification.trim();
        if !onc.is_empty()
            && (onc.len() > 64
                || !onc
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c)))
        {
            errors.push(FieldError {
                field: "onc_certification".into(),
                message: "an ONC certification id is letters, digits, dots and dashes \
                          (for example 15.04.04.2891.Acme.22.01.1.220101)"
                    .into(),
            });
        }
        let mut capabilities = Vec::new();
        for code in self
            .capabilities
            .split([' ', ',', ';'])
            .map(str::trim)
            .filter(|c| !c.is_empty())
        {
            match Capability::parse(&code.to_ascii_lowercase()) {
                Some(c) if !capabilities.contains(&c) => capabilities.push(c),
                Some(_) => {}
                None => errors.push(FieldError {
                    field: "capabilities".into(),
                    message: format!(
                        "unknown capability `{code}`: use fhir-r4, ccda, hl7v2 or direct"
                    ),
                }),
            }
        }
        capabilities.sort();
        let status = Status::parse(self.status.trim());
        if status.is_none() {
            errors.push(FieldError {
                field: "status".into(),
                message: format!(
                    "unknown status `{}`: use connected, compatible or not-yet-compatible",
                    self.status.trim()
                ),
            });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let version = optional(&self.version);
        Ok(EhrProduct {
            product_id: id.to_string(),
            product_key: product_key(&self.vendor, &self.product, version.as_deref()),
            vendor: self.vendor.trim().to_string(),
            product: self.product.trim().to_string(),
            version,
            onc_certification: optional(onc),
            capabilities: capabilities.iter().map(|c| c.code().to_string()).collect(),
            status: status.map(Status::code).unwrap_or_default().to_string(),
            created: now,
            updated: now,
        })
    }
}

/// A bad row of a catalog file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowProblem {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for RowProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// The columns of a catalog file (`vendor` and `product` and `status` required).
pub const IMPORT_COLUMNS: [&str; 6] = [
    "vendor",
    "product",
    "version",
    "onc_certification",
    "capabilities",
    "status",
];

/// Reads a catalog CSV (header `vendor,product,version,onc_certification,capabilities,status`;
/// capabilities separated by spaces or semicolons): every row checked, every bad row named
/// (including a product listed twice); `ids` makes each product's id.
pub fn read_import(
    text: &str,
    now: i64,
    mut ids: impl FnMut() -> String,
) -> Result<Vec<EhrProduct>, Vec<RowProblem>> {
    let records = onboard::csv::read(text).map_err(|e| {
        vec![RowProblem {
            line: e.line,
            message: e.to_string(),
        }]
    })?;
    let mut records = records.into_iter();
    let Some(header) = records.next() else {
        return Err(vec![RowProblem {
            line: 1,
            message: "the file is empty".into(),
        }]);
    };
    let names: Vec<String> = header
        .cells
        .iter()
        .map(|c| c.trim().to_ascii_lowercase().replace([' ', '-'], "_"))
        .collect();
    let at = |column: &str| names.iter().position(|n| n == column);
    let missing: Vec<&str> = ["vendor", "product", "status"]
        .into_iter()
        .filter(|c| at(c).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(vec![RowProblem {
            line: header.line,
            message: format!(
                "the header has no column for: {} (expected {})",
                missing.join(", "),
                IMPORT_COLUMNS.join(",")
            ),
        }]);
    }
    let mut problems = Vec::new();
    let mut products = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for record in records {
        if record.cells.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        let get = |column: &str| {
            at(column)
                .and_then(|i| record.cells.get(i))
                .cloned()
                .unwrap_or_default()
        };
        let form = ProductForm {
            vendor: get("vendor"),
            product: get("product"),
            version: get("version"),
            onc_certification: get("onc_certification"),
            capabilities: get("capabilities"),
            status: get("status"),
        };
        match form.check(&ids(), now) {
            Ok(p) => {
                if let Some(first) = seen.insert(p.product_key.clone(), record.line) {
                    problems.push(RowProblem {
                        line: record.line,
                        message: format!("the same product as line {first}"),
                    });
                } else {
                    products.push(p);
                }
            }
            Err(errors) => problems.push(RowProblem {
                line: record.line,
                message: errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            }),
        }
    }
    if problems.is_empty() {
        Ok(products)
    } else {
        Err(problems)
    }
}

/// A provider's request as typed on the public form.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestForm {
    /// `add` or `review`.
    pub kind: String,
    /// For a review: the catalog's product id.
    pub product_id: String,
    pub vendor: String,
    pub product: String,
    pub version: String,
    pub requester: String,
    /// An email address or a telephone number.
    pub contact: String,
    pub note: String,
}

impl RequestForm {
    /// Checks every field against the catalog; every problem at once, or the request to store.
    /// For a review the vendor and product are the catalog's.
    pub fn check(
        &self,
        catalog: &[Product],
        id: &str,
        now: i64,
    ) -> Result<EhrRequest, Vec<FieldError>> {
        let mut errors = Vec::new();
        let kind = self.kind.trim();
        let mut vendor = self.vendor.trim().to_string();
        let mut product = self.product.trim().to_string();
        let mut version = optional(&self.version);
        let mut product_id = None;
        match kind {
            "add" => {
                required("vendor", &vendor, "vendor's name", &mut errors);
                required("product", &product, "product's name", &mut errors);
                bounded("version", &self.version, MAX_FIELD, &mut errors);
            }
            "review" => match catalog.iter().find(|p| p.id == self.product_id.trim()) {
                Some(p) => {
                    vendor = p.vendor.clone();
                    product = p.product.clone();
                    version = p.version.clone();
                    product_id = Some(p.id.clone());
                }
                None => errors.push(FieldError {
                    field: "product_id".into(),
                    message: "choose the product to review from the catalog".into(),
                }),
            },
            _ => errors.push(FieldError {
                field: "kind".into(),
                message: "choose whether to add a product or review one".into(),
            }),
        }
        required("requester", &self.requester, "your name", &mut errors);
        let contact = self.contact.trim();
        if contact.is_empty() {
            errors.push(FieldError {
                field: "contact".into(),
                message: "give an email address or a telephone number to reach you".into(),
            });
        } else if !looks_like_contact(contact) {
            errors.push(FieldError {
                field: "contact".into(),
                message: "this is neither an email address nor a telephone number".into(),
            });
        }
        bounded("note", &self.note, MAX_NOTE, &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(EhrRequest {
            request_id: id.to_string(),
            kind: kind.to_string(),
            request_key: request_key(&vendor, &product),
            product_id,
            vendor,
            product,
            version,
            requester: self.requester.trim().to_string(),
            contact: contact.to_string(),
            note: self.note.trim().to_string(),
            created: now,
        })
    }
}

fn looks_like_contact(text: &str) -> bool {
    if text.len() > MAX_FIELD {
        return false;
    }
    if let Some((local, domain)) = text.split_once('@') {
        return !local.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !text.chars().any(|c| c.is_whitespace() || "<>,".contains(c))
            && text.matches('@').count() == 1;
    }
    let digits = text.chars().filter(char::is_ascii_digit).count();
    (10..=15).contains(&digits)
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || " ()+-.".contains(c))
}

/// One line of the operator's tally: a product (in the catalog or only asked for), how many
/// requests name it, and how many participants use it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TallyLine {
    /// The standardised "vendor product" requests are counted under.
    pub key: String,
    /// The catalog's products under that key (several versions), if any.
    pub products: Vec<Product>,
    /// The vendor and product as first asked for (for one the catalog does not list).
    pub asked_as: String,
    pub requests: usize,
    pub add_requests: usize,
    pub review_requests: usize,
    /// Participants whose application names one of the products.
    pub participants: usize,
}

/// Requests counted per product (most requested first, then by participants, then by key), with
/// every catalog product listed even when nobody asked; `usage` counts participants per product id.
pub fn tally(
    catalog: &[Product],
    requests: &[EhrRequest],
    usage: &BTreeMap<String, usize>,
) -> Vec<TallyLine> {
    let mut lines: BTreeMap<String, TallyLine> = BTreeMap::new();
    for p in catalog {
        let key = request_key(&p.vendor, &p.product);
        let line = lines.entry(key.clone()).or_insert_with(|| TallyLine {
            key,
            products: Vec::new(),
            asked_as: format!("{} {}", p.vendor, p.product),
            requests: 0,
            add_requests: 0,
            review_requests: 0,
            participants: 0,
        });
        line.participants += usage.get(&p.id).copied().unwrap_or(0);
        line.products.push(p.clone());
    }
    let counted = onboard::catalog::tally(requests.iter().map(|r| r.request_key.as_str()));
    for (key, n) in counted {
        let first = requests.iter().find(|r| r.request_key == key);
        let line = lines.entry(key.clone()).or_insert_with(|| TallyLine {
            key: key.clone(),
            products: Vec::new(),
            asked_as: first
                .map(|r| format!("{} {}", r.vendor, r.product))
                .unwrap_or_default(),
            requests: 0,
            add_requests: 0,
            review_requests: 0,
            participants: 0,
        });
        line.requests = n;
        line.add_requests = requests
            .iter()
            .filter(|r| r.request_key == key && r.kind == "add")
            .count();
        line.review_requests = n - line.add_requests;
    }
    let mut out: Vec<TallyLine> = lines.into_values().collect();
    out.sort_by(|a, b| {
        b.requests
            .cmp(&a.requests)
            .then(b.participants.cmp(&a.participants))
            .then_with(|| a.key.cmp(&b.key))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(vendor: &str, product: &str, caps: &str, status: &str) -> ProductForm {
        ProductForm {
            vendor: vendor.into(),
            product: product.into(),
            capabilities: caps.into(),
            status: status.into(),
            ..ProductForm::default()
        }
    }

    #[test]
    fn a_product_is_checked_field_by_field() {
        let p = form("Acme", "Acme EHR", "fhir-r4; Direct", "compatible")
            .check("p1", 5)
            .unwrap();
        assert_eq!(p.capabilities, vec!["fhir-r4", "direct"]);
        assert_eq!(p.product_key, "acme acme ehr");
        let errors = form("", "x", "telepathy", "maybe")
            .check("p2", 5)
            .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["vendor", "capabilities", "status"]);
        let mut bad = form("A", "B", "", "connected");
        bad.onc_certification = "<script>".into();
        assert_eq!(
            bad.check("p3", 5).unwrap_err()[0].field,
            "onc_certification"
        );
    }

    #[test]
    fn a_catalog_file_names_every_bad_row() {
        let mut n = 0;
        let mut ids = || {
            n += 1;
            format!("id{n}")
        };
        let good = "Vendor,Product,Version,ONC certification,Capabilities,Status\n\
                    Acme,Acme EHR,22,15.04.04.1,fhir-r4 ccda,connected\n\
                    Zenith,One,,,direct,not-yet-compatible\n";
        let products = read_import(good, 1, &mut ids).unwrap();
        assert_eq!(products.len(), 2);
        assert_eq!(products[0].version.as_deref(), Some("22"));
        let bad = "vendor,product,status\nAcme,EHR,connected\n,X,connected\nacme,ehr!,ok\nACME,EHR,compatible\n";
        let problems = read_import(bad, 1, &mut ids).unwrap_err();
        let lines: Vec<usize> = problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![3, 4, 5], "{problems:?}");
        assert!(problems[2].message.contains("same product as line 2"));
        assert!(read_import("vendor\nx\n", 1, &mut ids).unwrap_err()[0]
            .message
            .contains("product, status"));
    }

    #[test]
    fn requests_are_checked_and_tallied_per_product() {
        let catalog = vec![product_of(
            &form("Acme", "EHR", "fhir-r4", "connected")
                .check("acme", 1)
                .unwrap(),
        )];
        let add = |vendor: &str, product: &str, id: &str| {
            RequestForm {
                kind: "add".into(),
                vendor: vendor.into(),
                product: product.into(),
                requester: "Jane Doe".into(),
                contact: "jane@example.org".into(),
                ..RequestForm::default()
            }
            .check(&catalog, id, 1)
            .unwrap()
        };
        let review = RequestForm {
            kind: "review".into(),
            product_id: "acme".into(),
            requester: "Sam".into(),
            contact: "(860) 555-0100".into(),
            ..RequestForm::default()
        }
        .check(&catalog, "r0", 1)
        .unwrap();
        assert_eq!(review.request_key, "acme ehr");
        let requests = vec![
            review,
            add("Zenith", "One", "r1"),
            add("zenith", "ONE!", "r2"),
            add("Acme", "ehr", "r3"),
            add("Zenith", "One", "r4"),
        ];
        let usage = BTreeMap::from([("acme".to_string(), 4)]);
        let t = tally(&catalog, &requests, &usage);
        assert_eq!(t[0].key, "zenith one");
        assert_eq!((t[0].requests, t[0].add_requests), (3, 3));
        assert!(t[0].products.is_empty());
        assert_eq!(t[1].key, "acme ehr");
        assert_eq!(
            (t[1].requests, t[1].review_requests, t[1].participants),
            (2, 1, 4)
        );
        let errors = RequestForm {
            kind: "review".into(),
            product_id: "nope".into(),
            contact: "not a contact".into(),
            ..RequestForm::default()
        }
        .check(&catalog, "r9", 1)
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["product_id", "requester", "contact"]);
        let errors = RequestForm::default().check(&catalog, "r9", 1).unwrap_err();
        assert_eq!(errors[0].field, "kind");
    }
}
