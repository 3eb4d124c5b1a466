//! Break-the-glass notices as Direct messages: when an emergency request let a participant's data
//! leave, the repository writes a FHIR `Communication` to that participant
//! (`exchange::notices`) and, with a Direct `notice_address` configured, hands the notice here;
//! this sends the same words, from the exchange's own address, to the participant's Direct
//! addresses, so that a therapist who reads only the web inbox is told where they read their mail.
//!
//! The source's addresses: the Direct endpoints the registry lists for the participant (at any
//! HISP) and the active addresses issued here to its Organization; when there are none of either,
//! the active addresses issued to its practitioners (a solo practice's). The message goes through
//! the outbound queue like any other (signed and encrypted, retried, tracked). A source with no
//! address still has the Communication; a notice lost between the two (a crash) stays recorded
//! there.

use std::collections::{BTreeSet, HashSet};

use exchange::notices::{BreakGlass, MESSAGE_SUBJECT};
use exchange::participants::EndpointKind;
use exchange::repository::Repository;
use store::{AddressStatus, Store};

use super::{Hisp, Running};

/// Notices waiting to be sent; beyond this the repository logs that one was not sent on.
const QUEUE: usize = 1024;

/// Gives `repo` an outlet for its notices and sends each from `from` until `running` stops.
pub async fn start(
    running: &Running,
    repo: &Repository,
    hisp: Hisp,
    from: String,
) -> anyhow::Result<()> {
    if !is_active(hisp.store(), &from).await? {
        tracing::warn!(
            "smtp: the notice_address is not an active Direct address here (nutmeg admin direct \
             address add): break-the-glass notices will not be sent by Direct until it is"
        );
    }
    let (outlet, mut notices) = tokio::sync::mpsc::channel::<BreakGlass>(QUEUE);
    if !repo.send_notices_to(outlet) {
        tracing::warn!("smtp: the repository already sends its notices elsewhere");
        return Ok(());
    }
    let repo = repo.clone();
    let mut stop = running.stopped.subscribe();
    tokio::spawn(async move {
        loop {
            let notice = tokio::select! {
                n = notices.recv() => n,
                _ = stop.recv() => None,
            };
            let Some(notice) = notice else { break };
            match send(&repo, &hisp, &from, &notice).await {
                Ok(0) => tracing::info!(
                    request_id = %notice.request_id,
                    "smtp: the source of a break-the-glass notice has no Direct address"
                ),
                Ok(recipients) => tracing::info!(
                    request_id = %notice.request_id,
                    recipients,
                    "smtp: break-the-glass notice queued for the source"
                ),
                Err(e) => tracing::warn!(
                    request_id = %notice.request_id,
                    error = %e,
                    "smtp: a break-the-glass notice could not be queued"
                ),
            }
        }
    });
    Ok(())
}

/// Queues one notice from `from` to the source's addresses; answers how many.
pub async fn send(
    repo: &Repository,
    hisp: &Hisp,
    from: &str,
    notice: &BreakGlass,
) -> anyhow::Result<usize> {
    anyhow::ensure!(
        is_active(hisp.store(), from).await?,
        "the notice_address is not an active Direct address"
    );
    let to: Vec<String> = source_addresses(repo, hisp.store(), &notice.source)
        .await?
        .into_iter()
        .collect();
    if to.is_empty() {
        return Ok(0);
    }
    let body = exchange::notices::break_glass_text(notice);
    let content = format!(
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body}\r\n"
    );
    hisp.send(from, &to, MESSAGE_SUBJECT, content.as_bytes())
        .await?;
    Ok(to.len())
}

/// Whether `address` is an active address issued here.
async fn is_active(store: &Store, address: &str) -> Result<bool, store::StoreError> {
    Ok(store
        .direct_address(address)
        .await?
        .is_some_and(|a| a.status == AddressStatus::Active))
}

/// Where a participant reads its Direct mail (see the module documentation), lower case.
pub async fn source_addresses(
    repo: &Repository,
    store: &Store,
    participant: &str,
) -> anyhow::Result<BTreeSet<String>> {
    let system = exchange::access::Requester::system("break-the-glass notice");
    let mut out = BTreeSet::new();
    match repo.participant_endpoints(&system, participant).await {
        Ok(endpoints) => {
            for (_, kind, address) in endpoints {
                if kind == EndpointKind::Direct {
                    let address = address.strip_prefix("mailto:").unwrap_or(&address);
                    out.insert(address.to_ascii_lowercase());
                }
            }
        }
        Err(e) if e.status() == 404 => {}
        Err(e) => anyhow::bail!("the participant's endpoints: {e}"),
    }
    let issued = store.direct_addresses().await?;
    let active = issued.iter().filter(|a| a.status == AddressStatus::Active);
    out.extend(
        active
            .clone()
            .filter(|a| a.owner_kind == "organization" && a.owner_id == participant)
            .map(|a| a.address.clone()),
    );
    if out.is_empty() {
        let practitioners: HashSet<String> =
            exchange::participants::practitioners_of(store, participant)
                .await?
                .into_iter()
                .map(|(id, _)| id)
                .collect();
        out.extend(
            active
                .filter(|a| a.owner_kind == "practitioner" && practitioners.contains(&a.owner_id))
                .map(|a| a.address.clone()),
        );
    }
    Ok(out)
}
