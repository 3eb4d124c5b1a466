//! The PostgreSQL engine (in progress).

#[derive(Clone, Debug)]
pub struct Postgres {}
