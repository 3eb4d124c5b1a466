//! SMART App Launch 2.x scopes in both forms, what a set of them permits, and granting at the token endpoint.
//!
//! A resource scope is `context/Type.permissions`, with `context` one of `patient`, `user` or `system` and `Type` a
//! FHIR resource type or `*`. The permissions are written either the v1 way (`read` = read and search, `write` =
//! create, update and delete, `*` = all) or the v2 way (the letters `c r u d s`, in that order, each at most once).
//! A v2 scope may carry a restriction, `system/Observation.rs?category=laboratory`: this crate parses and keeps it
//! but cannot apply it (that needs the resource), so [`ScopeSet::access`] answers [`Access::Restricted`] and **the
//! caller must either apply the restriction as a search filter on every result or refuse the request**.
//! [`ScopeSet::permits`] treats a restricted grant as no grant, so a caller that ignores restrictions stays safe.
//!
//! The SMART scopes that are not about resources (`openid`, `fhirUser`, `launch`, `offline_access` and the like)
//! are accepted and kept so they can be granted; they permit no interaction.

use std::fmt;

/// Whose data a resource scope is about: the launch's patient, what the signed-in user may see, or (for SMART
/// Backend Services) what the client system may see.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Context {
    Patient,
    User,
    System,
}

impl Context {
    /// The scope prefix without its slash: `patient`, `user`, `system`.
    pub fn as_str(self) -> &'static str {
        match self {
            Context::Patient => "patient",
            Context::User => "user",
            Context::System => "system",
        }
    }
}

/// A FHIR RESTful interaction as the scopes see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Interaction {
    Create,
    Read,
    /// Reading one version counts as reading.
    Vread,
    Update,
    Delete,
    Search,
    /// Reading a resource's (or a type's) history counts as reading, as SMART says.
    History,
}

impl Interaction {
    /// The one permission the interaction needs.
    pub fn needs(self) -> Permissions {
        match self {
            Interaction::Create => Permissions::CREATE,
            Interaction::Read | Interaction::Vread | Interaction::History => Permissions::READ,
            Interaction::Update => Permissions::UPDATE,
            Interaction::Delete => Permissions::DELETE,
            Interaction::Search => Permissions::SEARCH,
        }
    }
}

/// A set of the five SMART v2 permissions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Permissions(u8);

impl Permissions {
    pub const NONE: Permissions = Permissions(0);
    pub const CREATE: Permissions = Permissions(1);
    pub const READ: Permissions = Permissions(2);
    pub const UPDATE: Permissions = Permissions(4);
    pub const DELETE: Permissions = Permissions(8);
    pub const SEARCH: Permissions = Permissions(16);
    pub const ALL: Permissions = Permissions(31);
    /// What v1 `read` means.
    pub const V1_READ: Permissions = Permissions(2 | 16);
    /// What v1 `write` means.
    pub const V1_WRITE: Permissions = Permissions(1 | 4 | 8);

    /// The v2 letters in their canonical order.
    const LETTERS: [(char, Permissions); 5] = [
        ('c', Permissions::CREATE),
        ('r', Permissions::READ),
        ('u', Permissions::UPDATE),
        ('d', Permissions::DELETE),
        ('s', Permissions::SEARCH),
    ];

    pub fn contains(self, other: Permissions) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn union(self, other: Permissions) -> Permissions {
        Permissions(self.0 | other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The permissions as v2 letters, `cruds` order: `rs` for v1 `read`.
    pub fn letters(self) -> String {
        Permissions::LETTERS
            .iter()
            .filter(|(_, p)| self.contains(*p))
            .map(|(c, _)| *c)
            .collect()
    }

    /// Parses v2 letters; `None` unless they are `c r u d s` in that order, each at most once, and at least one.
    fn from_letters(s: &str) -> Option<Permissions> {
        let mut permissions = Permissions::NONE;
        let mut next = 0;
        for ch in s.chars() {
            let at = next
                + Permissions::LETTERS[next..]
                    .iter()
                    .position(|(c, _)| *c == ch)?;
            permissions = permissions.union(Permissions::LETTERS[at].1);
            next = at + 1;
        }
        (!permissions.is_empty()).then_some(permissions)
    }
}

/// Which syntax a resource scope was written in. Kept so the scope can be shown as it was asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Form {
    V1,
    V2,
}

/// A parsed `context/Type.permissions[?restriction]` scope.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ResourceScope {
    context: Context,
    resource_type: Option<String>,
    permissions: Permissions,
    restriction: Option<String>,
    form: Form,
}

impl ResourceScope {
    pub fn context(&self) -> Context {
        self.context
    }

    /// The resource type, or `None` for `*`.
    pub fn resource_type(&self) -> Option<&str> {
        self.resource_type.as_deref()
    }

    pub fn permissions(&self) -> Permissions {
        self.permissions
    }

    /// The v2 restriction as written after the `?` (a FHIR search query string, not percent-decoded), which the
    /// caller must enforce or refuse.
    pub fn restriction(&self) -> Option<&str> {
        self.restriction.as_deref()
    }

    pub fn form(&self) -> Form {
        self.form
    }

    fn applies_to(&self, context: Context, resource_type: &str) -> bool {
        self.context == context
            && self
                .resource_type
                .as_deref()
                .is_none_or(|t| t == resource_type)
    }
}

/// One scope as it was written, with its meaning if it is a resource scope.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Scope {
    text: String,
    resource: Option<ResourceScope>,
}

/// The SMART scopes that are not about resources; they are kept and granted but permit no interaction.
const NON_RESOURCE_SCOPES: &[&str] = &[
    "openid",
    "fhirUser",
    "profile",
    "launch",
    "launch/patient",
    "launch/encounter",
    "offline_access",
    "online_access",
];

impl Scope {
    /// Parses one scope token.
    pub fn parse(text: &str) -> Result<Scope, ScopeError> {
        let fail = |reason| Err(ScopeError::new(text, reason));
        // RFC 6749 section 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
        if text.is_empty()
            || !text
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
        {
            return fail("contains a character that is not allowed in a scope");
        }
        if NON_RESOURCE_SCOPES.contains(&text) {
            return Ok(Scope {
                text: text.to_owned(),
                resource: None,
            });
        }
        let Some((context, rest)) = text.split_once('/') else {
            return fail(
                "is neither a resource scope (context/Type.permissions) nor a known SMART scope",
            );
        };
        let context = match context {
            "patient" => Context::Patient,
            "user" => Context::User,
            "system" => Context::System,
            _ => return fail("has an unknown context (expected patient/, user/ or system/)"),
        };
        let (body, restriction) = match rest.split_once('?') {
            Some((body, query)) => (body, Some(query)),
            None => (rest, None),
        };
        let Some((resource_type, permissions)) = body.split_once('.') else {
            return fail(
                "has no permissions (expected .read, .write, .* or v2 letters such as .rs)",
            );
        };
        let resource_type = if resource_type == "*" {
            None
        } else if is_resource_type_name(resource_type) {
            Some(resource_type.to_owned())
        } else {
            return fail("has a resource type that is neither * nor a FHIR resource type name");
        };
        let (permissions, form) = match permissions {
            "read" => (Permissions::V1_READ, Form::V1),
            "write" => (Permissions::V1_WRITE, Form::V1),
            "*" => (Permissions::ALL, Form::V1),
            letters => match Permissions::from_letters(letters) {
                Some(p) => (p, Form::V2),
                None => {
                    return fail(
                        "has permissions that are neither read, write or * (v1) nor the letters c r u d s in that \
                         order, each at most once (v2)",
                    )
                }
            },
        };
        if let Some(query) = restriction {
            if form == Form::V1 {
                return fail(
                    "has a ?restriction, which only v2 permissions (such as .rs) may carry",
                );
            }
            let well_formed = !query.is_empty()
                && query.split('&').all(|pair| {
                    pair.split_once('=')
                        .is_some_and(|(name, _)| !name.is_empty())
                });
            if !well_formed {
                return fail("has a restriction that is not of the form name=value(&name=value)*");
            }
        }
        Ok(Scope {
            text: text.to_owned(),
            resource: Some(ResourceScope {
                context,
                resource_type,
                permissions,
                restriction: restriction.map(str::to_owned),
                form,
            }),
        })
    }

    /// The scope exactly as it was written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The meaning of a resource scope; `None` for `openid`, `launch` and the other non-resource scopes.
    pub fn resource(&self) -> Option<&ResourceScope> {
        self.resource.as_ref()
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// FHIR resource type names are ASCII letters and digits starting with a capital. Whether the name is a real
/// type is for the caller, which knows the FHIR tables.
fn is_resource_type_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase()) && chars.all(|c| c.is_ascii_alphanumeric())
}

/// What a scope set allows for one interaction on one resource type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access<'a> {
    Denied,
    /// An unrestricted scope allows it.
    Full,
    /// Only restricted scopes allow it: the caller must keep just the resources that match at least one of these
    /// search query strings, or refuse.
    Restricted(Vec<&'a str>),
}

/// The scopes of a client registration, a token request or a token, without duplicates, in the order written.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ScopeSet {
    scopes: Vec<Scope>,
}

impl ScopeSet {
    /// Parses a space-separated scope string (as in OAuth's `scope` parameter), reporting every malformed scope.
    pub fn parse(s: &str) -> Result<ScopeSet, ScopeErrors> {
        let mut scopes: Vec<Scope> = Vec::new();
        let mut errors = Vec::new();
        for token in s.split(' ').filter(|t| !t.is_empty()) {
            match Scope::parse(token) {
                Ok(scope) if !scopes.iter().any(|s| s.text == scope.text) => scopes.push(scope),
                Ok(_) => {}
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(ScopeSet { scopes })
        } else {
            Err(ScopeErrors(errors))
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.scopes.iter()
    }

    pub fn len(&self) -> usize {
        self.scopes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty()
    }

    /// What the scopes allow for `interaction` on `resource_type` in `context`.
    pub fn access(
        &self,
        context: Context,
        resource_type: &str,
        interaction: Interaction,
    ) -> Access<'_> {
        let needed = interaction.needs();
        let mut restrictions = Vec::new();
        for scope in self.scopes.iter().filter_map(Scope::resource) {
            if !scope.applies_to(context, resource_type) || !scope.permissions.contains(needed) {
                continue;
            }
            match &scope.restriction {
                None => return Access::Full,
                Some(query) => restrictions.push(query.as_str()),
            }
        }
        if restrictions.is_empty() {
            Access::Denied
        } else {
            Access::Restricted(restrictions)
        }
    }

    /// Whether an unrestricted scope allows the interaction. A grant that only restricted scopes give counts as
    /// no grant here; use [`ScopeSet::access`] to apply restrictions.
    pub fn permits(&self, context: Context, resource_type: &str, interaction: Interaction) -> bool {
        self.access(context, resource_type, interaction) == Access::Full
    }

    /// Whether the registered scopes (`self`) together cover `requested`: a non-resource scope must be registered
    /// as it is; a resource scope's permissions must be in the union of the registered scopes of its context and
    /// type (or `*`) that are unrestricted or carry the very same restriction.
    fn covers(&self, requested: &Scope) -> bool {
        let Some(want) = &requested.resource else {
            return self.scopes.iter().any(|s| s.text == requested.text);
        };
        let mut have = Permissions::NONE;
        for scope in self.scopes.iter().filter_map(Scope::resource) {
            let type_covered =
                scope.resource_type.is_none() || scope.resource_type == want.resource_type;
            let restriction_covered =
                scope.restriction.is_none() || scope.restriction == want.restriction;
            if scope.context == want.context && type_covered && restriction_covered {
                have = have.union(scope.permissions);
            }
        }
        have.contains(want.permissions)
    }
}

impl fmt::Display for ScopeSet {
    /// The scopes space-separated, as a token response's `scope` shows them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, scope) in self.scopes.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(&scope.text)?;
        }
        Ok(())
    }
}

/// Grants the scopes a client asked for at the token endpoint (its `scope` parameter) against the scopes
/// registered for it. Every requested scope must be covered by the registration, otherwise the whole request
/// fails with `invalid_scope` (asking for more than was registered is refused, not quietly narrowed, so a client
/// learns of its misconfiguration). The granted set is the requested one; its [`Display`](fmt::Display) is the
/// `scope` of the token response.
pub fn grant(requested: &str, registered: &ScopeSet) -> Result<ScopeSet, GrantError> {
    let requested = ScopeSet::parse(requested).map_err(GrantError::Malformed)?;
    if requested.is_empty() {
        return Err(GrantError::Empty);
    }
    let not_registered: Vec<String> = requested
        .iter()
        .filter(|s| !registered.covers(s))
        .map(|s| shorten(&s.text))
        .collect();
    if not_registered.is_empty() {
        Ok(requested)
    } else {
        Err(GrantError::NotRegistered(not_registered))
    }
}

/// Why a token request's scopes cannot be granted. Every variant is an OAuth `invalid_scope` error; the messages
/// are fit for its `error_description`.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum GrantError {
    #[error("no scope was requested")]
    Empty,
    #[error("{0}")]
    Malformed(ScopeErrors),
    #[error("scopes not registered for this client: {}", .0.join(" "))]
    NotRegistered(Vec<String>),
}

impl GrantError {
    /// The OAuth 2 error code for the token response.
    pub fn oauth_error(&self) -> &'static str {
        "invalid_scope"
    }
}

/// One malformed scope and why.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("scope {scope} {reason}")]
pub struct ScopeError {
    /// The scope as written, shortened if it was long.
    pub scope: String,
    pub reason: &'static str,
}

impl ScopeError {
    fn new(scope: &str, reason: &'static str) -> ScopeError {
        ScopeError {
            scope: shorten(scope),
            reason,
        }
    }
}

/// Every malformed scope of a scope string.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct ScopeErrors(pub Vec<ScopeError>);

/// Scopes are echoed in error descriptions; a long one is cut (on a character boundary) and its characters outside
/// what an OAuth error_description allows are replaced, so the message stays short and valid.
fn shorten(s: &str) -> String {
    const MAX: usize = 80;
    let mut out: String = s
        .chars()
        .take(MAX)
        .map(|c| {
            if c == '"' || c == '\\' || !(' '..='~').contains(&c) {
                '?'
            } else {
                c
            }
        })
        .collect();
    if s.chars().count() > MAX {
        out.push_str("...");
    }
    out
}
