-- Treatment relationships: which participant (its Organization id) may see which patient's clinical
-- data for treatment, and why (it sent data about the patient, is on the patient's care team, or
-- attested a relationship). A row is kept from the first time the basis was recorded.
CREATE TABLE treatment_relationships (
    participant_id TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    basis TEXT NOT NULL,
    recorded INTEGER NOT NULL,
    PRIMARY KEY (participant_id, patient_id, basis)
) WITHOUT ROWID;
