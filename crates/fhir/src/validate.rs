//! Validation of a resource on every write. Returns every problem found, each located by a FHIRPath
//! expression (`Patient.name[0].given[1]`, `Observation.value.ofType(Quantity)`):
//!
//! - structure: a known, concrete resource type; every property an element of its type (choice elements
//!   by their typed name, `_name` companions only for primitives); JSON kinds, arrays where and only
//!   where an element repeats, no empty objects, arrays or strings, nulls only to align `_name` arrays;
//! - cardinality: minimum and maximum of every element, one type per choice element;
//! - primitive formats (id, date, dateTime, instant, time, decimal, integer ranges, uri, code, oid, uuid,
//!   base64Binary, strings without control characters and at most 1 MB...);
//! - codes of required bindings whose value sets ship in the definitions (a CodeableConcept needs a
//!   coding from the value set);
//! - references: well formed, pointing at a type the element allows, local ones naming a contained
//!   resource (ref-1);
//! - contained resources validated like any other, with dom-2, dom-4 and dom-5; Bundle entries and Parameters
//!   resources too; extensions with ext-1.
//!
//! Other invariants (the FHIRPath constraints of the definitions) are not checked. One pass over the
//! JSON, driven by the generated type tables ([`crate::definitions`]), at most [`MAX_DEPTH`] objects deep.
//! The location of the node being checked is kept in one growing string, so the happy path allocates
//! almost nothing; an issue copies it.

mod primitives;

use std::fmt::Write;

use serde_json::{Map, Value};

use crate::definitions::{self, ElementDef, TypeDef, TypeKind};
use crate::{Issue, IssueType};
use primitives::JsonKind;

pub use primitives::is_id;

/// Validates a resource (any type, as JSON) and returns every problem found; the resource is valid
/// when no issue is an error. Issue expressions are FHIRPath locations (`Patient.name[0].given[1]`).
pub fn validate_resource(resource: &Value) -> Vec<Issue> {
    let mut v = Validator {
        issues: Vec::new(),
        path: String::with_capacity(128),
        depth: 0,
        local_ids: Vec::new(),
    };
    v.resource(resource, false);
    // Grouped by location, so that the problems of one element come together whatever the key order
    // (indexes in numeric order: `entry[2]` before `entry[10]`).
    v.issues.sort_by(|a, b| {
        let (a, b) = (a.expression.first(), b.expression.first());
        match (a, b) {
            (Some(a), Some(b)) => natural_order(a, b),
            _ => a.cmp(&b),
        }
    });
    v.issues
}

/// Compares two locations as text, except that runs of digits compare as numbers.
fn natural_order(a: &str, b: &str) -> std::cmp::Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
                // Without leading zeros (indexes have none), the longer number is the larger.
                let order = da.cmp(&db).then_with(|| a[..da].cmp(&b[..db]));
                if order.is_ne() {
                    return order;
                }
                (a, b) = (&a[da..], &b[db..]);
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                (a, b) = (&a[1..], &b[1..]);
            }
        }
    }
}

struct Validator {
    issues: Vec<Issue>,
    /// The FHIRPath location of the node being checked.
    path: String,
    /// How many objects deep the node being checked is.
    depth: usize,
    /// For each resource being checked (innermost last), the ids of its contained resources: what a local
    /// reference (`#id`) may name. A contained resource uses its container's.
    local_ids: Vec<Vec<(String, String)>>,
}

/// How deep objects may nest (a Bundle entry's contained resource's extension's extension... counts each
/// object). The official examples nest at most about 20 deep; beyond this the validator stops descending.
pub const MAX_DEPTH: usize = 64;

/// Which elements of an object have been seen (by index in [`TypeDef::elements`]), to check minimum
/// cardinality and that a choice element is given once.
struct Seen {
    value: [u64; 4],
    any: [u64; 4],
}

impl Seen {
    fn new() -> Self {
        Seen {
            value: [0; 4],
            any: [0; 4],
        }
    }

    /// Marks element `i`; returns false if a value (not a `_` companion) was already seen for it.
    fn mark(&mut self, i: usize, companion: bool) -> bool {
        // The tables' largest type has far fewer than 256 elements (a test checks); beyond, nothing is tracked.
        let (word, bit) = (i / 64, 1u64 << (i % 64));
        if word >= 4 {
            return true;
        }
        self.any[word] |= bit;
        if companion {
            return true;
        }
        let fresh = self.value[word] & bit == 0;
        self.value[word] |= bit;
        fresh
    }

    fn has(&self, i: usize) -> bool {
        i / 64 >= 4 || self.any[i / 64] & (1u64 << (i % 64)) != 0
    }
}

impl Validator {
    fn error(&mut self, code: IssueType, message: impl Into<String>) {
        let mut issue = Issue::error(code, message);
        if !self.path.is_empty() {
            issue = issue.at(self.path.clone());
        }
        self.issues.push(issue);
    }

    /// Runs `f` with `.{name}` appended to the location.
    fn at_child(&mut self, name: &str, f: impl FnOnce(&mut Self)) {
        let len = self.path.len();
        self.path.push('.');
        self.path.push_str(name);
        f(self);
        self.path.truncate(len);
    }

    /// A whole resource: the root, a contained resource, a Bundle entry's or a parameter's resource.
    fn resource(&mut self, value: &Value, contained: bool) {
        let Some(obj) = value.as_object() else {
            self.error(IssueType::Structure, "a resource must be a JSON object");
            return;
        };
        let ty = match obj.get("resourceType") {
            Some(Value::String(ty)) => ty.as_str(),
            Some(_) => {
                self.error(IssueType::Structure, "resourceType must be a string");
                return;
            }
            None => {
                self.error(IssueType::Required, "resourceType is missing");
                return;
            }
        };
        let Some(td) =
            definitions::type_def(ty).filter(|t| t.kind == TypeKind::Resource && !t.is_abstract)
        else {
            self.error(
                IssueType::NotSupported,
                format!("'{ty}' is not a resource type of FHIR R4"),
            );
            return;
        };
        if self.path.is_empty() {
            self.path.push_str(td.name);
        }
        if contained {
            self.contained_rules(obj);
            self.object(obj, td, true);
            return;
        }
        let ids = match obj.get("contained") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|c| {
                    let id = c.get("id")?.as_str()?;
                    let ty = c.get("resourceType")?.as_str()?;
                    Some((id.to_string(), ty.to_string()))
                })
                .collect(),
            _ => Vec::new(),
        };
        self.local_ids.push(ids);
        self.object(obj, td, true);
        self.local_ids.pop();
    }

    /// The invariants of a contained resource: it holds no contained resources itself (dom-2), has no
    /// version or update time of its own (dom-4) and no security labels (dom-5).
    fn contained_rules(&mut self, obj: &Map<String, Value>) {
        if obj.contains_key("contained") {
            self.at_child("contained", |v| {
                v.error(
                    IssueType::Invariant,
                    "a contained resource may not contain resources itself (dom-2)",
                )
            });
        }
        if let Some(Value::Object(meta)) = obj.get("meta") {
            if meta.contains_key("security") {
                self.at_child("meta", |v| {
                    v.at_child("security", |v| {
                        v.error(
                            IssueType::Invariant,
                            "a contained resource has no security labels of its own (dom-5)",
                        )
                    })
                });
            }
            for key in ["versionId", "lastUpdated"] {
                if meta.contains_key(key) {
                    self.at_child("meta", |v| {
                        v.at_child(key, |v| {
                            v.error(
                                IssueType::Invariant,
                                format!(
                                    "a contained resource has no meta.{key} of its own (dom-4)"
                                ),
                            )
                        })
                    });
                }
            }
        }
    }

    /// An object of type `td`: every property must be one of its elements, and required ones present.
    fn object(&mut self, obj: &Map<String, Value>, td: &'static TypeDef, is_resource: bool) {
        if self.depth >= MAX_DEPTH {
            self.error(
                IssueType::TooLong,
                format!("elements are nested more than {MAX_DEPTH} deep"),
            );
            return;
        }
        self.depth += 1;
        self.object_elements(obj, td, is_resource);
        self.depth -= 1;
    }

    fn object_elements(
        &mut self,
        obj: &Map<String, Value>,
        td: &'static TypeDef,
        is_resource: bool,
    ) {
        if obj.is_empty() {
            self.error(
                IssueType::Structure,
                "empty objects are not allowed; leave the element out",
            );
            return;
        }
        let mut seen = Seen::new();
        for (key, value) in obj {
            if is_resource && key == "resourceType" {
                continue;
            }
            let (companion, name) = match key.strip_prefix('_') {
                Some(name) => (true, name),
                None => (false, key.as_str()),
            };
            let Some((index, el, ty)) = lookup(td, name) else {
                self.at_child(key, |v| {
                    v.error(
                        IssueType::Structure,
                        format!("unknown element '{key}' in {}", td.name),
                    )
                });
                continue;
            };
            let len = self.path.len();
            if el.choice {
                let _ = write!(self.path, ".{}.ofType({ty})", el.name);
            } else {
                self.path.push('.');
                self.path.push_str(name);
            }
            if !seen.mark(index, companion) {
                self.error(
                    IssueType::Structure,
                    format!("only one type may be given for {}[x]", el.name),
                );
            }
            if companion {
                self.companion(value, el, ty, obj.get(name));
            } else {
                let extensions = if has_nulls(value) {
                    obj.get(&format!("_{name}"))
                } else {
                    None
                };
                self.element(value, el, ty, extensions);
            }
            self.path.truncate(len);
        }
        for (i, el) in td.elements.iter().enumerate() {
            if el.min > 0 && !seen.has(i) {
                let name = if el.choice {
                    format!("{}[x]", el.name)
                } else {
                    el.name.to_string()
                };
                self.at_child(el.name, |v| {
                    v.error(
                        IssueType::Required,
                        format!("{} requires element '{name}'", td.name),
                    )
                });
            }
        }
        if td.name == "Extension" {
            self.extension_rule(obj);
        }
    }

    /// ext-1: an extension has either nested extensions or a value, not both and not neither.
    fn extension_rule(&mut self, obj: &Map<String, Value>) {
        let nested = obj.contains_key("extension");
        let valued = obj
            .keys()
            .any(|k| k.len() > 5 && k.starts_with("value") && k.as_bytes()[5].is_ascii_uppercase());
        if nested == valued {
            self.error(
                IssueType::Invariant,
                if nested {
                    "an extension has either nested extensions or a value, not both (ext-1)"
                } else {
                    "an extension needs a value or nested extensions (ext-1)"
                },
            );
        }
    }

    /// The value of an element (an array of them if it repeats). `companion` is the `_name` array of a
    /// repeating primitive, consulted only when the value array holds nulls.
    fn element(
        &mut self,
        value: &Value,
        el: &ElementDef,
        ty: &'static str,
        companion: Option<&Value>,
    ) {
        if !el.is_array() {
            match value {
                Value::Array(_) => self.error(
                    IssueType::Structure,
                    format!(
                        "'{}' does not repeat: give one value, not an array",
                        el.name
                    ),
                ),
                Value::Null => self.error(
                    IssueType::Structure,
                    "null is not allowed; leave the element out",
                ),
                _ => self.value(value, el, ty),
            }
            return;
        }
        let Value::Array(items) = value else {
            self.error(
                IssueType::Structure,
                format!("'{}' repeats: give an array", el.name),
            );
            return;
        };
        if items.is_empty() {
            self.error(
                IssueType::Structure,
                "empty arrays are not allowed; leave the element out",
            );
            return;
        }
        if items.len() as u64 > u64::from(el.max) {
            self.error(
                IssueType::Structure,
                format!("at most {} values are allowed", el.max),
            );
        }
        for (i, item) in items.iter().enumerate() {
            let len = self.path.len();
            let _ = write!(self.path, "[{i}]");
            if item.is_null() {
                // A null keeps a repeating primitive aligned with its `_name` array, which must have something there.
                let extended = companion
                    .and_then(|c| c.get(i))
                    .is_some_and(|c| !c.is_null());
                if !extended {
                    self.error(
                        IssueType::Structure,
                        "null is only allowed where the _ array gives extensions",
                    );
                }
            } else {
                self.value(item, el, ty);
            }
            self.path.truncate(len);
        }
    }

    /// The `_name` companion of a primitive element: its id and extensions.
    fn companion(
        &mut self,
        value: &Value,
        el: &ElementDef,
        ty: &'static str,
        primitive: Option<&Value>,
    ) {
        let Some(td) = definitions::type_def(ty).filter(|t| t.kind == TypeKind::Primitive) else {
            self.error(
                IssueType::Structure,
                format!("'_{}' is only allowed for primitive elements", el.name),
            );
            return;
        };
        if !el.is_array() {
            match value.as_object() {
                Some(obj) => self.object(obj, td, false),
                None => self.error(
                    IssueType::Structure,
                    "a primitive's extensions are given as an object",
                ),
            }
            return;
        }
        let Value::Array(items) = value else {
            self.error(
                IssueType::Structure,
                format!("'_{}' repeats: give an array", el.name),
            );
            return;
        };
        if let Some(Value::Array(values)) = primitive {
            if values.len() != items.len() {
                self.error(
                    IssueType::Structure,
                    format!("'_{0}' must have as many items as '{0}'", el.name),
                );
            }
        }
        for (i, item) in items.iter().enumerate() {
            let len = self.path.len();
            let _ = write!(self.path, "[{i}]");
            match item {
                Value::Null => {}
                Value::Object(obj) => self.object(obj, td, false),
                _ => self.error(
                    IssueType::Structure,
                    "a primitive's extensions are given as an object or null",
                ),
            }
            self.path.truncate(len);
        }
    }

    /// One value of type `ty`.
    fn value(&mut self, value: &Value, el: &ElementDef, ty: &'static str) {
        let Some(td) = definitions::type_def(ty) else {
            return;
        };
        match td.kind {
            TypeKind::Primitive => self.primitive(value, ty, el.binding),
            TypeKind::Resource => self.resource(value, el.name == "contained"),
            TypeKind::Complex => {
                let Some(obj) = value.as_object() else {
                    self.error(
                        IssueType::Structure,
                        format!("a {} is a JSON object", display_type(ty)),
                    );
                    return;
                };
                self.object(obj, td, false);
                match ty {
                    "Reference" => self.reference(obj, el.targets),
                    "Coding" if el.binding.is_some() => self.coding(obj, el.binding),
                    "CodeableConcept" if el.binding.is_some() => {
                        self.codeable_concept(obj, el.binding)
                    }
                    _ => {}
                }
            }
        }
    }

    fn primitive(&mut self, value: &Value, ty: &str, binding: Option<&'static str>) {
        match (primitives::json_kind(ty), value) {
            (JsonKind::Bool, Value::Bool(_)) | (JsonKind::Decimal, Value::Number(_)) => {}
            (JsonKind::Integer(min), Value::Number(n)) => match n.as_i64() {
                Some(i) if i >= min && i <= i64::from(i32::MAX) => {}
                Some(_) => self.error(IssueType::Value, format!("{n} is out of range for {ty}")),
                None if n.is_u64() => {
                    self.error(IssueType::Value, format!("{n} is out of range for {ty}"))
                }
                None => self.error(IssueType::Value, format!("{ty} must be a whole number")),
            },
            (JsonKind::String, Value::String(s)) => {
                if let Some(problem) = primitives::check_string(ty, s) {
                    self.error(
                        IssueType::Value,
                        format!("invalid {ty} '{}': {problem}", clip(s)),
                    );
                } else if let Some(url) = binding {
                    if let Some(vs) = definitions::value_set(url) {
                        if !vs.contains_code(s) {
                            self.error(
                                IssueType::CodeInvalid,
                                format!("'{}' is not a code of {url}", clip(s)),
                            );
                        }
                    }
                }
            }
            (kind, _) => {
                let expected = match kind {
                    JsonKind::Bool => "true or false",
                    JsonKind::Integer(_) | JsonKind::Decimal => "a JSON number",
                    JsonKind::String => "a JSON string",
                };
                self.error(IssueType::Structure, format!("a {ty} is {expected}"));
            }
        }
    }

    /// A CodeableConcept under a required binding: every Coding from a code system of the value set
    /// must be one of its codes, and at least one Coding must be from the value set.
    fn codeable_concept(&mut self, obj: &Map<String, Value>, binding: Option<&'static str>) {
        let Some(vs) = binding.and_then(definitions::value_set) else {
            return;
        };
        let mut any_in_set = false;
        if let Some(Value::Array(codings)) = obj.get("coding") {
            for (i, coding) in codings.iter().enumerate() {
                if let Some(coding) = coding.as_object() {
                    let len = self.path.len();
                    let _ = write!(self.path, ".coding[{i}]");
                    self.coding(coding, binding);
                    self.path.truncate(len);
                    if let (Some(Value::String(system)), Some(Value::String(code))) =
                        (coding.get("system"), coding.get("code"))
                    {
                        any_in_set |= vs.contains(system, code);
                    }
                }
            }
        }
        if !any_in_set {
            self.error(
                IssueType::CodeInvalid,
                format!(
                    "no coding is from the value set {} that the element requires",
                    vs.url
                ),
            );
        }
    }

    /// A Coding under a required binding: a code from a code system of the value set must be one of its codes.
    fn coding(&mut self, coding: &Map<String, Value>, binding: Option<&'static str>) {
        let Some(vs) = binding.and_then(definitions::value_set) else {
            return;
        };
        let (Some(Value::String(system)), Some(Value::String(code))) =
            (coding.get("system"), coding.get("code"))
        else {
            return;
        };
        if vs.has_system(system) && !vs.contains(system, code) {
            self.at_child("code", |v| {
                v.error(
                    IssueType::CodeInvalid,
                    format!("'{}' is not a code of {} in {system}", clip(code), vs.url),
                )
            });
        }
    }

    /// A Reference: its `reference` is well formed, and it and `type` name a resource type the element
    /// may point at (`targets`, empty for any).
    fn reference(&mut self, obj: &Map<String, Value>, targets: &[&str]) {
        let allowed =
            |ty: &str| targets.is_empty() || targets.iter().any(|t| definitions::is_a(ty, t));
        if let Some(Value::String(ty)) = obj.get("type") {
            if definitions::is_resource_type(ty) && !allowed(ty) {
                self.at_child("type", |v| {
                    v.error(
                        IssueType::Value,
                        format!(
                            "a reference here points at {}, not {ty}",
                            targets.join(" or ")
                        ),
                    )
                });
            }
        }
        let Some(Value::String(reference)) = obj.get("reference") else {
            return;
        };
        if !reference_is_well_formed(reference) {
            self.at_child("reference", |v| {
                v.error(
                    IssueType::Value,
                    format!(
                        "'{}' is not a reference: expected Type/id, Type/id/_history/version, an absolute URL, \
                         #contained-id, urn:uuid: or urn:oid:",
                        clip(reference)
                    ),
                )
            });
        } else if let Some(id) = reference.strip_prefix('#').filter(|id| !id.is_empty()) {
            // ref-1: a local reference names a contained resource (`#` alone is the container).
            let known = self
                .local_ids
                .last()
                .and_then(|ids| ids.iter().find(|(i, _)| i == id))
                .map(|(_, ty)| ty.clone());
            if let Some(ty) = known
                .as_deref()
                .filter(|ty| definitions::is_resource_type(ty) && !allowed(ty))
            {
                self.at_child("reference", |v| {
                    v.error(
                        IssueType::Value,
                        format!(
                            "a reference here points at {}, not {ty}",
                            targets.join(" or ")
                        ),
                    )
                });
            } else if known.is_none() {
                self.at_child("reference", |v| {
                    v.error(
                        IssueType::Invariant,
                        format!(
                            "'#{}' names no contained resource of this resource (ref-1)",
                            clip(id)
                        ),
                    )
                });
            }
        } else if let Some(ty) = referenced_type(reference) {
            if !allowed(ty) {
                self.at_child("reference", |v| {
                    v.error(
                        IssueType::Value,
                        format!(
                            "a reference here points at {}, not {ty}",
                            targets.join(" or ")
                        ),
                    )
                });
            }
        }
    }
}

/// The resource type a well-formed literal reference names: `Type/id`, `Type/id/_history/v`, `Type?query`,
/// or an absolute URL ending in `Type/id` (or `Type/id/_history/v`). `None` for contained, `urn:` and other
/// references that do not say.
fn referenced_type(reference: &str) -> Option<&str> {
    if let Some((ty, _)) = reference.split_once('?') {
        if !ty.contains([':', '/']) {
            return Some(ty);
        }
    }
    if reference.starts_with('#') || reference.starts_with("urn:") {
        return None;
    }
    let path = reference.split(['?', '#']).next().unwrap_or(reference);
    let parts: Vec<&str> = path.split('/').collect();
    let ty = match parts.as_slice() {
        [.., ty, id, "_history", v] if is_id(id) && is_id(v) => ty,
        [.., ty, id] if is_id(id) => ty,
        _ => return None,
    };
    definitions::is_resource_type(ty).then_some(*ty)
}

/// The element a JSON property names, with its index and the type it takes.
fn lookup(td: &'static TypeDef, key: &str) -> Option<(usize, &'static ElementDef, &'static str)> {
    let (el, ty) = td.element_for_key(key)?;
    let index = td.elements.iter().position(|e| std::ptr::eq(e, el))?;
    Some((index, el, ty))
}

/// Only arrays can hold the nulls that need the `_name` companion.
fn has_nulls(value: &Value) -> bool {
    value
        .as_array()
        .is_some_and(|items| items.iter().any(Value::is_null))
}

fn display_type(ty: &str) -> &str {
    if ty.contains('.') {
        "backbone element"
    } else {
        ty
    }
}

/// Quotes at most the first 64 characters of a bad value back to the client.
fn clip(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// `Type/id`, `Type/id/_history/version`, a conditional `Type?query` (transactions), an absolute URL,
/// `#id` (a contained resource, or `#` for the container), `urn:uuid:`, `urn:oid:`.
pub fn reference_is_well_formed(reference: &str) -> bool {
    if let Some(id) = reference.strip_prefix('#') {
        return id.is_empty() || is_id(id);
    }
    if reference.starts_with("urn:uuid:") {
        return primitives::is_uuid_urn(reference);
    }
    if reference.starts_with("urn:oid:") {
        return primitives::is_oid_urn(reference);
    }
    if let Some((ty, _query)) = reference.split_once('?') {
        if !ty.contains([':', '/']) {
            // A conditional reference (`Patient?identifier=...`), resolved in a transaction.
            return definitions::is_resource_type(ty);
        }
    }
    if reference.chars().any(char::is_whitespace) {
        return false;
    }
    if let Some((scheme, rest)) = reference.split_once("://") {
        let scheme_ok = scheme
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        return scheme_ok && !rest.is_empty();
    }
    let mut parts = reference.split('/');
    let (Some(ty), Some(id)) = (parts.next(), parts.next()) else {
        return false;
    };
    let version_ok = match (parts.next(), parts.next(), parts.next()) {
        (None, _, _) => true,
        (Some("_history"), Some(version), None) => is_id(version),
        _ => false,
    };
    definitions::is_resource_type(ty) && is_id(id) && version_ok
}

#[cfg(test)]
mod tests;
