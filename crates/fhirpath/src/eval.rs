//! The evaluator: walks the syntax tree over borrowed JSON, navigating paths with the [`Model`]'s
//! types, and implements the operators. Functions live in [`crate::functions`].

use std::cell::RefCell;
use std::cmp::Ordering;

use serde_json::{Map, Value};

use crate::ast::{BinOp, EnvVar, Expr, Literal, TypeOp, TypeSpec};
use crate::value::{self, is_primitive_type, prim, DateTime, Prim};
use crate::{EvalError, Item, Model};

pub(crate) type Items<'a> = Vec<Item<'a>>;
pub(crate) type Res<'a> = Result<Items<'a>, EvalError>;

/// What `$this`, `$index` and `$total` are while evaluating a sub-expression.
#[derive(Clone, Copy)]
pub(crate) struct Scope<'s, 'a> {
    pub this: &'s [Item<'a>],
    pub index: Option<usize>,
    pub total: Option<&'s [Item<'a>]>,
}

/// The value of a node that stands for something that has no JSON of its own (the target of
/// `resolve()`, a primitive with only an extension).
pub(crate) static NULL: Value = Value::Null;

pub(crate) struct Evaluator<'a, 'm> {
    pub model: &'m dyn Model,
    pub root: Item<'a>,
    /// Primitive values whose `_name` sibling carries an id or extensions, found while navigating:
    /// `(value, sibling)`. Filled only when such siblings exist, so the common case costs nothing.
    companions: RefCell<Vec<(&'a Value, &'a Value)>>,
}

impl<'a, 'm> Evaluator<'a, 'm> {
    pub(crate) fn new(resource: &'a Value, model: &'m dyn Model) -> Self {
        let ty = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .and_then(|t| model.type_name(t));
        Evaluator {
            model,
            root: Item::Node {
                value: resource,
                ty,
            },
            companions: RefCell::new(Vec::new()),
        }
    }

    pub(crate) fn eval(&self, expr: &Expr, scope: Scope<'_, 'a>) -> Res<'a> {
        match expr {
            Expr::Empty => Ok(Vec::new()),
            Expr::Literal(l) => Ok(vec![literal(l)]),
            Expr::This => Ok(scope.this.to_vec()),
            Expr::Index => Ok(scope
                .index
                .map(|i| Item::Integer(i as i64))
                .into_iter()
                .collect()),
            Expr::Total => Ok(scope.total.map(<[Item]>::to_vec).unwrap_or_default()),
            Expr::Env(EnvVar::Resource | EnvVar::Context) => Ok(vec![self.root.clone()]),
            Expr::Env(EnvVar::Constant(s)) => Ok(vec![Item::String(s.clone())]),
            Expr::Member { base: None, name } => {
                let mut out = Vec::new();
                for item in scope.this {
                    if self.is_type_name_step(item, name) {
                        out.push(item.clone());
                    } else {
                        self.children_named(item, name, &mut out);
                    }
                }
                Ok(out)
            }
            Expr::Member {
                base: Some(base),
                name,
            } => {
                let input = self.eval(base, scope)?;
                let mut out = Vec::with_capacity(input.len());
                for item in &input {
                    self.children_named(item, name, &mut out);
                }
                Ok(out)
            }
            Expr::Call {
                base,
                func,
                args,
                regex,
            } => {
                let owned;
                let input: &[Item<'a>] = match base {
                    Some(b) => {
                        owned = self.eval(b, scope)?;
                        &owned
                    }
                    None => scope.this,
                };
                crate::functions::call(self, *func, input, args, regex.as_deref(), scope)
            }
            Expr::Indexer { base, index } => {
                let input = self.eval(base, scope)?;
                let idx = self.eval(index, scope)?;
                match idx.as_slice() {
                    [] => Ok(Vec::new()),
                    [i] => match self.integer(i) {
                        Some(i) if i >= 0 => {
                            Ok(input.into_iter().nth(i as usize).into_iter().collect())
                        }
                        Some(_) => Ok(Vec::new()),
                        None => Err(EvalError("an index must be an integer".into())),
                    },
                    _ => Err(EvalError("an index must be a single integer".into())),
                }
            }
            Expr::Negate(inner) => {
                let v = self.eval(inner, scope)?;
                match v.as_slice() {
                    [] => Ok(Vec::new()),
                    [item] => match prim(item, self.model) {
                        Prim::Int(i) => {
                            Ok(i.checked_neg().map(Item::Integer).into_iter().collect())
                        }
                        Prim::Dec(d) => Ok(vec![Item::Decimal(-d)]),
                        Prim::Quantity(v, u) => Ok(vec![Item::Quantity {
                            value: -v,
                            unit: u.to_string(),
                        }]),
                        _ => Err(EvalError("unary minus needs a number or a quantity".into())),
                    },
                    _ => Err(EvalError("unary minus needs a single value".into())),
                }
            }
            Expr::Binary { op, lhs, rhs } => self.binary(*op, lhs, rhs, scope),
            Expr::Type { op, base, ty } => {
                let owned;
                let input: &[Item<'a>] = match base {
                    Some(b) => {
                        owned = self.eval(b, scope)?;
                        &owned
                    }
                    None => scope.this,
                };
                self.type_op(*op, input, ty)
            }
        }
    }

    /// `Patient` at the start of `Patient.name` selects the focus when it is a Patient.
    fn is_type_name_step(&self, item: &Item<'a>, name: &str) -> bool {
        name.as_bytes().first().is_some_and(u8::is_ascii_uppercase)
            && matches!(item, Item::Node { ty: Some(t), .. } if self.model.is_a(t, name))
    }

    /// The JSON object holding `item`'s children: the node itself, or a primitive's `_name` sibling.
    fn element_object(&self, item: &Item<'a>) -> Option<&'a Map<String, Value>> {
        let Item::Node { value, .. } = item else {
            return None;
        };
        match value {
            Value::Object(obj) => Some(obj),
            Value::Null => None,
            v => {
                let companions = self.companions.borrow();
                companions
                    .iter()
                    .find(|(p, _)| std::ptr::eq(*p, *v))
                    .and_then(|(_, c)| c.as_object())
            }
        }
    }

    /// Appends the children called `name` of `item` (choice elements `value[x]` included) to `out`.
    pub(crate) fn children_named(&self, item: &Item<'a>, name: &str, out: &mut Items<'a>) {
        let Some(obj) = self.element_object(item) else {
            return;
        };
        let parent_ty = match item {
            Item::Node { ty, .. } => *ty,
            _ => None,
        };
        if let Some(v) = obj.get(name) {
            let ty = parent_ty
                .and_then(|t| self.model.child_type(t, name))
                .or_else(|| self.suffix_type(name));
            let companion = if ty.is_none_or(is_primitive_type) {
                self.companion(obj, name)
            } else {
                None
            };
            self.push_values(v, ty, companion, out);
            return;
        }
        let declared = parent_ty.and_then(|t| self.model.child_type(t, name));
        if declared.is_some() {
            // A declared element that is absent, unless only its `_name` sibling is there.
            if declared.is_some_and(is_primitive_type) {
                if let Some(c) = self.companion(obj, name) {
                    self.push_values(&NULL, declared, Some(c), out);
                }
            }
            return;
        }
        // A choice element: `value` finds `valueQuantity`, typed by the key's suffix.
        for (key, v) in obj {
            let Some(suffix) = key.strip_prefix(name) else {
                continue;
            };
            if !suffix
                .as_bytes()
                .first()
                .is_some_and(u8::is_ascii_uppercase)
            {
                continue;
            }
            if let Some(ty) = self.choice_type(suffix) {
                let companion = if is_primitive_type(ty) {
                    self.companion(obj, key)
                } else {
                    None
                };
                self.push_values(v, Some(ty), companion, out);
            }
        }
    }

    fn companion(&self, obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
        // Cheap check first: most objects have no `_name` keys at all.
        if !obj.keys().any(|k| k.starts_with('_')) {
            return None;
        }
        obj.get(&format!("_{name}"))
    }

    /// The type named by a choice suffix: `Quantity`, or `String` → `string`.
    pub(crate) fn choice_type(&self, suffix: &str) -> Option<&'static str> {
        if let Some(t) = self.model.type_name(suffix) {
            return Some(t);
        }
        let mut lower = String::with_capacity(suffix.len());
        let mut chars = suffix.chars();
        lower.extend(chars.next().map(|c| c.to_ascii_lowercase()));
        lower.extend(chars);
        self.model
            .type_name(&lower)
            .filter(|t| is_primitive_type(t))
    }

    /// For a key the model does not know (`valueQuantity` asked for directly), the type its suffix names.
    fn suffix_type(&self, key: &str) -> Option<&'static str> {
        key.char_indices()
            .skip(1)
            .filter(|(_, c)| c.is_ascii_uppercase())
            .find_map(|(i, _)| self.choice_type(&key[i..]))
    }

    fn push_values(
        &self,
        v: &'a Value,
        ty: Option<&'static str>,
        companion: Option<&'a Value>,
        out: &mut Items<'a>,
    ) {
        match v {
            Value::Array(values) => {
                let companions = companion.and_then(Value::as_array);
                for (i, x) in values.iter().enumerate() {
                    let c = companions.and_then(|c| c.get(i)).filter(|c| !c.is_null());
                    self.push_one(x, ty, c, out);
                }
            }
            _ => self.push_one(v, ty, companion, out),
        }
    }

    fn push_one(
        &self,
        v: &'a Value,
        ty: Option<&'static str>,
        companion: Option<&'a Value>,
        out: &mut Items<'a>,
    ) {
        if v.is_null() {
            if let Some(c) = companion {
                out.push(Item::Node { value: c, ty });
            }
            return;
        }
        if let Some(c) = companion {
            self.companions.borrow_mut().push((v, c));
        }
        out.push(Item::Node {
            value: v,
            ty: self.refine(v, ty),
        });
    }

    /// A node declared as `Resource` (contained, `Bundle.entry.resource`) takes its `resourceType`.
    pub(crate) fn refine(&self, v: &'a Value, ty: Option<&'static str>) -> Option<&'static str> {
        if matches!(ty, None | Some("Resource") | Some("DomainResource")) {
            if let Some(rt) = v.get("resourceType").and_then(Value::as_str) {
                return self.model.type_name(rt).or(ty);
            }
        }
        ty
    }

    /// Every child of `item`, in document order (for `children()` and `descendants()`).
    pub(crate) fn all_children(&self, item: &Item<'a>, out: &mut Items<'a>) {
        let Some(obj) = self.element_object(item) else {
            return;
        };
        let parent_ty = match item {
            Item::Node { ty, .. } => *ty,
            _ => None,
        };
        for (key, v) in obj {
            if key.starts_with('_') || key == "resourceType" {
                continue;
            }
            let ty = parent_ty
                .and_then(|t| self.model.child_type(t, key))
                .or_else(|| self.suffix_type(key));
            let companion = if ty.is_none_or(is_primitive_type) {
                self.companion(obj, key)
            } else {
                None
            };
            self.push_values(v, ty, companion, out);
        }
    }

    /// A single integer argument or index.
    pub(crate) fn integer(&self, item: &Item<'a>) -> Option<i64> {
        match prim(item, self.model) {
            Prim::Int(i) => Some(i),
            _ => None,
        }
    }

    /// Singleton evaluation of a collection as a Boolean: empty is unknown, one boolean is itself,
    /// one other item is true, several are an error.
    pub(crate) fn boolean(&self, items: &[Item<'a>]) -> Result<Option<bool>, EvalError> {
        match items {
            [] => Ok(None),
            [item] => Ok(Some(match prim(item, self.model) {
                Prim::Bool(b) => b,
                _ => true,
            })),
            _ => Err(EvalError(format!(
                "expected a single boolean, got {} items",
                items.len()
            ))),
        }
    }

    fn binary(&self, op: BinOp, lhs: &Expr, rhs: &Expr, scope: Scope<'_, 'a>) -> Res<'a> {
        // The logical operators look at the right side only when the left does not decide.
        match op {
            BinOp::And | BinOp::Or | BinOp::Implies | BinOp::Xor => {
                let l = self.boolean(&self.eval(lhs, scope)?)?;
                let short = match (op, l) {
                    (BinOp::And, Some(false)) => Some(false),
                    (BinOp::Or, Some(true)) => Some(true),
                    (BinOp::Implies, Some(false)) => Some(true),
                    _ => None,
                };
                if let Some(b) = short {
                    return Ok(vec![Item::Boolean(b)]);
                }
                let r = self.boolean(&self.eval(rhs, scope)?)?;
                let result = match op {
                    BinOp::And => match (l, r) {
                        (_, Some(false)) => Some(false),
                        (Some(true), Some(true)) => Some(true),
                        _ => None,
                    },
                    BinOp::Or => match (l, r) {
                        (_, Some(true)) => Some(true),
                        (Some(false), Some(false)) => Some(false),
                        _ => None,
                    },
                    BinOp::Implies => match (l, r) {
                        (_, Some(true)) => Some(true),
                        (Some(true), r) => r,
                        _ => None,
                    },
                    _ => l.zip(r).map(|(a, b)| a != b),
                };
                return Ok(result.map(Item::Boolean).into_iter().collect());
            }
            _ => {}
        }
        let l = self.eval(lhs, scope)?;
        let r = self.eval(rhs, scope)?;
        self.apply(op, l, r)
    }

    pub(crate) fn apply(&self, op: BinOp, l: Items<'a>, r: Items<'a>) -> Res<'a> {
        let m = self.model;
        let boolean = |b: Option<bool>| Ok(b.map(Item::Boolean).into_iter().collect());
        match op {
            BinOp::Union => {
                let mut out = Vec::with_capacity(l.len() + r.len());
                for item in l.into_iter().chain(r) {
                    if !self.contains(&out, &item) {
                        out.push(item);
                    }
                }
                Ok(out)
            }
            BinOp::Eq | BinOp::Ne => {
                if l.is_empty() || r.is_empty() {
                    return Ok(Vec::new());
                }
                let mut eq = Some(l.len() == r.len());
                if eq == Some(true) {
                    for (a, b) in l.iter().zip(&r) {
                        match value::equals(prim(a, m), prim(b, m)) {
                            Some(true) => {}
                            Some(false) => {
                                eq = Some(false);
                                break;
                            }
                            None => eq = None,
                        }
                    }
                }
                boolean(if op == BinOp::Eq { eq } else { eq.map(|b| !b) })
            }
            BinOp::Equiv | BinOp::NotEquiv => {
                let eq = l.len() == r.len()
                    && l.iter()
                        .all(|a| r.iter().any(|b| value::equivalent(prim(a, m), prim(b, m))));
                boolean(Some(if op == BinOp::Equiv { eq } else { !eq }))
            }
            BinOp::Lt | BinOp::Gt | BinOp::Le | BinOp::Ge => {
                let (a, b) = match (
                    self.single(&l, "comparison")?,
                    self.single(&r, "comparison")?,
                ) {
                    (Some(a), Some(b)) => (a, b),
                    _ => return Ok(Vec::new()),
                };
                let ord = value::compare(prim(a, m), prim(b, m))
                    .map_err(|()| EvalError("these values cannot be compared".into()))?;
                boolean(ord.map(|o| match op {
                    BinOp::Lt => o == Ordering::Less,
                    BinOp::Gt => o == Ordering::Greater,
                    BinOp::Le => o != Ordering::Greater,
                    _ => o != Ordering::Less,
                }))
            }
            BinOp::In | BinOp::Contains => {
                let (needle, haystack) = if op == BinOp::In { (&l, &r) } else { (&r, &l) };
                match needle.as_slice() {
                    [] => Ok(Vec::new()),
                    [item] => boolean(Some(self.contains(haystack, item))),
                    _ => Err(EvalError("'in' and 'contains' need a single item".into())),
                }
            }
            BinOp::Concat => {
                let text = |items: &Items<'a>| -> Result<String, EvalError> {
                    match self.single(items, "&")? {
                        None => Ok(String::new()),
                        Some(i) => self
                            .string(i)
                            .ok_or_else(|| EvalError("'&' needs strings".into())),
                    }
                };
                Ok(vec![Item::String(text(&l)? + &text(&r)?)])
            }
            _ => {
                let (a, b) = match (
                    self.single(&l, "arithmetic")?,
                    self.single(&r, "arithmetic")?,
                ) {
                    (Some(a), Some(b)) => (a, b),
                    _ => return Ok(Vec::new()),
                };
                arithmetic(op, prim(a, m), prim(b, m)).map(|o| o.into_iter().collect())
            }
        }
    }

    /// Whether `items` holds something equal to `item`.
    pub(crate) fn contains(&self, items: &[Item<'a>], item: &Item<'a>) -> bool {
        let p = prim(item, self.model);
        items
            .iter()
            .any(|x| value::equals(prim(x, self.model), p) == Some(true))
    }

    pub(crate) fn single<'x>(
        &self,
        items: &'x [Item<'a>],
        what: &str,
    ) -> Result<Option<&'x Item<'a>>, EvalError> {
        match items {
            [] => Ok(None),
            [item] => Ok(Some(item)),
            _ => Err(EvalError(format!(
                "{what} needs a single item, got {}",
                items.len()
            ))),
        }
    }

    /// The text of a string-like item (strings, codes, uris... but not numbers or dates).
    pub(crate) fn string(&self, item: &Item<'a>) -> Option<String> {
        self.str(item).map(str::to_string)
    }

    pub(crate) fn str<'x>(&self, item: &'x Item<'a>) -> Option<&'x str> {
        match item {
            Item::String(s) => Some(s),
            Item::Node {
                value: Value::String(s),
                ty,
            } => match ty {
                Some("date" | "dateTime" | "instant" | "time" | "decimal" | "integer") => None,
                _ => Some(s),
            },
            _ => None,
        }
    }

    fn type_op(&self, op: TypeOp, input: &[Item<'a>], ty: &TypeSpec) -> Res<'a> {
        match op {
            TypeOp::OfType => {
                let out: Items<'a> = input
                    .iter()
                    .filter(|i| self.is_type_exactly(i, ty))
                    .cloned()
                    .collect();
                // An unknown type name is an error even when there is nothing to test.
                if out.is_empty() {
                    self.check_type_known(ty)?;
                }
                Ok(out)
            }
            TypeOp::Is | TypeOp::As => {
                let Some(item) = self.single(input, "is/as")? else {
                    self.check_type_known(ty)?;
                    return Ok(Vec::new());
                };
                let is = if op == TypeOp::Is {
                    self.is_type(item, ty)
                } else {
                    self.is_type_exactly(item, ty)
                };
                if !is {
                    self.check_type_known(ty)?;
                }
                Ok(match op {
                    TypeOp::Is => vec![Item::Boolean(is)],
                    _ if is => vec![item.clone()],
                    _ => Vec::new(),
                })
            }
        }
    }

    fn check_type_known(&self, ty: &TypeSpec) -> Result<(), EvalError> {
        let known = match ty.namespace.as_deref() {
            // An unknown System type is simply not the item's type.
            Some("System") => true,
            Some("FHIR") => self.model.type_name(&ty.name).is_some(),
            _ => system_type(&ty.name) || self.model.type_name(&ty.name).is_some(),
        };
        if known {
            Ok(())
        } else {
            Err(EvalError(format!("unknown type '{}'", ty.name)))
        }
    }

    /// For `as` and `ofType`: like `is`, except that a primitive must have exactly the type named
    /// (a `code` is not taken as a `string`, a `canonical` not as a `uri`), as the FHIRPath test
    /// suite expects; this also keeps `ofType(uri)` and `ofType(canonical)` apart in search
    /// parameters.
    pub(crate) fn is_type_exactly(&self, item: &Item<'a>, spec: &TypeSpec) -> bool {
        match item {
            Item::Node { ty: Some(t), .. } if value::is_primitive_type(t) => {
                spec.namespace.as_deref() != Some("System") && *t == spec.name
            }
            _ => self.is_type(item, spec),
        }
    }

    pub(crate) fn is_type(&self, item: &Item<'a>, spec: &TypeSpec) -> bool {
        let name = spec.name.as_str();
        match item {
            Item::Node { ty, .. } => {
                let fhir = spec.namespace.as_deref() != Some("System");
                match ty {
                    Some(t) => fhir && (*t == name || self.model.is_a(t, name)),
                    None => false,
                }
            }
            _ => {
                if spec.namespace.as_deref() == Some("FHIR") {
                    return false;
                }
                let sys = match item {
                    Item::Boolean(_) => "Boolean",
                    Item::Integer(_) => "Integer",
                    Item::Decimal(_) => "Decimal",
                    Item::String(_) => "String",
                    Item::Date(_) => "Date",
                    Item::DateTime(_) => "DateTime",
                    Item::Time(_) => "Time",
                    _ => "Quantity",
                };
                sys == name
            }
        }
    }
}

fn system_type(name: &str) -> bool {
    matches!(
        name,
        "Boolean" | "Integer" | "Decimal" | "String" | "Date" | "DateTime" | "Time" | "Quantity"
    )
}

pub(crate) fn literal<'a>(l: &Literal) -> Item<'a> {
    match l {
        Literal::Boolean(b) => Item::Boolean(*b),
        Literal::Integer(i) => Item::Integer(*i),
        Literal::Decimal(d) => Item::Decimal(*d),
        Literal::String(s) => Item::String(s.clone()),
        Literal::Date(s) => Item::Date(s.clone()),
        Literal::DateTime(s) => Item::DateTime(s.clone()),
        Literal::Time(s) => Item::Time(s.clone()),
        Literal::Quantity { value, unit } => Item::Quantity {
            value: *value,
            unit: unit.clone(),
        },
    }
}

fn arithmetic<'a>(op: BinOp, a: Prim, b: Prim) -> Result<Option<Item<'a>>, EvalError> {
    let bad = || EvalError("these values do not support this arithmetic operator".into());
    Ok(match (a, b) {
        (Prim::Int(x), Prim::Int(y)) => match op {
            BinOp::Add => x.checked_add(y).map(Item::Integer),
            BinOp::Sub => x.checked_sub(y).map(Item::Integer),
            BinOp::Mul => x.checked_mul(y).map(Item::Integer),
            BinOp::Div => (y != 0).then(|| Item::Decimal(x as f64 / y as f64)),
            BinOp::IntDiv => x.checked_div(y).map(Item::Integer),
            BinOp::Mod => x.checked_rem(y).map(Item::Integer),
            _ => return Err(bad()),
        },
        (Prim::Int(_) | Prim::Dec(_), Prim::Int(_) | Prim::Dec(_)) => {
            let f = |p| match p {
                Prim::Int(i) => i as f64,
                Prim::Dec(d) => d,
                _ => f64::NAN,
            };
            let (x, y) = (f(a), f(b));
            match op {
                BinOp::Add => Some(Item::Decimal(x + y)),
                BinOp::Sub => Some(Item::Decimal(x - y)),
                BinOp::Mul => Some(Item::Decimal(x * y)),
                BinOp::Div => (y != 0.0).then(|| Item::Decimal(x / y)),
                BinOp::IntDiv => (y != 0.0).then(|| Item::Integer((x / y).trunc() as i64)),
                BinOp::Mod => (y != 0.0).then(|| Item::Decimal(x % y)),
                _ => return Err(bad()),
            }
        }
        (Prim::Str(x), Prim::Str(y)) if op == BinOp::Add => Some(Item::String(format!("{x}{y}"))),
        (Prim::Date(s) | Prim::DateTime(s) | Prim::Time(s), Prim::Quantity(v, u))
            if matches!(op, BinOp::Add | BinOp::Sub) =>
        {
            let dt = if matches!(a, Prim::Time(_)) {
                DateTime::parse_time(s)
            } else {
                DateTime::parse(s)
            };
            let dt = dt.ok_or_else(bad)?;
            let v = if op == BinOp::Sub { -v } else { v };
            // Calendar keywords, and the UCUM codes of definite durations (not `a` or `mo`, whose
            // length varies).
            let unit = crate::parser::calendar_unit(u)
                .or(match u {
                    "wk" => Some("week"),
                    "d" => Some("day"),
                    "h" => Some("hour"),
                    "min" => Some("minute"),
                    "s" => Some("second"),
                    "ms" => Some("millisecond"),
                    _ => None,
                })
                .ok_or_else(|| EvalError(format!("'{u}' is not a calendar duration")))?;
            let r = dt.add(v, unit).ok_or_else(bad)?;
            Some(match a {
                Prim::Date(_) => Item::Date(r.format()),
                Prim::Time(_) => Item::Time(r.format()),
                _ => Item::DateTime(r.format()),
            })
        }
        (Prim::Quantity(x, u), Prim::Quantity(y, v))
            if u == v && matches!(op, BinOp::Add | BinOp::Sub) =>
        {
            let value = if op == BinOp::Add { x + y } else { x - y };
            Some(Item::Quantity {
                value,
                unit: u.to_string(),
            })
        }
        (Prim::Quantity(x, u), Prim::Quantity(y, v)) if matches!(op, BinOp::Mul | BinOp::Div) => {
            // Units of one dimension are first brought to the larger of the two (cm and m: m).
            let (x, y, u, v) = match value::quantity_factor(u, v) {
                Some(f) if f >= 1.0 => (x, y / f, u, u),
                Some(f) => (x * f, y, v, v),
                None => (x, y, u, v),
            };
            let unit = match op {
                BinOp::Mul if u == "1" => v.to_string(),
                BinOp::Mul if v == "1" => u.to_string(),
                BinOp::Mul if u == v => format!("{u}2"),
                BinOp::Mul => format!("{u}.{v}"),
                _ if u == v => "1".to_string(),
                _ if v == "1" => u.to_string(),
                _ => format!("{u}/{v}"),
            };
            let value = if op == BinOp::Mul { x * y } else { x / y };
            value.is_finite().then_some(Item::Quantity { value, unit })
        }
        (Prim::Quantity(x, u), Prim::Int(_) | Prim::Dec(_))
            if matches!(op, BinOp::Mul | BinOp::Div) =>
        {
            let y = match b {
                Prim::Int(i) => i as f64,
                Prim::Dec(d) => d,
                _ => f64::NAN,
            };
            let value = if op == BinOp::Mul { x * y } else { x / y };
            Some(Item::Quantity {
                value,
                unit: u.to_string(),
            })
        }
        _ => return Err(bad()),
    })
}
