//! Connecting to the exchange (issue 7, sections 1-3) as use cases over `onboard` (the pure rules)
//! and the store: an application received (checked, duplicates found, stored, a participant
//! registered in status `applied`, the applicant's account made), the two-path checklist (steps
//! taken in order with who and when, changes of path with a reason, service levels and what is
//! overdue, the participant's registry status moved along as the workflow reaches onboarding and
//! live), and agreements (versions published, signed by the application's authorized signer,
//! who must sign again, and verification of every signature against the stored text).
//!
//! Every adapter (the portal's pages, the JSON API, `nutmeg admin application` and `agreement`)
//! goes through [`Onboarding`], so the same checks hold everywhere. Times are parameters.

use std::collections::HashMap;

use onboard::agreement::{self, Document, SignForm, Signature, Unsigned};
use onboard::application::{self, Duplicate, Ehr, FieldError, Form, OnFile};
use onboard::catalog::Product;
use onboard::workflow::{self, Checklist, Done, Overdue, Path, PathChange, ServiceLevels, Step};
use store::{
    AgreementDocument, AgreementSignature, ApplicationData, ApplicationRecord, LicenceRecord,
    NewUser, StepRecord, StoreError,
};
use time::OffsetDateTime;

use crate::access::Requester;
use crate::participants::{Kind, Licence, LicenceType, NewParticipant, NewPractitioner, Status};
use crate::repository::{Error, Repository};

/// Why an onboarding request was refused, or failed.
#[derive(Debug, thiserror::Error)]
pub enum OnboardingError {
    /// Input with problems, each named by the field it belongs beside (a form's field, or a
    /// command's flag without its dashes).
    #[error("{}", describe(.0))]
    Invalid(Vec<FieldError>),
    /// No such application (or agreement version).
    #[error("{0}")]
    NotFound(String),
    /// The workflow does not allow it (a step out of order, the same path, a version not newer).
    #[error("{0}")]
    Refused(String),
    /// Someone else changed the application meanwhile; reload and try again.
    #[error("{0}")]
    Conflict(String),
    /// The participant registry failed.
    #[error("the participant registry failed: {0}")]
    Registry(Error),
    /// The store failed (details for the log only).
    #[error("storage failure: {0}")]
    Store(#[from] StoreError),
}

fn describe(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

fn field(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_string(),
        message: message.into(),
    }
}

impl OnboardingError {
    /// Whether the failure is ours (a 5xx), not the caller's.
    pub fn is_internal(&self) -> bool {
        match self {
            OnboardingError::Store(_) => true,
            OnboardingError::Registry(e) => e.status() >= 500,
            _ => false,
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn millis(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The instant `ms` milliseconds after the Unix epoch (the epoch itself if out of range).
pub fn instant(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The portal account an applicant gets with their application; the login is the contact's
/// email. On the public form the applicant chose a password (the adapter checked it against the
/// portal's policy and hashed it, argon2id); an application an operator entered (CLI, API) makes
/// the account without one, with an invitation the operator sends the applicant to set it.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub user_id: String,
    pub login: String,
    pub display_name: String,
    pub credential: Credential,
}

/// How an applicant's account gets its password.
#[derive(Debug, Clone)]
pub enum Credential {
    /// The argon2id hash of the password the applicant chose.
    Password(String),
    /// An invitation (the hash of the link's secret); the account has no password until it is
    /// taken.
    Invitation(store::NewInvitation),
}

/// An application as submitted.
#[derive(Debug, Clone)]
pub struct Submission {
    pub form: Form,
    pub account: Option<NewAccount>,
    /// Who the `application-received` step is recorded as done by: `applicant` for the public
    /// form, an operator's name at the CLI, a client id through the API.
    pub received_by: String,
}

/// What an accepted submission made.
#[derive(Debug, Clone)]
pub struct Applied {
    pub record: ApplicationRecord,
    /// Applications on file with the same NPI or licence (the operator decides; nothing merged).
    pub duplicates: Vec<Duplicate>,
    /// Why no participant was registered, when none was (a duplicate, or the registry's refusal).
    pub no_participant: Option<String>,
    /// Why no portal account was made for an application an operator entered, when none was (its
    /// contact's email is already an account's login).
    pub no_account: Option<String>,
}

/// An application with everything the pages and commands show about it.
#[derive(Debug, Clone)]
pub struct View {
    pub record: ApplicationRecord,
    pub checklist: Checklist,
    /// The next step of its path (none: finished).
    pub next: Option<Step>,
    /// The next step, when it is past its service level.
    pub overdue: Option<Overdue>,
    pub duplicates: Vec<Duplicate>,
    /// The latest agreements its participant type must sign and has not (again).
    pub must_sign: Vec<Unsigned>,
    pub signatures: Vec<AgreementSignature>,
    /// The participant type code agreements are required for (`solo-practice`, `hospital`...).
    pub participant_type: &'static str,
}

impl View {
    pub fn id(&self) -> &str {
        &self.record.data.application_id
    }

    /// Whether the operator closed it as a duplicate (no step is left).
    pub fn closed(&self) -> bool {
        closed(&self.record)
    }
}

/// What the operator decides about an application that has no participant (it looked like one on
/// file, or the registry refused it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Another applicant: a participant of its own is registered.
    Distinct,
    /// An applicant already in the registry (registered by an operator, or through another
    /// application): the application, and the applicant's account, join that participant.
    Existing(String),
    /// The same applicant as that application on file: this one is closed.
    DuplicateOf(String),
}

impl Decision {
    /// A decision as forms, the API and the CLI give it: its code, and the participant
    /// (`existing`) or application (`duplicate`) it names; the problems named by field.
    pub fn from_parts(
        code: &str,
        participant: &str,
        duplicate_of: &str,
    ) -> Result<Decision, OnboardingError> {
        let (participant, duplicate_of) = (participant.trim(), duplicate_of.trim());
        match code.trim() {
            "distinct" => Ok(Decision::Distinct),
            "existing" if !participant.is_empty() => {
                Ok(Decision::Existing(participant.to_string()))
            }
            "existing" => Err(OnboardingError::Invalid(vec![field(
                "participant",
                "name the participant (its id) the application joins",
            )])),
            "duplicate" if !duplicate_of.is_empty() => {
                Ok(Decision::DuplicateOf(duplicate_of.to_string()))
            }
            "duplicate" => Err(OnboardingError::Invalid(vec![field(
                "duplicate_of",
                "name the application this one repeats",
            )])),
            other => Err(OnboardingError::Invalid(vec![field(
                "decision",
                format!("'{other}' is not a decision (distinct, existing or duplicate)"),
            )])),
        }
    }

    /// `distinct`, `existing` or `duplicate`, as stored.
    pub fn code(&self) -> &'static str {
        match self {
            Decision::Distinct => "distinct",
            Decision::Existing(_) => "existing",
            Decision::DuplicateOf(_) => "duplicate",
        }
    }
}

/// Why no step can be taken on the application yet, if none can: it has no participant and the
/// operator has not decided about it, or it was closed as a duplicate.
fn undecided(view: &View) -> Option<String> {
    let record = &view.record;
    if let Some(d) = &record.decision {
        return closed(record).then(|| {
            format!(
                "it was closed as a duplicate of {}",
                d.duplicate_of.as_deref().unwrap_or("another application")
            )
        });
    }
    if record.data.participant_id.is_some() {
        return None;
    }
    let why = if view.duplicates.is_empty() {
        "the participant registry refused it".to_string()
    } else {
        let others: Vec<&str> = view
            .duplicates
            .iter()
            .map(|d| d.application.as_str())
            .collect();
        format!("it looks like {}", others.join(", "))
    };
    Some(format!(
        "it has no participant ({why}): the operator decides first whether it is another \
         applicant, one already registered, or a duplicate"
    ))
}

/// An operator's reason (for a change of path or a decision) as the store keeps it: at most 1,000
/// characters, no control characters but line breaks.
fn check_reason(reason: &str) -> Result<(), OnboardingError> {
    if reason.chars().count() > 1000 || reason.chars().any(|c| c.is_control() && c != '\n') {
        return Err(OnboardingError::Invalid(vec![field(
            "reason",
            "at most 1,000 characters, no control characters",
        )]));
    }
    Ok(())
}

/// Whether the application was closed as a duplicate.
fn closed(record: &ApplicationRecord) -> bool {
    record
        .decision
        .as_ref()
        .is_some_and(|d| d.decision == "duplicate")
}

/// An agreement version to publish.
#[derive(Debug, Clone)]
pub struct NewDocument {
    pub kind: String,
    pub version: i64,
    pub title: String,
    pub text: String,
    pub required_for: Vec<String>,
    pub published_by: String,
}

/// What `verify` found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyFinding {
    pub signature_id: Option<String>,
    pub application_id: Option<String>,
    pub message: String,
}

impl std::fmt::Display for VerifyFinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(s) = &self.signature_id {
            write!(f, "signature {s}")?;
            if let Some(a) = &self.application_id {
                write!(f, " (application {a})")?;
            }
            write!(f, ": ")?;
        }
        f.write_str(&self.message)
    }
}

/// What `verify` checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub documents: usize,
    pub signatures: usize,
    pub findings: Vec<VerifyFinding>,
}

/// The use cases of connecting to the exchange.
#[derive(Clone)]
pub struct Onboarding {
    repo: Repository,
    levels: ServiceLevels,
}

/// The participant type an application's participant is (the registry's `Kind`).
pub fn participant_kind(data: &ApplicationData) -> Kind {
    kind_of(
        &data.kind,
        data.licences.first().map(|l| l.licence_type.as_str()),
    )
}

/// The registry's `Kind` of an applicant of this application kind whose first licence is of this
/// `onboard` type. A behavioral health facility is a psychiatric facility in Connecticut's sense
/// (52-146d: any hospital, clinic or other facility that serves, in whole or in part, the diagnosis
/// or treatment of a mental condition), so what it sends is labelled psychiatric.
fn kind_of(application_kind: &str, first_licence: Option<&str>) -> Kind {
    if application_kind == application::Kind::SoloPractitioner.code() {
        return Kind::SoloPractice;
    }
    match first_licence.and_then(application::licence_type) {
        Some(t) if t.code == "hospital" => Kind::Hospital,
        Some(t) if t.code == "laboratory" => Kind::Lab,
        Some(t) if t.code == "bh-facility" => Kind::PsychiatricFacility,
        Some(t) if t.facility => Kind::Clinic,
        _ => Kind::GroupPractice,
    }
}

/// The registry's licence type of a practitioner holding a licence of this `onboard` type.
fn practitioner_licence(code: &str) -> LicenceType {
    match code {
        "lmft" => LicenceType::Lmft,
        "lcsw" => LicenceType::Lcsw,
        "lpc" => LicenceType::Lpc,
        "lads" => LicenceType::Ladc,
        "psychologist" => LicenceType::Psychologist,
        "psychiatrist" => LicenceType::Psychiatrist,
        "physician" => LicenceType::Physician,
        "aprn" => LicenceType::NursePractitioner,
        "pa" => LicenceType::PhysicianAssistant,
        // Dentists, chiropractors, physical therapists...: the privacy rules have no licence of
        // their own for them (their sensitive records are labelled by their codes).
        _ => LicenceType::Other,
    }
}

/// A solo practitioner's given and family names from the legal name (`Jane Q. Doe, LMFT`): the
/// words before a comma, the last one the family name.
fn split_name(legal_name: &str) -> Option<(String, String)> {
    let name = legal_name.split(',').next().unwrap_or_default();
    let words: Vec<&str> = name.split_whitespace().collect();
    let (family, given) = words.split_last()?;
    if given.is_empty() {
        return None;
    }
    Some((given.join(" "), family.to_string()))
}

fn ehr_of(data: &ApplicationData) -> Ehr {
    match data.ehr_kind.as_str() {
        "catalog" => Ehr::Catalog(data.ehr_value.clone()),
        "other" => Ehr::Other(data.ehr_value.clone()),
        _ => Ehr::None,
    }
}

fn licence_of(l: &LicenceRecord) -> application::Licence {
    application::Licence {
        kind: l.licence_type.clone(),
        number: l.number.clone(),
        state: l.state.clone(),
    }
}

/// The checklist of a stored application (steps and paths the workflow does not know are left
/// out: they cannot be, as only the workflow's codes are stored).
pub fn checklist(record: &ApplicationRecord) -> Checklist {
    let path_of = |code: &str| Path::parse(code).unwrap_or(Path::SecureMessaging);
    Checklist {
        path: path_of(&record.data.path),
        done: record
            .steps
            .iter()
            .filter_map(|s| {
                Some(Done {
                    step: Step::parse(&s.step)?,
                    by: s.by.clone(),
                    at: instant(s.at),
                })
            })
            .collect(),
        changes: record
            .path_changes
            .iter()
            .map(|c| PathChange {
                from: path_of(&c.from),
                to: path_of(&c.to),
                by: c.by.clone(),
                at: instant(c.at),
                reason: c.reason.clone(),
            })
            .collect(),
    }
}

fn document_of(d: &AgreementDocument) -> Document {
    Document {
        kind: d.kind.clone(),
        version: u32::try_from(d.version).unwrap_or(0),
        title: d.title.clone(),
        text: d.text.clone(),
        required_for: d.required_for.clone(),
        published: instant(d.published),
    }
}

fn signature_of(s: &AgreementSignature) -> Signature {
    Signature {
        kind: s.kind.clone(),
        version: u32::try_from(s.version).unwrap_or(0),
        sha256: s.sha256.clone(),
        signer_name: s.signer_name.clone(),
        signer_title: s.signer_title.clone(),
        consented_electronically: s.consented_electronically,
        at: instant(s.signed_at),
        client_address: s.client_address.clone(),
    }
}

/// The duplicates of `record` among `others` (itself excluded).
fn duplicates_among(record: &ApplicationRecord, others: &[ApplicationRecord]) -> Vec<Duplicate> {
    let Some(first) = record.data.licences.first() else {
        return Vec::new();
    };
    let me = application::Application {
        kind: application::Kind::parse(&record.data.kind)
            .unwrap_or(application::Kind::Organization),
        legal_name: record.data.legal_name.clone(),
        npi: record.data.npi.clone(),
        licence: licence_of(first),
        address: application::Address {
            line: record.data.address_line.clone(),
            city: record.data.city.clone(),
            state: record.data.state.clone(),
            postcode: record.data.postcode.clone(),
        },
        ehr: ehr_of(&record.data),
        signer: application::Person {
            name: String::new(),
            title: String::new(),
            email: String::new(),
            phone: String::new(),
        },
        contact: application::Person {
            name: String::new(),
            title: String::new(),
            email: String::new(),
            phone: String::new(),
        },
    };
    let licences: Vec<Vec<application::Licence>> = others
        .iter()
        .map(|o| o.data.licences.iter().map(licence_of).collect())
        .collect();
    let mut found: Vec<Duplicate> = Vec::new();
    for (other, licences) in others.iter().zip(&licences) {
        if other.data.application_id == record.data.application_id {
            continue;
        }
        // Each licence of the other application is compared (an application may name several).
        let on_file: Vec<OnFile<'_>> = licences
            .iter()
            .map(|l| OnFile {
                id: &other.data.application_id,
                npi: &other.data.npi,
                licence: l,
            })
            .collect();
        let mut by: Vec<String> = Vec::new();
        for d in application::duplicates(&me, &on_file) {
            for b in d.by {
                if !by.contains(&b) {
                    by.push(b);
                }
            }
        }
        if !by.is_empty() {
            found.push(Duplicate {
                application: other.data.application_id.clone(),
                by,
            });
        }
    }
    found
}

impl Onboarding {
    pub fn new(repo: Repository, levels: ServiceLevels) -> Onboarding {
        Onboarding { repo, levels }
    }

    pub fn levels(&self) -> &ServiceLevels {
        &self.levels
    }

    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    fn system(&self) -> Requester {
        Requester::system("onboarding")
    }

    /// The EHR compatibility catalog the form offers and the default path is decided by
    /// (`crate::catalog::products`, what operators keep with `nutmeg admin catalog`): a product
    /// that can connect starts its applicant on the EHR path, anything else ("other", "none", a
    /// product not yet compatible) on the secure-messaging path; an operator may change it, with a
    /// reason.
    pub async fn catalog(&self) -> Result<Vec<Product>, OnboardingError> {
        Ok(crate::catalog::products(self.repo.store()).await?)
    }

    /// The form checked as `apply` checks it (every problem at once), without storing anything:
    /// `onboard`'s checks, and a solo practitioner's legal name must be a full name (the
    /// registry's Practitioner has given and family names).
    pub fn precheck(
        &self,
        form: &Form,
        catalog: &[Product],
    ) -> Result<application::Application, Vec<FieldError>> {
        let checked = form.check(catalog);
        let solo = form.kind.trim() == application::Kind::SoloPractitioner.code();
        let bad_name = solo && split_name(&form.legal_name).is_none();
        match checked {
            Ok(a) if !bad_name => Ok(a),
            Ok(_) => Err(vec![field(
                "legal_name",
                "a solo practitioner's legal name is their full name (given and family names)",
            )]),
            Err(mut errors) => {
                if bad_name && !errors.iter().any(|e| e.field == "legal_name") {
                    errors.push(field(
                        "legal_name",
                        "a solo practitioner's legal name is their full name (given and family \
                         names)",
                    ));
                }
                Err(errors)
            }
        }
    }

    /// Receives an application: the form checked (every problem at once), the account's login
    /// free, then the application stored (with its first step), a participant registered in
    /// status `applied` unless the application duplicates one on file (the operator decides
    /// then; nothing is merged) or the registry refuses it, and the applicant's account made
    /// (participant-admin of that participant).
    ///
    /// What is stored first is the application, so a failure after it leaves an application the
    /// operator sees (without a participant or an account), never a participant or an account
    /// without their application.
    pub async fn apply(
        &self,
        submission: Submission,
        now: OffsetDateTime,
    ) -> Result<Applied, OnboardingError> {
        let catalog = self.catalog().await?;
        let store = self.repo.store();
        let mut errors = match self.precheck(&submission.form, &catalog) {
            Ok(_) => Vec::new(),
            Err(errors) => errors,
        };
        // The applicant on the form gives another address; an operator's entry goes on without
        // an account (the operator is told) rather than failing a bulk import.
        let mut account = submission.account;
        let mut no_account = None;
        if let Some(a) = &account {
            if store.user_by_login(&a.login).await?.is_some() {
                match a.credential {
                    Credential::Password(_) => errors.push(field(
                        "contact_email",
                        "a portal account already uses this email address: sign in to follow \
                         your application, or give another address",
                    )),
                    Credential::Invitation(_) => {
                        no_account = Some(
                            "a portal account already uses the contact's email address, so no \
                             new one was made"
                                .to_string(),
                        );
                        account = None;
                    }
                }
            }
        }
        if !errors.is_empty() {
            return Err(OnboardingError::Invalid(errors));
        }
        let checked = self
            .precheck(&submission.form, &catalog)
            .map_err(OnboardingError::Invalid)?;
        let licences = vec![LicenceRecord {
            licence_type: checked.licence.kind.clone(),
            number: checked.licence.number.clone(),
            state: checked.licence.state.clone(),
        }];
        let like = store.applications_like(&checked.npi, &licences).await?;
        let path = workflow::default_path(&checked.ehr, &catalog);
        let (ehr_kind, ehr_value) = match &checked.ehr {
            Ehr::Catalog(id) => ("catalog", id.clone()),
            Ehr::Other(name) => ("other", name.clone()),
            Ehr::None => ("none", String::new()),
        };
        let id = format!("app-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let data = ApplicationData {
            application_id: id.clone(),
            received: millis(now),
            kind: checked.kind.code().to_string(),
            legal_name: checked.legal_name.clone(),
            npi: checked.npi.clone(),
            licences,
            address_line: checked.address.line.clone(),
            city: checked.address.city.clone(),
            state: checked.address.state.clone(),
            postcode: checked.address.postcode.clone(),
            ehr_kind: ehr_kind.to_string(),
            ehr_value,
            signer_name: checked.signer.name.clone(),
            signer_title: checked.signer.title.clone(),
            signer_email: checked.signer.email.clone(),
            contact_name: checked.contact.name.clone(),
            contact_email: checked.contact.email.clone(),
            contact_phone: checked.contact.phone.clone(),
            path: path.code().to_string(),
            participant_id: None,
            user_id: None,
        };
        let mut record = store.add_application(data, &submission.received_by).await?;
        let duplicates = duplicates_among(&record, &like);
        let mut no_participant = None;
        if duplicates.is_empty() {
            match self.register(&record, &catalog).await {
                Ok(participant) => {
                    store
                        .link_application(&id, Some(&participant), None)
                        .await?;
                    record.data.participant_id = Some(participant);
                }
                Err(Error::Unprocessable(issues)) | Err(Error::Invalid(issues)) => {
                    let why: Vec<String> = issues.iter().map(|i| i.diagnostics.clone()).collect();
                    no_participant = Some(format!(
                        "the participant registry refused it: {}",
                        why.join("; ")
                    ));
                }
                Err(e) => return Err(OnboardingError::Registry(e)),
            }
        } else {
            no_participant = Some(
                "it looks like an application on file (the same NPI or licence): the \
                 operator decides"
                    .to_string(),
            );
        }
        if let Some(account) = account {
            let mut new = NewUser {
                user_id: account.user_id.clone(),
                login: account.login,
                display_name: account.display_name,
                role: "participant-admin".to_string(),
                participant_id: record.data.participant_id.clone(),
                patient_id: None,
                practitioner_id: None,
                password_hash: store::NO_PASSWORD.to_string(),
                totp_secret: None,
                created: now.unix_timestamp(),
            };
            let user = match account.credential {
                Credential::Password(hash) => {
                    new.password_hash = hash;
                    store.add_user(new).await?
                }
                Credential::Invitation(invitation) => {
                    store.add_invited_user(new, invitation).await?
                }
            };
            store
                .link_application(&id, None, Some(&user.user_id))
                .await?;
            record.data.user_id = Some(user.user_id);
        }
        Ok(Applied {
            record,
            duplicates,
            no_participant,
            no_account,
        })
    }

    /// Registers the application's participant (status applied); answers its id.
    async fn register(
        &self,
        record: &ApplicationRecord,
        catalog: &[Product],
    ) -> Result<String, Error> {
        let data = &record.data;
        let kind = participant_kind(data);
        let ehr = match ehr_of(data) {
            Ehr::Catalog(id) => Some(
                catalog
                    .iter()
                    .find(|p| p.id == id)
                    .map(Product::name)
                    .unwrap_or(id),
            ),
            Ehr::Other(name) => Some(name),
            Ehr::None => None,
        };
        let licence = data.licences.first().map(|l| Licence {
            state: l.state.clone(),
            number: l.number.clone(),
        });
        let new = if kind == Kind::SoloPractice {
            let (given, family) = split_name(&data.legal_name).unwrap_or_default();
            NewParticipant {
                name: data.legal_name.clone(),
                kind,
                npi: None,
                tax_id: None,
                licence: None,
                ehr,
                practitioner: Some(NewPractitioner {
                    given,
                    family,
                    npi: Some(data.npi.clone()),
                    licence_type: practitioner_licence(
                        data.licences
                            .first()
                            .map(|l| l.licence_type.as_str())
                            .unwrap_or_default(),
                    ),
                    licence: licence.unwrap_or(Licence {
                        state: data.state.clone(),
                        number: String::new(),
                    }),
                }),
            }
        } else {
            NewParticipant {
                name: data.legal_name.clone(),
                kind,
                npi: Some(data.npi.clone()),
                tax_id: None,
                licence,
                ehr,
                practitioner: None,
            }
        };
        let participant = self.repo.add_participant(&self.system(), &new).await?;
        Ok(participant.id)
    }

    /// One application with its checklist, duplicates and agreements to sign.
    pub async fn view(&self, id: &str, now: OffsetDateTime) -> Result<View, OnboardingError> {
        let store = self.repo.store();
        let record = store
            .application(id)
            .await?
            .ok_or_else(|| OnboardingError::NotFound(format!("no application has the id {id}")))?;
        let like = store
            .applications_like(&record.data.npi, &record.data.licences)
            .await?;
        let documents = store.agreements().await?;
        let signatures = store.signatures(Some(id)).await?;
        Ok(self.assemble(record, &like, &documents, signatures, now))
    }

    fn assemble(
        &self,
        record: ApplicationRecord,
        others: &[ApplicationRecord],
        documents: &[AgreementDocument],
        signatures: Vec<AgreementSignature>,
        now: OffsetDateTime,
    ) -> View {
        let checklist = checklist(&record);
        let participant_type = participant_kind(&record.data).code();
        let documents: Vec<Document> = documents.iter().map(document_of).collect();
        let signed: Vec<Signature> = signatures.iter().map(signature_of).collect();
        let closed = closed(&record);
        View {
            next: if closed { None } else { checklist.next() },
            overdue: if closed {
                None
            } else {
                checklist.overdue(&self.levels, now)
            },
            duplicates: duplicates_among(&record, others),
            must_sign: agreement::must_sign(participant_type, &documents, &signed),
            signatures,
            participant_type,
            checklist,
            record,
        }
    }

    /// Every application (the operator's queue), oldest first.
    pub async fn queue(&self, now: OffsetDateTime) -> Result<Vec<View>, OnboardingError> {
        let store = self.repo.store();
        let all = store.applications().await?;
        let documents = store.agreements().await?;
        let mut signatures: HashMap<String, Vec<AgreementSignature>> = HashMap::new();
        for s in store.signatures(None).await? {
            signatures
                .entry(s.application_id.clone())
                .or_default()
                .push(s);
        }
        Ok(all
            .iter()
            .map(|record| {
                let signed = signatures
                    .remove(&record.data.application_id)
                    .unwrap_or_default();
                self.assemble(record.clone(), &all, &documents, signed, now)
            })
            .collect())
    }

    /// The applications a portal account follows, oldest first.
    pub async fn of_user(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<View>, OnboardingError> {
        let mut out = Vec::new();
        for record in self.repo.store().applications_of_user(user_id).await? {
            out.push(self.view(&record.data.application_id, now).await?);
        }
        Ok(out)
    }

    /// Records `step` done by `by` at `now`: it must be the path's next step; `agreements-signed`
    /// only once every required agreement is signed. The participant's registry status follows:
    /// onboarding once the package is sent, live when the path's last step (`live`, or the secure-
    /// messaging path's `test-message-exchanged`) is done.
    pub async fn complete_step(
        &self,
        id: &str,
        step: Step,
        by: &str,
        now: OffsetDateTime,
    ) -> Result<View, OnboardingError> {
        let view = self.view(id, now).await?;
        if let Some(why) = undecided(&view) {
            return Err(OnboardingError::Refused(why));
        }
        if step == Step::AgreementsSigned && !view.must_sign.is_empty() {
            let left: Vec<String> = view
                .must_sign
                .iter()
                .map(|u| format!("{} version {}", u.kind, u.version))
                .collect();
            return Err(OnboardingError::Refused(format!(
                "agreements are not all signed yet: {} left",
                left.join(", ")
            )));
        }
        self.take_step(&view, step, by, now).await?;
        let mut view = self.view(id, now).await?;
        // Everything already signed when the package goes out: the next step is done too.
        if step == Step::PackageSent
            && view.next == Some(Step::AgreementsSigned)
            && view.must_sign.is_empty()
            && !view.signatures.is_empty()
        {
            self.take_step(&view, Step::AgreementsSigned, "system", now)
                .await?;
            view = self.view(id, now).await?;
        }
        Ok(view)
    }

    /// Records the operator's decision about an application without a participant, with a reason
    /// (see [`Decision`]): `Distinct` registers its participant (status applied) as the
    /// application would have; `Existing` joins a participant on file; both make the participant
    /// the applicant's account's, if it has none. `DuplicateOf` closes it: no further step, nothing
    /// overdue. One decision per application, kept with who, when and why.
    pub async fn decide(
        &self,
        id: &str,
        decision: Decision,
        by: &str,
        reason: &str,
        now: OffsetDateTime,
    ) -> Result<View, OnboardingError> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(OnboardingError::Invalid(vec![field(
                "reason",
                "a decision needs a reason",
            )]));
        }
        check_reason(reason)?;
        let view = self.view(id, now).await?;
        if let Some(d) = &view.record.decision {
            return Err(OnboardingError::Refused(format!(
                "it was decided already ({}, by {}): a decision is not changed",
                d.decision, d.by
            )));
        }
        if let Some(p) = &view.record.data.participant_id {
            return Err(OnboardingError::Refused(format!(
                "it has its participant ({p}): there is nothing to decide"
            )));
        }
        let (participant, duplicate_of) = match &decision {
            Decision::Distinct => {
                let catalog = self.catalog().await?;
                match self.register(&view.record, &catalog).await {
                    Ok(participant) => (Some(participant), None),
                    Err(Error::Unprocessable(issues)) | Err(Error::Invalid(issues)) => {
                        let why: Vec<String> =
                            issues.iter().map(|i| i.diagnostics.clone()).collect();
                        return Err(OnboardingError::Refused(format!(
                            "the participant registry refused it: {}",
                            why.join("; ")
                        )));
                    }
                    Err(e) => return Err(OnboardingError::Registry(e)),
                }
            }
            Decision::Existing(participant) => {
                let participant = participant.trim();
                match self.repo.participant(&self.system(), participant).await {
                    Ok(_) => (Some(participant.to_string()), None),
                    Err(e) if e.status() >= 500 => return Err(OnboardingError::Registry(e)),
                    Err(_) => {
                        return Err(OnboardingError::Invalid(vec![field(
                            "participant",
                            format!("no participant has the id '{participant}'"),
                        )]))
                    }
                }
            }
            Decision::DuplicateOf(other) => {
                let other = other.trim();
                if !view.duplicates.iter().any(|d| d.application == other) {
                    return Err(OnboardingError::Invalid(vec![field(
                        "duplicate_of",
                        format!(
                            "'{other}' is not an application like this one (the same NPI or \
                             licence)"
                        ),
                    )]));
                }
                (None, Some(other.to_string()))
            }
        };
        let record = store::DecisionRecord {
            decision: decision.code().to_string(),
            duplicate_of,
            participant_id: participant,
            by: by.to_string(),
            at: millis(now),
            reason: reason.to_string(),
        };
        match self
            .repo
            .store()
            .decide_application(id, record, view.record.data.user_id.as_deref())
            .await
        {
            Ok(()) => {}
            Err(StoreError::Conflict { .. }) => {
                return Err(OnboardingError::Conflict(
                    "the application changed meanwhile (decided, or given a participant): \
                     reload it and try again"
                        .to_string(),
                ))
            }
            Err(e) => return Err(e.into()),
        }
        self.view(id, now).await
    }

    /// A Direct address was issued to `participant` (its Organization, or a practitioner joined to
    /// it): each of its applications whose next step is `direct-address-issued` has that step done,
    /// by `by` at `now` (an application not there yet, or past it, is left as it is). Answers the
    /// applications moved.
    pub async fn direct_address_issued(
        &self,
        participant: &str,
        by: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<String>, OnboardingError> {
        self.reached(participant, Step::DirectAddressIssued, by, now)
            .await
    }

    /// One of `participant`'s Direct addresses has received a message and sent one its recipient
    /// confirmed: each of its applications whose next step is `test-message-exchanged` has that
    /// step done (the last of the secure-messaging path: the participant goes live), as
    /// [`Onboarding::direct_address_issued`] does for its step.
    pub async fn direct_message_exchanged(
        &self,
        participant: &str,
        by: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<String>, OnboardingError> {
        self.reached(participant, Step::TestMessageExchanged, by, now)
            .await
    }

    /// Whether `participant` has an application not finished yet (whose path has a step left).
    pub async fn unfinished(
        &self,
        participant: &str,
        now: OffsetDateTime,
    ) -> Result<bool, OnboardingError> {
        for record in self
            .repo
            .store()
            .applications_of_participant(participant)
            .await?
        {
            if self
                .view(&record.data.application_id, now)
                .await?
                .next
                .is_some()
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `step` happened for `participant`: done in each of its applications that waits for it.
    async fn reached(
        &self,
        participant: &str,
        step: Step,
        by: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<String>, OnboardingError> {
        let mut moved = Vec::new();
        for record in self
            .repo
            .store()
            .applications_of_participant(participant)
            .await?
        {
            let id = record.data.application_id.clone();
            let view = self.view(&id, now).await?;
            if view.next == Some(step) {
                self.complete_step(&id, step, by, now).await?;
                moved.push(id);
            }
        }
        Ok(moved)
    }

    async fn take_step(
        &self,
        view: &View,
        step: Step,
        by: &str,
        now: OffsetDateTime,
    ) -> Result<(), OnboardingError> {
        let mut checklist = view.checklist.clone();
        checklist
            .complete(step, by, now)
            .map_err(|e| OnboardingError::Refused(e.to_string()))?;
        let record = StepRecord {
            step: step.code().to_string(),
            by: by.to_string(),
            at: millis(now),
        };
        match self
            .repo
            .store()
            .record_step(view.id(), checklist.path.code(), record)
            .await
        {
            Ok(()) => {}
            Err(StoreError::Conflict { .. }) => {
                return Err(OnboardingError::Conflict(
                    "the application changed meanwhile (the step was recorded or the path \
                     changed): reload it and try again"
                        .to_string(),
                ))
            }
            Err(e) => return Err(e.into()),
        }
        let last = checklist.path.steps().last().copied();
        let target = if step == Step::PackageSent {
            Some(Status::Onboarding)
        } else if Some(step) == last {
            Some(Status::Live)
        } else {
            None
        };
        if let (Some(target), Some(participant)) = (target, &view.record.data.participant_id) {
            self.move_participant(participant, target).await?;
        }
        Ok(())
    }

    /// Moves the participant forward to `target` (through onboarding to live); a participant
    /// already there, past it or suspended is left alone (the operator decides about those).
    async fn move_participant(&self, id: &str, target: Status) -> Result<(), OnboardingError> {
        let who = self.system();
        let current = self
            .repo
            .participant(&who, id)
            .await
            .map_err(OnboardingError::Registry)?;
        let moves: &[Status] = match (current.status, target) {
            (Status::Applied, Status::Onboarding) => &[Status::Onboarding],
            (Status::Applied, Status::Live) => &[Status::Onboarding, Status::Live],
            (Status::Onboarding, Status::Live) => &[Status::Live],
            _ => &[],
        };
        for status in moves {
            self.repo
                .set_participant_status(&who, id, *status)
                .await
                .map_err(OnboardingError::Registry)?;
        }
        Ok(())
    }

    /// Moves the application to `to`, with a reason (kept, with who and when).
    pub async fn change_path(
        &self,
        id: &str,
        to: Path,
        by: &str,
        reason: &str,
        now: OffsetDateTime,
    ) -> Result<View, OnboardingError> {
        let view = self.view(id, now).await?;
        let mut checklist = view.checklist.clone();
        let reason = reason.trim();
        check_reason(reason)?;
        checklist
            .change_path(to, by, now, reason)
            .map_err(|e| match e {
                workflow::WorkflowError::NoReason => {
                    OnboardingError::Invalid(vec![field("reason", e.to_string())])
                }
                e => OnboardingError::Refused(e.to_string()),
            })?;
        match self
            .repo
            .store()
            .change_path(
                id,
                view.checklist.path.code(),
                to.code(),
                by,
                millis(now),
                reason,
            )
            .await
        {
            Ok(_) => {}
            Err(StoreError::Conflict { .. }) => {
                return Err(OnboardingError::Conflict(
                    "the application's path changed meanwhile: reload it and try again".to_string(),
                ))
            }
            Err(e) => return Err(e.into()),
        }
        self.view(id, now).await
    }

    /// Publishes an agreement version: a kind of lowercase letters, digits and dashes, a version
    /// newer than every published one of its kind, a title, a text, and the participant types
    /// (registry codes, or `*`) that must sign it. The digest is the SHA-256 of the exact text.
    pub async fn publish(
        &self,
        new: NewDocument,
        now: OffsetDateTime,
    ) -> Result<AgreementDocument, OnboardingError> {
        let mut errors = Vec::new();
        let kind_ok = !new.kind.is_empty()
            && new.kind.len() <= 40
            && new
                .kind
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !kind_ok {
            errors.push(field(
                "kind",
                "1-40 lowercase letters, digits and dashes (participation, baa, dsa)",
            ));
        }
        if new.version < 1 {
            errors.push(field("version", "a version is a whole number from 1"));
        }
        if new.title.trim().is_empty() || new.title.chars().count() > 200 {
            errors.push(field("title", "a title of 1-200 characters"));
        }
        if new.text.trim().is_empty() {
            errors.push(field("file", "the agreement's text is empty"));
        } else if new.text.len() > 1024 * 1024 {
            errors.push(field("file", "the agreement's text is over 1 MiB"));
        }
        if new.required_for.is_empty() {
            errors.push(field(
                "required-for",
                "name the participant types that must sign it, or *",
            ));
        }
        for t in &new.required_for {
            if t != "*" && Kind::parse(t).is_none() {
                let known: Vec<&str> = Kind::ALL.iter().map(|k| k.code()).collect();
                errors.push(field(
                    "required-for",
                    format!("{t} is not a participant type ({}, or *)", known.join(", ")),
                ));
            }
        }
        if !errors.is_empty() {
            return Err(OnboardingError::Invalid(errors));
        }
        let store = self.repo.store();
        let latest = store
            .agreements()
            .await?
            .into_iter()
            .filter(|d| d.kind == new.kind)
            .map(|d| d.version)
            .max();
        if let Some(latest) = latest {
            if new.version <= latest {
                return Err(OnboardingError::Refused(format!(
                    "{} version {latest} is published already; a new version is numbered {}",
                    new.kind,
                    latest + 1
                )));
            }
        }
        let document = AgreementDocument {
            sha256: agreement::digest(&new.text),
            kind: new.kind,
            version: new.version,
            title: new.title.trim().to_string(),
            text: new.text,
            required_for: new.required_for,
            published: millis(now),
            published_by: new.published_by,
        };
        match store.publish_agreement(document).await {
            Ok(d) => Ok(d),
            Err(StoreError::Conflict { id, .. }) => Err(OnboardingError::Refused(format!(
                "{id} is published already"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Every agreement version, by kind then version.
    pub async fn documents(&self) -> Result<Vec<AgreementDocument>, OnboardingError> {
        Ok(self.repo.store().agreements().await?)
    }

    /// One agreement version.
    pub async fn document(
        &self,
        kind: &str,
        version: i64,
    ) -> Result<AgreementDocument, OnboardingError> {
        self.repo
            .store()
            .agreement(kind, version)
            .await?
            .ok_or_else(|| {
                OnboardingError::NotFound(format!("no agreement {kind} version {version}"))
            })
    }

    /// Signs one agreement version for an application: it must be one the application's
    /// participant type must sign now (the latest, not yet signed), and `onboard::agreement::sign`
    /// must accept the form (the application's authorized signer's name, a title, the consent, the
    /// digest of the version shown). The time and client address are recorded. Once nothing is
    /// left to sign and the checklist is at `agreements-signed`, that step is done by the signer.
    #[allow(clippy::too_many_arguments)]
    pub async fn sign(
        &self,
        id: &str,
        kind: &str,
        version: i64,
        form: &SignForm,
        user_id: Option<&str>,
        client_address: &str,
        now: OffsetDateTime,
    ) -> Result<AgreementSignature, OnboardingError> {
        let view = self.view(id, now).await?;
        let document = self.document(kind, version).await?;
        let due = view
            .must_sign
            .iter()
            .any(|u| u.kind == kind && i64::from(u.version) == version);
        if !due {
            return Err(OnboardingError::Invalid(vec![field(
                "sha256",
                format!(
                    "{kind} version {version} is not one this application must sign now (it \
                     is signed already, or a newer version replaced it): reload the page"
                ),
            )]));
        }
        let signature = agreement::sign(
            &document_of(&document),
            form,
            &view.record.data.signer_name,
            now,
            client_address,
        )
        .map_err(|errors| {
            OnboardingError::Invalid(
                errors
                    .into_iter()
                    .map(|e| field(&e.field, e.message))
                    .collect(),
            )
        })?;
        let stored = self
            .repo
            .store()
            .add_signature(AgreementSignature {
                signature_id: format!("sig-{}", uuid::Uuid::new_v4().simple()),
                kind: signature.kind,
                version,
                sha256: signature.sha256,
                signer_name: signature.signer_name,
                signer_title: signature.signer_title,
                consented_electronically: signature.consented_electronically,
                signed_at: millis(now),
                client_address: signature.client_address,
                user_id: user_id.map(str::to_string),
                application_id: id.to_string(),
                participant_id: view.record.data.participant_id.clone(),
            })
            .await?;
        let after = self.view(id, now).await?;
        if after.must_sign.is_empty() && after.next == Some(Step::AgreementsSigned) {
            let by = user_id.unwrap_or(&stored.signer_name).to_string();
            match self
                .take_step(&after, Step::AgreementsSigned, &by, now)
                .await
            {
                Ok(()) | Err(OnboardingError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(stored)
    }

    /// Recomputes the SHA-256 of every stored agreement version and of every signed one: a
    /// version whose text no longer has the digest it was published with, and a signature whose
    /// version is missing or whose text is no longer the one signed, are findings.
    pub async fn verify(&self) -> Result<Verified, OnboardingError> {
        let store = self.repo.store();
        let documents = store.agreements().await?;
        let signatures = store.signatures(None).await?;
        let mut findings = Vec::new();
        for d in &documents {
            let now = agreement::digest(&d.text);
            if now != d.sha256 {
                findings.push(VerifyFinding {
                    signature_id: None,
                    application_id: None,
                    message: format!(
                        "{} version {} was changed after it was published (published SHA-256 \
                         {}, stored text now {now})",
                        d.kind, d.version, d.sha256
                    ),
                });
            }
        }
        let onboard_documents: Vec<Document> = documents.iter().map(document_of).collect();
        for s in &signatures {
            for finding in agreement::verify(&onboard_documents, &[signature_of(s)]) {
                findings.push(VerifyFinding {
                    signature_id: Some(s.signature_id.clone()),
                    application_id: Some(s.application_id.clone()),
                    message: finding.to_string(),
                });
            }
        }
        Ok(Verified {
            documents: documents.len(),
            signatures: signatures.len(),
            findings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solo_names_split_at_the_last_word_before_a_comma() {
        assert_eq!(
            split_name("Jane Q. Doe, LMFT"),
            Some(("Jane Q.".to_string(), "Doe".to_string()))
        );
        assert_eq!(split_name("Cher"), None);
        assert_eq!(split_name(" , x"), None);
    }

    #[test]
    fn every_behavioral_health_licence_an_applicant_can_hold_reaches_the_registry() {
        // What a practitioner of these sends is labelled BH: an applicant's licence must not
        // become `other` on the way to the registry.
        for (code, expected) in [
            ("lmft", LicenceType::Lmft),
            ("lcsw", LicenceType::Lcsw),
            ("lpc", LicenceType::Lpc),
            ("lads", LicenceType::Ladc),
            ("psychologist", LicenceType::Psychologist),
            ("psychiatrist", LicenceType::Psychiatrist),
        ] {
            assert!(application::licence_type(code).is_some(), "{code}");
            assert_eq!(practitioner_licence(code), expected, "{code}");
            assert!(expected.is_behavioral_health(), "{code}");
        }
        assert_eq!(practitioner_licence("dentist"), LicenceType::Other);
    }

    #[test]
    fn a_behavioral_health_facility_is_registered_as_a_psychiatric_facility() {
        let organization = application::Kind::Organization.code();
        assert_eq!(
            kind_of(organization, Some("bh-facility")),
            Kind::PsychiatricFacility
        );
        assert_eq!(kind_of(organization, Some("clinic")), Kind::Clinic);
        assert_eq!(kind_of(organization, Some("hospital")), Kind::Hospital);
        assert_eq!(kind_of(organization, Some("lcsw")), Kind::GroupPractice);
        let solo = application::Kind::SoloPractitioner.code();
        assert_eq!(kind_of(solo, Some("lcsw")), Kind::SoloPractice);
    }

    #[test]
    fn milliseconds_round_trip() {
        let at = time::macros::datetime!(2026-11-29 13:00:00.123 UTC);
        assert_eq!(instant(millis(at)), at);
    }
}
