-- nutmeg store schema, version 12 (postgres): the Practitioner a portal account is. Released migrations
-- are never edited; add a new file instead. A clinician's account names the Practitioner resource
-- (in the provider directory) that the person is, so that a patient's consent naming that
-- practitioner reaches them; NULL for accounts that are no practitioner (staff, patients,
-- operators) or that the operator has not linked yet.
ALTER TABLE users ADD COLUMN practitioner_id TEXT;
