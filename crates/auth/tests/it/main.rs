//! The `auth` crate's tests, in one binary: each module is one area, with a small `check` helper and a table.

mod assertion;
mod password;
mod purpose;
mod scope;
mod token;
mod totp;
