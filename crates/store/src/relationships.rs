//! Treatment relationships between participants and patients, which the access decision point
//! asks about before it discloses clinical data for treatment. The store keeps what it is told;
//! what counts as a relationship is the exchange's.

use crate::exec::{Exec, Val};
use crate::Result;

/// Why a participant is related to a patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelationshipBasis {
    /// The participant sent data about the patient.
    SentData,
    /// The participant is on the patient's care team (a CareTeam names it).
    CareTeam,
    /// The participant attested a treatment relationship (recorded and audited).
    Attested,
}

impl RelationshipBasis {
    pub fn as_str(self) -> &'static str {
        match self {
            RelationshipBasis::SentData => "sent-data",
            RelationshipBasis::CareTeam => "care-team",
            RelationshipBasis::Attested => "attested",
        }
    }
}

/// At most this many patients are asked about in one statement.
const CHUNK: usize = 500;

/// Records that `participant_id` is related to each of `patients` on `basis` (at `recorded`,
/// milliseconds since the epoch); a relationship already recorded on that basis keeps its time.
pub(crate) async fn record(
    e: &mut impl Exec,
    participant_id: &str,
    basis: RelationshipBasis,
    patients: &[String],
    recorded: i64,
) -> Result<()> {
    let d = e.dialect();
    for chunk in patients.chunks(CHUNK) {
        let mut sql = String::from(
            "INSERT INTO treatment_relationships (participant_id, patient_id, basis, recorded) VALUES ",
        );
        let mut args = vec![
            Val::Text(participant_id.to_string()),
            Val::Text(basis.as_str().to_string()),
            Val::Int(recorded),
        ];
        for (i, patient) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            args.push(Val::Text(patient.clone()));
            sql.push_str(&format!(
                "({}, {}, {}, {})",
                d.placeholder(1),
                d.placeholder(args.len()),
                d.placeholder(2),
                d.placeholder(3)
            ));
        }
        sql.push_str(" ON CONFLICT (participant_id, patient_id, basis) DO NOTHING");
        e.rows(&sql, &args).await?;
    }
    Ok(())
}

/// Those of `patients` that `participant_id` is related to on any basis.
pub(crate) async fn related(
    e: &mut impl Exec,
    participant_id: &str,
    patients: &[String],
) -> Result<Vec<String>> {
    let d = e.dialect();
    let mut out = Vec::new();
    for chunk in patients.chunks(CHUNK) {
        let mut args = vec![Val::Text(participant_id.to_string())];
        let list: Vec<String> = chunk
            .iter()
            .map(|p| {
                args.push(Val::Text(p.clone()));
                d.placeholder(args.len())
            })
            .collect();
        let sql = format!(
            "SELECT DISTINCT patient_id FROM treatment_relationships \
             WHERE participant_id = {} AND patient_id IN ({})",
            d.placeholder(1),
            list.join(", ")
        );
        for row in e.rows(&sql, &args).await? {
            if let Some(v) = row.into_iter().next() {
                out.push(v.text()?);
            }
        }
    }
    Ok(out)
}
