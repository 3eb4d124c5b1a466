-- nutmeg store schema, version 15 (postgres): the operator's decision about an application that has no
-- participant (it looked like one on file, or the registry refused it). Released migrations are
-- never edited; add a new file instead. `decision` is `distinct` (another applicant: a participant
-- of its own was registered), `existing` (an applicant already in the registry: the application
-- joined `participant_id`) or `duplicate` (the same applicant as `duplicate_of`: the application is
-- closed). One decision per application, never replaced; who, when (milliseconds since the Unix
-- epoch) and why are kept.
CREATE TABLE onboarding_decisions (
    application_id TEXT PRIMARY KEY REFERENCES onboarding_applications (application_id),
    decision TEXT NOT NULL CHECK (decision IN ('distinct', 'existing', 'duplicate')),
    duplicate_of TEXT REFERENCES onboarding_applications (application_id),
    participant_id TEXT,
    decided_by TEXT NOT NULL,
    decided_at BIGINT NOT NULL,
    reason TEXT NOT NULL
);
