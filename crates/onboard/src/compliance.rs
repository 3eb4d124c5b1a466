//! The compliance report: every active licensee of the roster with their status on a day
//! (compliant, not yet compliant and what is missing, exempt and why, with the dates that decided
//! it), counts by licence type and by county, the CSV for the licensing board, and the statuses over
//! time as a server-rendered SVG chart. The statuses themselves are [`Mandate::evaluate`]'s.

use std::collections::BTreeMap;

use crate::mandate::{Facts, Kind, Mandate, Must, Status};
use crate::roster::{Licensee, Matched};
use crate::{csv, format_date, Date};

/// Licensees per status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub compliant: usize,
    /// Not yet compliant, deadline not passed.
    pub pending: usize,
    /// Not yet compliant, deadline passed.
    pub overdue: usize,
    pub exempt: usize,
    pub not_required: usize,
}

impl Counts {
    pub fn add(&mut self, kind: Kind) {
        match kind {
            Kind::Compliant => self.compliant += 1,
            Kind::Pending => self.pending += 1,
            Kind::Overdue => self.overdue += 1,
            Kind::Exempt => self.exempt += 1,
            Kind::NotRequired => self.not_required += 1,
        }
    }

    pub fn total(&self) -> usize {
        self.compliant + self.pending + self.overdue + self.exempt + self.not_required
    }
}

/// One licensee's line of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line<'a> {
    pub licensee: &'a Licensee,
    pub matched: &'a Matched,
    pub status: Status,
}

/// The report on one day.
#[derive(Clone, Debug)]
pub struct Report<'a> {
    pub as_of: Date,
    pub lines: Vec<Line<'a>>,
    pub totals: Counts,
    pub by_type: BTreeMap<String, Counts>,
    pub by_county: BTreeMap<String, Counts>,
    /// Licensees left out because the board does not list their licence as active.
    pub inactive: usize,
}

/// The report on `as_of` for the roster's active licensees: `matched[i]` is licensee `i`'s match
/// and `facts[i]` what is known about them.
pub fn report<'a>(
    mandate: &Mandate,
    licensees: &'a [Licensee],
    matched: &'a [Matched],
    facts: &[Facts],
    as_of: Date,
) -> Report<'a> {
    assert!(licensees.len() == matched.len() && licensees.len() == facts.len());
    let mut out = Report {
        as_of,
        lines: Vec::with_capacity(licensees.len()),
        totals: Counts::default(),
        by_type: BTreeMap::new(),
        by_county: BTreeMap::new(),
        inactive: 0,
    };
    for ((licensee, matched), facts) in licensees.iter().zip(matched).zip(facts) {
        if !licensee.active() {
            out.inactive += 1;
            continue;
        }
        let status = mandate.evaluate(facts, as_of);
        let kind = status.kind();
        out.totals.add(kind);
        count(&mut out.by_type, &licensee.licence.kind, kind);
        let county = if licensee.county.is_empty() {
            "(unknown)"
        } else {
            licensee.county.as_str()
        };
        count(&mut out.by_county, county, kind);
        out.lines.push(Line {
            licensee,
            matched,
            status,
        });
    }
    out
}

fn count(map: &mut BTreeMap<String, Counts>, key: &str, kind: Kind) {
    match map.get_mut(key) {
        Some(counts) => counts.add(kind),
        None => map.entry(key.to_string()).or_default().add(kind),
    }
}

/// The CSV header of [`to_csv`].
pub const CSV_HEADER: [&str; 14] = [
    "licence_type",
    "licence_number",
    "licence_state",
    "name",
    "npi",
    "county",
    "status",
    "overdue",
    "requirement_or_exemption",
    "deadline",
    "decided_on",
    "participant",
    "matched_by",
    "what_is_missing",
];

/// The report as CSV for the licensing board, one line per active licensee in roster order.
pub fn to_csv(report: &Report<'_>) -> String {
    let mut out = String::with_capacity(report.lines.len() * 160);
    csv::write_record(&mut out, &CSV_HEADER);
    for line in &report.lines {
        let l = line.licensee;
        let (which, deadline, decided, overdue, missing) = match &line.status {
            Status::Compliant {
                requirement,
                done_on,
                deadline,
                ..
            } => (
                requirement.as_str(),
                format_date(*deadline),
                format_date(*done_on),
                "",
                "",
            ),
            Status::NotYetCompliant {
                requirement,
                must,
                deadline,
                overdue,
            } => (
                requirement.as_str(),
                format_date(*deadline),
                String::new(),
                if *overdue { "yes" } else { "no" },
                missing_code(*must),
            ),
            Status::Exempt { exemption, since } => (
                exemption.as_str(),
                String::new(),
                format_date(*since),
                "",
                "",
            ),
            Status::NotRequired => ("", String::new(), String::new(), "", ""),
        };
        let (participant, by) = match line.matched {
            Matched::One { participant, by } => (participant.as_str(), by.code()),
            Matched::Ambiguous { by, .. } => ("(ambiguous)", by.code()),
            Matched::None => ("", ""),
        };
        csv::write_record(
            &mut out,
            &[
                l.licence.kind.as_str(),
                l.licence.number.as_str(),
                l.licence.state.as_str(),
                l.name.as_str(),
                l.npi.as_deref().unwrap_or(""),
                l.county.as_str(),
                line.status.code(),
                overdue,
                which,
                deadline.as_str(),
                decided.as_str(),
                participant,
                by,
                missing,
            ],
        );
    }
    out
}

fn missing_code(must: Must) -> &'static str {
    match must {
        Must::Apply => "application",
        Must::SecureMessaging => "secure-messaging",
        Must::ApplyOrSecureMessaging => "application-or-secure-messaging",
    }
}

/// The first day of each month from `from`'s month to `to`'s, inclusive.
pub fn months(from: Date, to: Date) -> Vec<Date> {
    let mut out = Vec::new();
    let Ok(mut d) = Date::from_calendar_date(from.year(), from.month(), 1) else {
        return out;
    };
    while d <= to {
        out.push(d);
        let (y, m) = if d.month() == time::Month::December {
            (d.year() + 1, time::Month::January)
        } else {
            (d.year(), d.month().next())
        };
        match Date::from_calendar_date(y, m, 1) {
            Ok(next) => d = next,
            Err(_) => break,
        }
    }
    out
}

/// The counts of active licensees on each of `days`.
pub fn over_time(
    mandate: &Mandate,
    licensees: &[Licensee],
    facts: &[Facts],
    days: &[Date],
) -> Vec<(Date, Counts)> {
    let timelines: Vec<_> = licensees
        .iter()
        .zip(facts)
        .filter(|(l, _)| l.active())
        .map(|(_, f)| mandate.timeline(f))
        .collect();
    days.iter()
        .map(|day| {
            let mut counts = Counts::default();
            for t in &timelines {
                counts.add(t.at(*day));
            }
            (*day, counts)
        })
        .collect()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The share of licensees held to the mandate (all but not-required) who are compliant, exempt,
/// and not yet compliant, month by month, as an SVG line chart with its own title, axis labels,
/// legend and a text alternative.
pub fn svg_chart(series: &[(Date, Counts)], title: &str) -> String {
    const W: f64 = 720.0;
    const H: f64 = 320.0;
    const LEFT: f64 = 48.0;
    const RIGHT: f64 = 16.0;
    const TOP: f64 = 40.0;
    const BOTTOM: f64 = 56.0;
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let share = |n: usize, c: &Counts| {
        let held = c.total() - c.not_required;
        if held == 0 {
            0.0
        } else {
            n as f64 / held as f64
        }
    };
    let x = |i: usize| {
        if series.len() <= 1 {
            LEFT + plot_w / 2.0
        } else {
            LEFT + plot_w * i as f64 / (series.len() - 1) as f64
        }
    };
    let y = |v: f64| TOP + plot_h * (1.0 - v);
    let mut svg = String::new();
    let last = series.last();
    let summary = match last {
        Some((day, c)) => format!(
            "On {}: {:.0}% compliant, {:.0}% exempt, {:.0}% not yet compliant.",
            format_date(*day),
            100.0 * share(c.compliant, c),
            100.0 * share(c.exempt, c),
            100.0 * share(c.pending + c.overdue, c)
        ),
        None => "No data.".to_string(),
    };
    svg.push_str(&format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" aria-labelledby=\"chart-title chart-desc\">\n\
         <title id=\"chart-title\">{}</title>\n<desc id=\"chart-desc\">{}</desc>\n\
         <text x=\"{LEFT}\" y=\"22\" font-family=\"sans-serif\" font-size=\"15\">{}</text>\n",
        escape(title),
        escape(&summary),
        escape(title)
    ));
    for pct in [0, 25, 50, 75, 100] {
        let yy = y(pct as f64 / 100.0);
        svg.push_str(&format!(
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{}\" y=\"{:.1}\" font-family=\"sans-serif\" font-size=\"11\" text-anchor=\"end\">{pct}%</text>\n",
            W - RIGHT,
            LEFT - 6.0,
            yy + 4.0
        ));
    }
    let step = series.len().div_ceil(12).max(1);
    for (i, (day, _)) in series.iter().enumerate() {
        if i % step == 0 || i + 1 == series.len() {
            svg.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" font-family=\"sans-serif\" font-size=\"11\" text-anchor=\"middle\">{}</text>\n",
                x(i),
                H - BOTTOM + 16.0,
                &format_date(*day)[..7]
            ));
        }
    }
    type Line = (&'static str, &'static str, fn(&Counts) -> usize);
    let lines: [Line; 3] = [
        ("Compliant", "#1b7837", |c| c.compliant),
        ("Exempt", "#5e5e5e", |c| c.exempt),
        ("Not yet compliant", "#b2182b", |c| c.pending + c.overdue),
    ];
    for (n, (label, colour, value)) in lines.iter().enumerate() {
        let points: Vec<String> = series
            .iter()
            .enumerate()
            .map(|(i, (_, c))| format!("{:.1},{:.1}", x(i), y(share(value(c), c))))
            .collect();
        svg.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"><title>{label}</title></polyline>\n",
            points.join(" ")
        ));
        let lx = LEFT + 180.0 * n as f64;
        svg.push_str(&format!(
            "<rect x=\"{lx}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{colour}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-family=\"sans-serif\" font-size=\"12\">{label}</text>\n",
            H - 22.0,
            lx + 18.0,
            H - 12.0
        ));
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::application::Licence;
    use time::macros::date;

    fn licensee(kind: &str, county: &str, status: &str) -> Licensee {
        Licensee {
            line: 2,
            name: "A, B".into(),
            licence: Licence {
                kind: kind.into(),
                number: "1".into(),
                state: "CT".into(),
            },
            npi: None,
            status: status.into(),
            address_line: String::new(),
            city: String::new(),
            postcode: String::new(),
            county: county.into(),
        }
    }

    #[test]
    fn the_report_counts_and_its_csv_reads_back() {
        let m = Mandate::connecticut();
        let ls = vec![
            licensee("lmft", "Hartford", "active"),
            licensee("lmft", "Hartford", "active"),
            licensee("hospital", "New Haven", "active"),
            licensee("lcsw", "", "expired"),
        ];
        let matched = vec![
            Matched::One {
                participant: "p1".into(),
                by: crate::roster::MatchedBy::Licence,
            },
            Matched::None,
            Matched::None,
            Matched::None,
        ];
        let facts = vec![
            Facts {
                licence_type: "lmft".into(),
                ehr_capable: Some(false),
                applied: Some(date!(2023 - 01 - 01)),
                secure_messaging: Some(date!(2023 - 02 - 01)),
                exemptions: vec![],
            },
            Facts {
                licence_type: "lmft".into(),
                ..Facts::default()
            },
            Facts {
                licence_type: "hospital".into(),
                ..Facts::default()
            },
            Facts::default(),
        ];
        let r = report(&m, &ls, &matched, &facts, date!(2023 - 03 - 01));
        assert_eq!(r.inactive, 1);
        assert_eq!(r.totals.compliant, 1);
        assert_eq!(r.totals.pending, 1);
        assert_eq!(r.totals.overdue, 1); // the hospital's deadline was 2022-05-03
        assert_eq!(r.by_type["lmft"].total(), 2);
        assert_eq!(r.by_county["New Haven"].overdue, 1);
        let text = to_csv(&r);
        let rows = csv::read(&text).unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].cells, CSV_HEADER);
        assert_eq!(rows[1].cells[6], "compliant");
        assert_eq!(rows[1].cells[10], "2023-02-01");
        assert_eq!(rows[1].cells[11], "p1");
        assert_eq!(rows[2].cells[13], "application-or-secure-messaging");
        assert_eq!(rows[3].cells[7], "yes");
    }

    #[test]
    fn the_chart_is_escaped_and_describes_itself() {
        let m = Mandate::connecticut();
        let ls = vec![licensee("lmft", "Hartford", "active")];
        let facts = vec![Facts {
            licence_type: "lmft".into(),
            ehr_capable: Some(false),
            applied: None,
            secure_messaging: Some(date!(2023 - 03 - 15)),
            exemptions: vec![],
        }];
        let days = months(date!(2023 - 01 - 20), date!(2023 - 06 - 01));
        assert_eq!(days.first(), Some(&date!(2023 - 01 - 01)));
        assert_eq!(days.len(), 6);
        let series = over_time(&m, &ls, &facts, &days);
        assert_eq!(series[2].1.pending, 1);
        assert_eq!(series[3].1.compliant, 1);
        let svg = svg_chart(&series, "Compliance <Connecticut>");
        assert!(svg.contains("Compliance &lt;Connecticut&gt;"));
        assert!(svg.contains("On 2023-06-01: 100% compliant"));
        assert_eq!(svg.matches("<polyline").count(), 3);
    }
}
