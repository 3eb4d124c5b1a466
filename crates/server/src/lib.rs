//! The `nutmeg` program as a library, so that tests can run the HTTP application in-process:
//! configuration ([`config`]), the HTTP adapter ([`http`]), metrics ([`metrics`]), logging
//! ([`telemetry`]), HTTPS ([`tls`]), Direct secure messaging over SMTP ([`smtp`]) and the commands
//! ([`serve`], [`demo`], [`import`], [`admin`] (with [`connect_admin`]: applications and agreements, and [`compliance`]: the catalog, roster and compliance report commands), [`client`], [`mpi`], and the consent [`purge`]) that [`cli`] dispatches to.

pub mod admin;
pub mod cli;
pub mod client;
pub mod compliance;
pub mod config;
pub mod connect_admin;
pub mod demo;
pub mod http;
pub mod import;
pub mod metrics;
pub mod mpi;
pub mod portal;
pub mod purge;
pub mod serve;
pub mod smtp;
pub mod telemetry;
pub mod tls;
