//! The participant registry: registration with every problem reported at once, duplicates refused,
//! the status workflow, listing by status, and that participants are plain FHIR in the directory.

mod common;

use common::{entries, params, repo, solo_therapist, who};
use exchange::participants::{
    EndpointKind, Kind, Licence, LicenceType, NewParticipant, Status, STATUS_SYSTEM,
};
use exchange::repository::{Error, Handling, HistoryScope};

fn hospital(name: &str, npi: Option<&str>) -> NewParticipant {
    NewParticipant {
        name: name.to_string(),
        kind: Kind::Hospital,
        npi: npi.map(str::to_string),
        tax_id: Some("061234567".to_string()),
        licence: Some(Licence {
            state: "CT".to_string(),
            number: format!("HOSP-{}", name.len()),
        }),
        ehr: Some("Epic".to_string()),
        practitioner: None,
    }
}

/// A clinic with nothing but its name.
fn clinic(name: String) -> NewParticipant {
    NewParticipant {
        name,
        kind: Kind::Clinic,
        npi: None,
        tax_id: None,
        licence: None,
        ehr: None,
        practitioner: None,
    }
}

fn issues(err: &Error) -> Vec<String> {
    err.issues().into_iter().map(|i| i.diagnostics).collect()
}

#[tokio::test]
async fn a_hospital_is_registered_as_an_organization() {
    let repo = repo().await;
    let added = repo
        .add_participant(&who(), &hospital("Hartford General", Some("1234567893")))
        .await
        .expect("registered");
    assert_eq!(added.status, Status::Applied);
    assert_eq!(added.kind, Some(Kind::Hospital));
    assert_eq!(added.npi.as_deref(), Some("1234567893"));
    assert_eq!(added.tax_id.as_deref(), Some("06-1234567"));
    assert_eq!(
        added.licence,
        Some(Licence {
            state: "CT".into(),
            number: "HOSP-16".into()
        })
    );
    assert_eq!(added.ehr.as_deref(), Some("Epic"));
    assert_eq!(repo.participant(&who(), &added.id).await.unwrap(), added);

    // The directory is FHIR search: by NPI, and by status tag.
    let by_npi = repo
        .search(
            &who(),
            Some("Organization"),
            &params("identifier=http://hl7.org/fhir/sid/us-npi|1234567893"),
            Handling::Strict,
        )
        .await
        .unwrap()
        .to_value();
    assert_eq!(
        entries(&by_npi),
        vec![(format!("Organization/{}", added.id), "match".to_string())]
    );
    let by_status = repo
        .search(
            &who(),
            Some("Organization"),
            &[("_tag".into(), format!("{STATUS_SYSTEM}|applied"))],
            Handling::Strict,
        )
        .await
        .unwrap()
        .to_value();
    assert_eq!(entries(&by_status).len(), 1);
}

#[tokio::test]
async fn a_solo_practice_brings_its_practitioner_and_role() {
    let repo = repo().await;
    let added = repo
        .add_participant(&who(), &solo_therapist("LMFT.001234"))
        .await
        .expect("registered");
    assert_eq!(added.kind, Some(Kind::SoloPractice));
    let roles = repo
        .search(
            &who(),
            Some("PractitionerRole"),
            &params(&format!(
                "organization=Organization/{}&_include=PractitionerRole:practitioner",
                added.id
            )),
            Handling::Strict,
        )
        .await
        .unwrap()
        .to_value();
    let found = roles["entry"].as_array().expect("entries");
    assert_eq!(found.len(), 2, "{roles}");
    let practitioner = &found[1]["resource"];
    assert_eq!(practitioner["resourceType"], "Practitioner");
    assert_eq!(practitioner["name"][0]["family"], "Doe");
    let qualification = &practitioner["qualification"][0];
    assert_eq!(qualification["code"]["coding"][0]["code"], "LMFT");
    assert_eq!(qualification["identifier"][0]["value"], "LMFT.001234");
    assert!(LicenceType::Lmft.is_behavioral_health());
    assert!(!LicenceType::Physician.is_behavioral_health());
}

#[tokio::test]
async fn every_problem_is_reported_at_once_and_nothing_is_written() {
    let repo = repo().await;
    let bad = NewParticipant {
        name: " ".to_string(),
        kind: Kind::SoloPractice,
        npi: Some("1234567890".to_string()),
        tax_id: Some("12-34".to_string()),
        licence: Some(Licence {
            state: "XX".to_string(),
            number: "no spaces allowed".to_string(),
        }),
        ehr: None,
        practitioner: None,
    };
    let err = repo
        .add_participant(&who(), &bad)
        .await
        .expect_err("refused");
    assert_eq!(err.status(), 400);
    let said = issues(&err);
    for expected in [
        "name: required",
        "npi: not a valid NPI",
        "tax id: nine digits",
        "licence: the state must be",
        "licence: the number must be",
        "practitioner: a solo practice names its practitioner",
    ] {
        assert!(
            said.iter().any(|s| s.starts_with(expected)),
            "{expected}: {said:?}"
        );
    }
    let mut clinic_with_practitioner = solo_therapist("A1");
    clinic_with_practitioner.kind = Kind::Clinic;
    let err = repo
        .add_participant(&who(), &clinic_with_practitioner)
        .await
        .expect_err("refused");
    assert!(issues(&err)[0].starts_with("practitioner: only a solo practice"));
    assert!(repo.participants(&who(), None).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_second_registration_of_the_same_npi_or_licence_is_refused() {
    let repo = repo().await;
    let first = repo
        .add_participant(&who(), &hospital("Hartford General", Some("1234567893")))
        .await
        .unwrap();
    let err = repo
        .add_participant(
            &who(),
            &hospital("Hartford General Hospital", Some("1234567893")),
        )
        .await
        .expect_err("duplicate NPI");
    assert_eq!(err.status(), 422);
    assert!(
        issues(&err)
            .iter()
            .any(|s| s.contains(&format!("Organization/{}", first.id))),
        "{:?}",
        issues(&err)
    );

    repo.add_participant(&who(), &solo_therapist("LMFT.1"))
        .await
        .unwrap();
    let err = repo
        .add_participant(&who(), &solo_therapist("LMFT.1"))
        .await
        .expect_err("duplicate practitioner licence");
    assert_eq!(err.status(), 422);
    assert_eq!(repo.participants(&who(), None).await.unwrap().len(), 2);
}

#[tokio::test]
async fn the_status_follows_the_workflow_and_keeps_its_history() {
    let repo = repo().await;
    let p = repo
        .add_participant(&who(), &hospital("Hartford General", None))
        .await
        .unwrap();
    let err = repo
        .set_participant_status(&who(), &p.id, Status::Live)
        .await
        .expect_err("applied cannot go live directly");
    assert_eq!(err.status(), 422);
    assert!(issues(&err)[0].contains("applied cannot become live"));

    let onboarding = repo
        .set_participant_status(&who(), &p.id, Status::Onboarding)
        .await
        .unwrap();
    assert_eq!(onboarding.status, Status::Onboarding);
    let live = repo
        .set_participant_status(&who(), &p.id, Status::Live)
        .await
        .unwrap();
    assert_eq!((live.status, live.version), (Status::Live, 3));
    let suspended = repo
        .set_participant_status(&who(), &p.id, Status::Suspended)
        .await
        .unwrap();
    assert_eq!(suspended.status, Status::Suspended);
    let org = repo.read(&who(), "Organization", &p.id).await.unwrap();
    assert_eq!(org.resource["active"], false);
    let tags = org.resource["meta"]["tag"].as_array().unwrap();
    assert_eq!(tags.len(), 1, "one status tag: {tags:?}");

    let history = repo
        .history(
            &who(),
            HistoryScope::Instance("Organization".into(), p.id.clone()),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(history["total"], 4);

    // Not a participant: an Organization without a status tag.
    let plain = repo
        .create(
            &who(),
            "Organization",
            serde_json::json!({ "resourceType": "Organization", "name": "Not one" }),
            None,
        )
        .await
        .unwrap();
    let err = repo
        .participant(&who(), &plain.resource.id)
        .await
        .expect_err("not a participant");
    assert_eq!(err.status(), 404);
}

#[tokio::test]
async fn listing_by_status_pages_through_every_participant_in_name_order() {
    let repo = repo().await;
    // More than the test repository's largest page (50).
    let mut ids = Vec::new();
    for i in 0..53 {
        let p = clinic(format!("Clinic {i:03}"));
        ids.push(repo.add_participant(&who(), &p).await.unwrap().id);
    }
    for id in &ids[..3] {
        repo.set_participant_status(&who(), id, Status::Onboarding)
            .await
            .unwrap();
    }
    let all = repo.participants(&who(), None).await.unwrap();
    let names: Vec<&str> = all.iter().map(|p| p.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names.len(), 53);
    assert_eq!(names, sorted);
    let onboarding = repo
        .participants(&who(), Some(Status::Onboarding))
        .await
        .unwrap();
    assert_eq!(
        onboarding.iter().map(|p| p.id.clone()).collect::<Vec<_>>(),
        ids[..3].to_vec()
    );
    assert_eq!(
        repo.participants(&who(), Some(Status::Applied))
            .await
            .unwrap()
            .len(),
        50
    );
}

#[tokio::test]
async fn endpoints_are_registered_with_the_organization_that_manages_them() {
    let repo = repo().await;
    let p = repo
        .add_participant(&who(), &hospital("Hartford General", None))
        .await
        .unwrap();
    let fhir = repo
        .add_participant_endpoint(
            &who(),
            &p.id,
            EndpointKind::Fhir,
            "https://ehr.example.org/fhir",
        )
        .await
        .unwrap();
    let direct = repo
        .add_participant_endpoint(
            &who(),
            &p.id,
            EndpointKind::Direct,
            "records@direct.example.org",
        )
        .await
        .unwrap();
    let listed = repo.participant_endpoints(&who(), &p.id).await.unwrap();
    assert_eq!(
        listed,
        vec![
            (
                fhir.clone(),
                EndpointKind::Fhir,
                "https://ehr.example.org/fhir".to_string()
            ),
            (
                direct.clone(),
                EndpointKind::Direct,
                "mailto:records@direct.example.org".to_string()
            ),
        ]
    );
    // The Organization lists both, and the Endpoint names its managing Organization.
    let org = repo.read(&who(), "Organization", &p.id).await.unwrap();
    let refs: Vec<&str> = org.resource["endpoint"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reference"].as_str().unwrap())
        .collect();
    assert_eq!(
        refs,
        vec![format!("Endpoint/{fhir}"), format!("Endpoint/{direct}")]
    );
    let endpoint = repo.read(&who(), "Endpoint", &fhir).await.unwrap();
    assert_eq!(
        endpoint.resource["managingOrganization"]["reference"],
        format!("Organization/{}", p.id)
    );
    // A malformed address is refused and nothing is written.
    let err = repo
        .add_participant_endpoint(&who(), &p.id, EndpointKind::Mllp, "interface.example.org")
        .await
        .expect_err("refused");
    assert_eq!(err.status(), 400);
    assert_eq!(
        repo.participant_endpoints(&who(), &p.id)
            .await
            .unwrap()
            .len(),
        2
    );
    // An unknown participant is 404.
    let err = repo
        .add_participant_endpoint(
            &who(),
            "nobody",
            EndpointKind::Fhir,
            "https://x.example.org",
        )
        .await
        .expect_err("unknown");
    assert_eq!(err.status(), 404);
}

#[tokio::test]
async fn the_practitioners_of_many_participants_are_those_of_each_read_alone() {
    let repo = repo().await;
    // Twelve clinics (more than one query's ten), each with a practitioner; one practitioner in
    // two clinics; an inactive role that does not count.
    let mut clinics = Vec::new();
    for i in 0..12 {
        let p = clinic(format!("Clinic {i:02}"));
        clinics.push(repo.add_participant(&who(), &p).await.unwrap().id);
    }
    let practitioner = |id: &str| {
        serde_json::json!({"resourceType": "Practitioner", "id": id,
            "name": [{"family": id, "given": ["Test"]}]})
    };
    let role = |id: &str, practitioner: &str, clinic: &str, active: bool| {
        serde_json::json!({"resourceType": "PractitionerRole", "id": id, "active": active,
            "practitioner": {"reference": format!("Practitioner/{practitioner}")},
            "organization": {"reference": format!("Organization/{clinic}")}})
    };
    let put = |ty: &'static str, json: serde_json::Value| {
        let repo = &repo;
        async move {
            let id = json["id"].as_str().unwrap().to_string();
            repo.update(&who(), ty, &id, json, None).await.unwrap();
        }
    };
    for (i, clinic) in clinics.iter().enumerate() {
        let p = format!("prac-{i}");
        put("Practitioner", practitioner(&p)).await;
        put(
            "PractitionerRole",
            role(&format!("role-{i}"), &p, clinic, true),
        )
        .await;
    }
    put(
        "PractitionerRole",
        role("role-shared", "prac-1", &clinics[11], true),
    )
    .await;
    put("Practitioner", practitioner("prac-gone")).await;
    put(
        "PractitionerRole",
        role("role-old", "prac-gone", &clinics[0], false),
    )
    .await;

    let all = exchange::participants::practitioners_of_all(repo.store(), &clinics)
        .await
        .unwrap();
    for clinic in &clinics {
        let ids = |list: Vec<(String, serde_json::Value)>| {
            let mut ids: Vec<String> = list.into_iter().map(|(id, _)| id).collect();
            ids.sort();
            ids
        };
        let alone = exchange::participants::practitioners_of(repo.store(), clinic)
            .await
            .unwrap();
        assert_eq!(
            ids(all.get(clinic).cloned().unwrap_or_default()),
            ids(alone),
            "{clinic}"
        );
    }
    let ids_of = |clinic: &String| -> Vec<String> {
        let mut v: Vec<String> = all[clinic].iter().map(|(id, _)| id.clone()).collect();
        v.sort();
        v
    };
    assert_eq!(ids_of(&clinics[0]), vec!["prac-0"]);
    assert_eq!(ids_of(&clinics[11]), vec!["prac-1", "prac-11"]);
}
