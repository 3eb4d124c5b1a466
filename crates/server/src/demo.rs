//! `nutmeg demo`: a fresh SQLite database in the data directory, filled through the repository with
//! the deterministic synthetic data (the provider directory, then one transaction per patient),
//! then served, with URLs to try that really answer on that data.
//!
//! With access control on (the default), the demo registers a live participant, "nutmeg Demo
//! Hospital", and a SMART Backend Services client of it with a fresh key in the data directory; the
//! patients are sent by that client (so the hospital has a treatment relationship with each), and
//! the demo prints the command that gets a token and the requests to try with it.

use std::time::Instant;

use anyhow::{bail, Context as _};
use exchange::access::{Principal, PurposeOfUse, Requester};
use exchange::participants::{Kind, NewParticipant, Status};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::cli::DemoArgs;
use crate::client::SigningKey;
use crate::config::{AuthMode, Config};
use crate::metrics::Metrics;
use crate::serve::{announce, bind, open_repository, run, shutdown_signal};

/// Patient bundles loaded at once.
const LOADERS: usize = 4;

pub async fn demo(mut config: Config, metrics: Metrics, args: DemoArgs) -> anyhow::Result<()> {
    let path = config.data_dir.join("nutmeg.db");
    if path.exists() {
        if !args.force {
            bail!(
                "{} already exists; pass --force to replace it, or choose another --data-dir",
                path.display()
            );
        }
        for suffix in ["", "-wal", "-shm"] {
            let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
            if file.exists() {
                std::fs::remove_file(&file)
                    .with_context(|| format!("cannot remove {}", file.display()))?;
            }
        }
    }
    config.database = format!("sqlite://{}", path.display());

    let (listener, base_url) = bind(&config).await?;
    let repo = open_repository(&config, &base_url).await?;
    let generator = synth::Generator::new(args.seed);
    let system = Requester::system("demo");
    let client = match config.auth {
        AuthMode::Smart => Some(register_client(&repo, &config, args.force).await?),
        AuthMode::None => None,
    };
    // The patients are sent by the demo hospital's client when there is one.
    let who = match &client {
        Some(c) => Requester::new(
            "demo",
            Principal::Client {
                client_id: c.client_id.clone(),
                participant: c.participant.clone(),
                scopes: auth::ScopeSet::parse(DEMO_SCOPES)?,
            },
            PurposeOfUse::Treat,
            true,
        ),
        None => system.clone(),
    };
    let progress = ProgressBar::new(args.patients + 1).with_style(
        ProgressStyle::with_template(
            "{spinner} loading [{bar:30}] {pos}/{len} bundles, {msg} ({elapsed})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let mut resources = 0usize;
    let directory = generator.directory();
    resources += synth::entry_count(&directory);
    repo.bundle(&system, directory)
        .await
        .map_err(|e| anyhow::anyhow!("loading the directory failed: {}", diagnostics(&e)))?;
    progress.inc(1);
    let mut sample = Sample::of(&generator.patient_bundle(0));
    // A participant's client creates Patients by conditional update (never `PUT Patient/[id]`), so
    // the exchange assigns their ids: the first patient's is read from its transaction's response.
    let as_participant = client.is_some();
    // Patient bundles are independent of each other: a few in flight keep the store busy.
    let mut tasks = tokio::task::JoinSet::new();
    let mut next = 0;
    while next < args.patients || !tasks.is_empty() {
        while next < args.patients && tasks.len() < LOADERS {
            let (repo, generator, who, index) =
                (repo.clone(), generator.clone(), who.clone(), next);
            tasks.spawn(async move {
                let mut bundle = generator.patient_bundle(index);
                if as_participant {
                    synth::as_participant(&mut bundle);
                }
                let count = synth::entry_count(&bundle);
                match repo.bundle(&who, bundle).await {
                    Ok(response) => Ok((count, index, patient_id_of(&response))),
                    Err(e) => Err(format!(
                        "loading patient {index} failed: {}",
                        diagnostics(&e)
                    )),
                }
            });
            next += 1;
        }
        match tasks.join_next().await {
            Some(Ok(Ok((count, index, id)))) => {
                resources += count;
                if let (0, Some(id), Some(sample)) = (index, id, sample.as_mut()) {
                    sample.patient_id = id;
                }
            }
            Some(Ok(Err(message))) => bail!(message),
            Some(Err(e)) => bail!("a loader stopped: {e}"),
            None => {}
        }
        progress.inc(1);
        let rate = resources as f64 / started.elapsed().as_secs_f64().max(0.001);
        progress.set_message(format!("{resources} resources, {rate:.0}/s"));
    }
    progress.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "nutmeg demo: {} patients, {resources} resources loaded into {} in {elapsed:.1} s",
        args.patients,
        path.display()
    );
    match &client {
        Some(client) => {
            let token_url = crate::http::smart::token_url_for(&base_url);
            println!(
                "Access control is on: {} (participant {}) has client {} with its key in {}.",
                DEMO_PARTICIPANT,
                client.participant,
                client.client_id,
                client.key.display()
            );
            println!("Get a token (it lasts five minutes) and try:");
            println!(
                "  TOKEN=$(nutmeg client token --client-id={} --key {} --token-url {token_url} --scope '{DEMO_SCOPES}')",
                client.client_id,
                client.key.display()
            );
            for url in urls(&base_url, sample.as_ref()) {
                println!("  curl -H \"Authorization: Bearer $TOKEN\" '{url}'");
            }
        }
        None => {
            println!("Try:");
            for url in urls(&base_url, sample.as_ref()) {
                println!("  {url}");
            }
        }
    }
    announce(&base_url);
    run(listener, repo, &config, metrics, None, shutdown_signal()).await
}

/// The demo hospital's name and what its client may do.
const DEMO_PARTICIPANT: &str = "nutmeg Demo Hospital";
const DEMO_SCOPES: &str = "system/*.cruds";

/// The demo hospital's client: its id, its participant and where its private key is.
struct DemoClient {
    client_id: String,
    participant: String,
    key: std::path::PathBuf,
}

/// Registers the demo hospital (live) and a client of it with a fresh P-384 key, written to
/// `DATA_DIR/demo-client/private-key.pem` (replaced with `--force`).
async fn register_client(
    repo: &exchange::repository::Repository,
    config: &Config,
    force: bool,
) -> anyhow::Result<DemoClient> {
    let who = Requester::system("demo");
    let hospital = repo
        .add_participant(
            &who,
            &NewParticipant {
                name: DEMO_PARTICIPANT.to_string(),
                kind: Kind::Hospital,
                npi: None,
                tax_id: None,
                licence: None,
                ehr: Some("nutmeg demo".to_string()),
                practitioner: None,
            },
        )
        .await
        .map_err(|e| {
            anyhow::anyhow!("registering the demo hospital failed: {}", diagnostics(&e))
        })?;
    for status in [Status::Onboarding, Status::Live] {
        repo.set_participant_status(&who, &hospital.id, status)
            .await
            .map_err(|e| anyhow::anyhow!("the demo hospital's status: {}", diagnostics(&e)))?;
    }
    let (key, pem) = SigningKey::generate_es384()?;
    let dir = config.data_dir.join("demo-client");
    let path = dir.join("private-key.pem");
    if path.exists() && force {
        std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    crate::client::write_private(&path, &pem)?;
    let client = repo
        .store()
        .register_client(store::NewClient {
            client_id: crate::admin::new_client_id()?,
            participant_id: hospital.id.clone(),
            keys: store::ClientKeys::Jwks(key.jwks().to_string()),
            scopes: DEMO_SCOPES.to_string(),
            created: crate::client::now() as i64,
        })
        .await?;
    Ok(DemoClient {
        client_id: client.client_id,
        participant: hospital.id,
        key: path,
    })
}

/// The id of the Patient a transaction response created or updated (`response.location`
/// `Patient/[id]/_history/[version]`).
fn patient_id_of(response: &Value) -> Option<String> {
    response["entry"].as_array()?.iter().find_map(|e| {
        let location = e["response"]["location"].as_str()?;
        let id = location.strip_prefix("Patient/")?;
        Some(id.split('/').next()?.to_string())
    })
}

/// What the printed URLs need from the first patient: its id, family name and one observation code.
#[derive(Debug, Clone)]
pub struct Sample {
    pub patient_id: String,
    pub family: String,
    pub code: Option<(String, String)>,
}

impl Sample {
    pub fn of(bundle: &Value) -> Option<Sample> {
        let entries = bundle.get("entry")?.as_array()?;
        let patient = entries
            .iter()
            .find(|e| e["resource"]["resourceType"] == "Patient")?;
        let url = patient["request"]["url"].as_str()?;
        let patient_id = url.strip_prefix("Patient/")?.to_string();
        let family = patient["resource"]["name"][0]["family"]
            .as_str()?
            .to_string();
        let code = entries
            .iter()
            .filter(|e| e["resource"]["resourceType"] == "Observation")
            .find_map(|e| {
                let coding = &e["resource"]["code"]["coding"][0];
                Some((
                    coding["system"].as_str()?.to_string(),
                    coding["code"].as_str()?.to_string(),
                ))
            });
        Some(Sample {
            patient_id,
            family,
            code,
        })
    }
}

/// The URLs to try: the CapabilityStatement, a Patient search by family name, the first patient's
/// `$everything`, and its observations of one code.
pub fn urls(base: &str, sample: Option<&Sample>) -> Vec<String> {
    let mut urls = vec![format!("{base}/metadata")];
    if let Some(sample) = sample {
        let id = &sample.patient_id;
        urls.push(format!("{base}/Patient?family={}", encode(&sample.family)));
        urls.push(format!("{base}/Patient/{id}/$everything"));
        if let Some((system, code)) = &sample.code {
            urls.push(format!(
                "{base}/Observation?patient={id}&code={}",
                encode(&format!("{system}|{code}"))
            ));
        }
    }
    urls
}

/// Percent-encodes everything but the unreserved characters.
pub fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The diagnostics of a repository error, for the operator (never logged).
pub fn diagnostics(error: &exchange::repository::Error) -> String {
    let issues = error.issues();
    let mut parts: Vec<String> = issues
        .iter()
        .take(5)
        .map(|i| i.diagnostics.clone())
        .collect();
    if issues.len() > 5 {
        parts.push(format!("and {} more", issues.len() - 5));
    }
    format!("{} {}", error.status(), parts.join("; "))
}
