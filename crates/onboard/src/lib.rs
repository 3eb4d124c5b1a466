//! The pure core of connecting providers to the exchange (no I/O; `now` and `today` are always
//! parameters): what the state's mandate asks of each licensee and whether they have done it.
//!
//! - [`npi`]: the National Provider Identifier's format and check digit.
//! - [`application`]: the connection application's fields, checked all at once, and duplicates
//!   (the same NPI or licence) found for the operator rather than merged.
//! - [`workflow`]: the two paths (an EHR interface, or secure messaging through a Direct address),
//!   each a checklist of steps taken in order with who did each and when, service levels and what
//!   is overdue.
//! - [`agreement`]: versioned agreement documents identified by the SHA-256 of their exact text,
//!   electronic signatures of one version, who must sign (again), and verification of what was
//!   signed against what is stored.
//! - [`catalog`]: the EHR compatibility catalog and its search.
//! - [`mandate`]: the law as data (TOML; Connecticut's shipped as the default): who must do what by
//!   when, and who is exempt.
//! - [`roster`]: the licensing board's CSV of licensees, read with every bad row named, and each
//!   licensee matched to a participant.
//! - [`compliance`]: each licensee's status on a day (compliant, not yet compliant and what is
//!   missing, exempt and why) with the dates that decided it, counts by licence type and county,
//!   the status over time as a server-rendered SVG chart, and the CSV for the licensing board.
//! - [`csv`]: RFC 4180 reading and writing for the roster and the report.

pub mod agreement;
pub mod application;
pub mod catalog;
pub mod compliance;
pub mod csv;
pub mod mandate;
pub mod npi;
pub mod roster;
pub mod workflow;

/// A calendar day (the mandate's deadlines and the roster's dates have no time of day).
pub type Date = time::Date;

/// Parses `YYYY-MM-DD`.
pub fn parse_date(text: &str) -> Option<Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(text.trim(), &format).ok()
}

/// `YYYY-MM-DD`.
pub fn format_date(date: Date) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    date.format(&format).unwrap_or_default()
}
