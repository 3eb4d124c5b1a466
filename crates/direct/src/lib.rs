//! Direct secure messaging: what nutmeg needs to be a HISP, without I/O.
//!
//! - [`ca`]: the exchange's certificate authority for its Direct domain (root, address-bound and
//!   domain-bound certificates, CRLs); [`keys`]: private keys sealed under a key-encryption key;
//! - [`trust`]: trust anchors and bundles, path validation with Direct's policy, address binding;
//! - [`mime`]: the small MIME parser and builder S/MIME needs;
//! - [`smime`]: sign then encrypt outbound messages, decrypt and verify inbound ones;
//! - [`mdn`]: the delivery notifications Direct sends and reads (processed, dispatched, failed);
//! - [`xdm`]: IHE XDM packages (the zips documents travel in) unpacked and packed.
//!
//! Cryptography is OpenSSL's, through the `openssl` crate; the few CMS calls it lacks are in one
//! FFI module (`ffi`), the only place `unsafe` is allowed. Nothing here does network, file or
//! database I/O: fetching CRLs, SMTP and storage live in `store` and `server`.

pub mod ca;
mod der;
mod ffi;
pub mod keys;
pub mod mdn;
pub mod mime;
pub mod smime;
pub mod trust;
pub mod xdm;
