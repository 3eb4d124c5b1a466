//! The pure rules of portal accounts, shared by the portal and `nutmeg admin user`: the roles and
//! what each must be linked to, the password policy, the lockout back-off, the requester a signed-in
//! user becomes, and the small encodings (random tokens, SHA-256 of a cookie secret, hex, a
//! constant-time comparison).

use auth::PurposeOfUse;
use exchange::access::{Principal, Requester, Role};
use ring::rand::SecureRandom as _;
use store::User;

/// The shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Failed sign-ins (since the last successful one) after which the account locks.
pub const LOCK_AFTER: i64 = 5;
/// The first lock, in seconds; it doubles with each further failure...
pub const LOCK_FIRST: i64 = 60;
/// ...up to this.
pub const LOCK_MAX: i64 = 3600;

/// The five portal roles, by their stored codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleCode {
    OperatorAdmin,
    ParticipantAdmin,
    Clinician,
    Staff,
    Patient,
}

/// What a role's account must be linked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Nothing: the exchange's own operators.
    None,
    /// A participant (its Organization's id).
    Participant,
    /// A Patient, linked by the operator after identity proofing.
    Patient,
}

impl RoleCode {
    pub const ALL: [RoleCode; 5] = [
        RoleCode::OperatorAdmin,
        RoleCode::ParticipantAdmin,
        RoleCode::Clinician,
        RoleCode::Staff,
        RoleCode::Patient,
    ];

    /// The code as stored and as `--role` takes it.
    pub fn code(self) -> &'static str {
        match self {
            RoleCode::OperatorAdmin => "operator-admin",
            RoleCode::ParticipantAdmin => "participant-admin",
            RoleCode::Clinician => "clinician",
            RoleCode::Staff => "staff",
            RoleCode::Patient => "patient",
        }
    }

    pub fn parse(code: &str) -> Option<RoleCode> {
        RoleCode::ALL.into_iter().find(|r| r.code() == code)
    }

    /// How the portal names the role to people.
    pub fn label(self) -> &'static str {
        match self {
            RoleCode::OperatorAdmin => "Exchange operator (administrator)",
            RoleCode::ParticipantAdmin => "Participant administrator",
            RoleCode::Clinician => "Clinician",
            RoleCode::Staff => "Staff",
            RoleCode::Patient => "Patient",
        }
    }

    pub fn link(self) -> Link {
        match self {
            RoleCode::OperatorAdmin => Link::None,
            RoleCode::ParticipantAdmin | RoleCode::Clinician | RoleCode::Staff => Link::Participant,
            RoleCode::Patient => Link::Patient,
        }
    }
}

/// What is wrong with a role's links: participant roles need a participant and no patient, a
/// patient a Patient and no participant, an operator neither. (Whether they exist is the caller's
/// to check.)
pub fn link_problems(
    role: RoleCode,
    participant: Option<&str>,
    patient: Option<&str>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let code = role.code();
    match role.link() {
        Link::None => {
            if participant.is_some() {
                problems.push(format!(
                    "an {code} belongs to no participant: leave out --participant"
                ));
            }
            if patient.is_some() {
                problems.push(format!(
                    "an {code} is not linked to a patient: leave out --patient"
                ));
            }
        }
        Link::Participant => {
            if participant.is_none() {
                problems.push(format!(
                    "a {code} belongs to a participant: give --participant ID"
                ));
            }
            if patient.is_some() {
                problems.push(format!(
                    "a {code} is not linked to a patient: leave out --patient"
                ));
            }
        }
        Link::Patient => {
            if patient.is_none() {
                problems.push(
                    "a patient account is linked to their Patient: give --patient ID".to_string(),
                );
            }
            if participant.is_some() {
                problems.push(
                    "a patient account belongs to no participant: leave out --participant"
                        .to_string(),
                );
            }
        }
    }
    problems
}

/// What is wrong with a login name: empty, longer than 128 characters, or with spaces or control
/// characters.
pub fn login_problems(login: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if login.is_empty() {
        problems.push("the login name is empty".to_string());
    } else if login.chars().count() > 128 {
        problems.push("the login name is longer than 128 characters".to_string());
    }
    if login.chars().any(|c| c.is_whitespace() || c.is_control()) {
        problems.push("the login name has spaces or control characters".to_string());
    }
    problems
}

/// What is wrong with a password: shorter than [`MIN_PASSWORD_CHARS`] characters, longer than
/// `auth` hashes, or containing the login name (in any case).
pub fn password_problems(password: &str, login: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if password.chars().count() < MIN_PASSWORD_CHARS {
        problems.push(format!(
            "the password must be at least {MIN_PASSWORD_CHARS} characters long"
        ));
    }
    if password.len() > auth::password::MAX_PASSWORD_LEN {
        problems.push(format!(
            "the password must be at most {} bytes long",
            auth::password::MAX_PASSWORD_LEN
        ));
    }
    let login = login.trim().to_lowercase();
    if !login.is_empty() && password.to_lowercase().contains(&login) {
        problems.push("the password must not contain the login name".to_string());
    }
    problems
}

/// How long an account locks after its `failures`th failed sign-in in a row: not before
/// [`LOCK_AFTER`]; then [`LOCK_FIRST`] seconds, doubling with each further failure, at most
/// [`LOCK_MAX`].
pub fn lockout_seconds(failures: i64) -> Option<i64> {
    if failures < LOCK_AFTER {
        return None;
    }
    let doublings = u32::try_from((failures - LOCK_AFTER).min(16)).unwrap_or(16);
    Some((LOCK_FIRST << doublings).min(LOCK_MAX))
}

/// The role the decision point knows a user by, or `None` for a stored role it does not know (or
/// a patient account without its Patient).
pub fn role_of(user: &User) -> Option<Role> {
    Some(match RoleCode::parse(&user.role)? {
        RoleCode::OperatorAdmin => Role::OperatorAdmin,
        RoleCode::ParticipantAdmin => Role::ParticipantAdmin,
        RoleCode::Clinician => Role::Clinician,
        RoleCode::Staff => Role::Staff,
        RoleCode::Patient => Role::Patient {
            patient_id: user.patient_id.clone()?,
        },
    })
}

/// The requester a signed-in user is for one request: a patient asks for their own record
/// (PATRQT, stated by signing in as the patient); an operator for operations (HOPERAT, not stated:
/// stating one is a later page's); participants' users for treatment (TREAT), or operations for
/// their administrators.
pub fn requester(user: &User, request_id: &str) -> Option<Requester> {
    let role = role_of(user)?;
    let (purpose, stated) = match role {
        Role::Patient { .. } => (PurposeOfUse::Patrqt, true),
        Role::OperatorAdmin | Role::ParticipantAdmin => (PurposeOfUse::Hoperat, false),
        Role::Clinician | Role::Staff => (PurposeOfUse::Treat, false),
    };
    let principal = Principal::User {
        user_id: user.user_id.clone(),
        participant: user.participant_id.clone(),
        role,
    };
    Some(Requester::new(request_id, principal, purpose, stated))
}

/// `bytes` random bytes from the operating system, base64url: cookie secrets and form tokens.
pub fn random_token(bytes: usize) -> anyhow::Result<String> {
    use base64::Engine as _;
    let mut buffer = vec![0u8; bytes];
    ring::rand::SystemRandom::new()
        .fill(&mut buffer)
        .map_err(|_| anyhow::anyhow!("no randomness from the operating system"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buffer))
}

/// The SHA-256 of a session's cookie secret, in hex: what the store keeps.
pub fn session_hash(secret: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, secret.as_bytes()).as_ref())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

/// Whether two tokens are equal, in time that depends only on their lengths.
pub fn same_token(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_and_need_their_links() {
        for role in RoleCode::ALL {
            assert_eq!(RoleCode::parse(role.code()), Some(role));
        }
        assert_eq!(RoleCode::parse("root"), None);
        let check = |role, participant: Option<&str>, patient: Option<&str>, ok: bool| {
            let problems = link_problems(role, participant, patient);
            assert_eq!(
                problems.is_empty(),
                ok,
                "{role:?} {participant:?} {patient:?}: {problems:?}"
            );
        };
        check(RoleCode::OperatorAdmin, None, None, true);
        check(RoleCode::OperatorAdmin, Some("org"), None, false);
        check(RoleCode::OperatorAdmin, None, Some("p"), false);
        for role in [
            RoleCode::ParticipantAdmin,
            RoleCode::Clinician,
            RoleCode::Staff,
        ] {
            check(role, Some("org"), None, true);
            check(role, None, None, false);
            check(role, Some("org"), Some("p"), false);
        }
        check(RoleCode::Patient, None, Some("p"), true);
        check(RoleCode::Patient, None, None, false);
        check(RoleCode::Patient, Some("org"), Some("p"), false);
    }

    #[test]
    fn password_policy() {
        let check = |password: &str, login: &str, problems: usize| {
            assert_eq!(
                password_problems(password, login).len(),
                problems,
                "{password:?} for {login:?}"
            );
        };
        check("correct horse battery", "alice", 0);
        check("elevenchars", "alice", 1);
        check("twelve chars", "alice", 0);
        check("ééééééééééé", "x", 1);
        check("éééééééééééé", "x", 0);
        check("my name is ALICE!", "alice", 1);
        check("alice", "alice", 2);
        check(&"x".repeat(2000), "alice", 1);
        assert!(login_problems("alice.smith@clinic").is_empty());
        assert_eq!(login_problems("").len(), 1);
        assert_eq!(login_problems("alice smith").len(), 1);
        assert_eq!(login_problems(&"a".repeat(129)).len(), 1);
    }

    #[test]
    fn lockout_backs_off_to_an_hour() {
        let locks: Vec<Option<i64>> = (0..=13).map(lockout_seconds).collect();
        assert_eq!(
            locks,
            vec![
                None,
                None,
                None,
                None,
                None,
                Some(60),
                Some(120),
                Some(240),
                Some(480),
                Some(960),
                Some(1920),
                Some(3600),
                Some(3600),
                Some(3600),
            ]
        );
        assert_eq!(lockout_seconds(i64::MAX), Some(3600));
    }

    fn user(role: &str, participant: Option<&str>, patient: Option<&str>) -> User {
        User {
            user_id: "u1".into(),
            login: "someone".into(),
            display_name: "Someone".into(),
            role: role.into(),
            participant_id: participant.map(Into::into),
            patient_id: patient.map(Into::into),
            practitioner_id: None,
            password_hash: String::new(),
            totp_secret: None,
            last_totp_step: None,
            failed_attempts: 0,
            locked_until: None,
            created: 0,
            status: store::UserStatus::Active,
        }
    }

    #[test]
    fn requesters_carry_role_and_purpose() {
        let patient = requester(&user("patient", None, Some("p1")), "r1").unwrap();
        assert_eq!(
            patient.principal,
            Principal::User {
                user_id: "u1".into(),
                participant: None,
                role: Role::Patient {
                    patient_id: "p1".into()
                }
            }
        );
        assert_eq!(
            (patient.purpose, patient.purpose_stated),
            (PurposeOfUse::Patrqt, true)
        );
        let operator = requester(&user("operator-admin", None, None), "r1").unwrap();
        assert_eq!(
            (operator.purpose, operator.purpose_stated),
            (PurposeOfUse::Hoperat, false)
        );
        let clinician = requester(&user("clinician", Some("org"), None), "r1").unwrap();
        assert_eq!(clinician.principal.participant(), Some("org"));
        assert_eq!(
            (clinician.purpose, clinician.purpose_stated),
            (PurposeOfUse::Treat, false)
        );
        assert!(requester(&user("patient", None, None), "r1").is_none());
        assert!(requester(&user("root", None, None), "r1").is_none());
    }

    #[test]
    fn tokens_hashes_and_comparison() {
        let a = random_token(32).unwrap();
        assert_eq!(a.len(), 43, "256 bits in unpadded base64url");
        assert_ne!(a, random_token(32).unwrap());
        assert_eq!(
            session_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            unhex(&hex(&[0, 1, 0xfe])).as_deref(),
            Some(&[0, 1, 0xfe][..])
        );
        assert_eq!(unhex("0g"), None);
        assert_eq!(unhex("é0"), None);
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "abcd"));
        assert!(!same_token("", "a"));
    }
}
