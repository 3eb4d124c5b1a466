//! The pure core of who may call the exchange and how they prove it: SMART scopes, SMART Backend Services client
//! assertions, the exchange's access tokens, purpose of use, portal passwords (argon2id) and TOTP.
//!
//! No I/O: the clock is always a parameter (`now`, seconds since the Unix epoch), keys and secrets come from the
//! caller, and what must be remembered between requests (an assertion's `jti` until it expires, the last TOTP step
//! used, a password hash to replace) is returned for the caller to store. The one exception is randomness:
//! [`password::hash`] and [`totp::TotpSecret::generate`] ask the operating system for salt and secret bytes, and
//! each has a variant that takes them from the caller instead.
//!
//! The HTTP adapter maps errors to OAuth answers: [`scope::GrantError`] is `invalid_scope`,
//! [`assertion::AssertionError`] is `invalid_client`, [`purpose::PurposeError`] is `invalid_request`, and a
//! [`token::TokenError`] at the FHIR API is a 401 with `invalid_token`. Their messages are written to be shown
//! to the client as they are.
//!
//! The token endpoint and the FHIR API, in outline:
//!
//! ```
//! use auth::{assertion, grant, AccessToken, Context, Interaction, PurposeOfUse, ScopeSet, TokenKey};
//!
//! let now = 1_800_000_000;
//! let key = TokenKey::new(&[0x42; 32])?; // in production: a secret from configuration
//! // Token endpoint: find the client by assertion::unverified_issuer, check the assertion with
//! // assertion::verify against its JWKS, record the jti until it expires, then:
//! let registered = ScopeSet::parse("system/Patient.rs system/Observation.rs")?;
//! let granted = grant("system/Patient.rs", &registered)?;
//! let purpose = PurposeOfUse::from_parameter(Some("TREAT"))?;
//! let token = AccessToken::new("tok-1".into(), "client-1".into(), "org-7".into(), granted, purpose, now, 300);
//! let bearer = token.encode(&key);
//! let response = token.response(&bearer, now); // the JSON body of the token response
//! assert_eq!(response["scope"], "system/Patient.rs");
//!
//! // FHIR API: the bearer token of each request.
//! let seen = AccessToken::decode(&bearer, &key, now + 10)?;
//! assert!(seen.scopes.permits(Context::System, "Patient", Interaction::Search));
//! assert!(!seen.scopes.permits(Context::System, "Observation", Interaction::Read));
//! # let _ = assertion::CLIENT_ASSERTION_TYPE;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod assertion;
pub mod jwks;
pub mod password;
pub mod purpose;
pub mod scope;
pub mod token;
pub mod totp;

pub use assertion::{AssertionError, Expected, VerifiedAssertion};
pub use jwks::{Algorithm, Jwks, JwksError};
pub use purpose::PurposeOfUse;
pub use scope::{grant, Access, Context, GrantError, Interaction, Permissions, ScopeSet};
pub use token::{AccessToken, TokenError, TokenKey};
pub use totp::{TotpError, TotpSecret};
