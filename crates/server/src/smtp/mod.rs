//! Direct secure messaging over SMTP: nutmeg as a HISP.
//!
//! - [`hisp`]: the use cases (who may receive, what an inbound message becomes, sealing and
//!   delivering what goes out, notifications and their effect on delivery status);
//! - [`server`]: the inbound ESMTP listener (`nutmeg serve --smtp`), wire only;
//! - [`submission`]: SMTP submission for signed-in portal users (`nutmeg serve --submission`);
//! - [`client`]: outbound SMTP to the next HISP (pooled connections, STARTTLS);
//! - [`dns`]: a small stub resolver (UDP, TCP when truncated) with configurable nameservers;
//! - [`discovery`]: outside recipients' certificates (DNS CERT, LDAP) and mail hosts (MX);
//! - [`worker`]: the delivery loop over the store's outbound queue;
//! - [`config`]: the Direct configuration file (`--direct-config`);
//! - [`admin`]: `nutmeg admin direct` (CA, addresses, anchors, CRL);
//! - [`notices`]: break-the-glass notices sent as Direct messages to the source's addresses.

pub mod admin;
pub mod client;
pub mod config;
pub mod discovery;
pub mod dns;
pub mod hisp;
pub mod notices;
pub mod server;
pub mod submission;
pub mod worker;

pub use hisp::{Hisp, HispConfig, Route};

use std::time::Duration;

use anyhow::Context as _;

/// The running SMTP listener and delivery worker; both stop when this is dropped.
#[derive(Debug)]
pub struct Running {
    /// Where the listener is bound.
    pub address: std::net::SocketAddr,
    /// Where the submission listener is bound, if there is one.
    pub submission: Option<std::net::SocketAddr>,
    /// The HISP both serve (the web inbox sends and opens messages through it).
    pub hisp: Hisp,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// Tells every listener and the worker to stop.
    stopped: tokio::sync::broadcast::Sender<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts Direct messaging if the configuration has a Direct configuration file: binds the SMTP
/// listener (STARTTLS with the HTTPS certificate, if any) and starts the delivery worker.
pub async fn start(
    config: &crate::config::Config,
    repo: &exchange::repository::Repository,
) -> anyhow::Result<Option<Running>> {
    let Some(path) = &config.direct_config else {
        return Ok(None);
    };
    let (hisp_config, kek, crls) = self::config::load(path)?;
    let listener = tokio::net::TcpListener::bind(config.smtp)
        .await
        .with_context(|| format!("cannot listen for SMTP on {}", config.smtp))?;
    let tls = config
        .tls
        .as_ref()
        .map(|t| server::starttls_config(&t.server));
    let submission = match config.submission {
        Some(address) => Some(
            tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen for SMTP submission on {address}"))?,
        ),
        None => None,
    };
    let onboarding =
        exchange::onboarding::Onboarding::new(repo.clone(), config.service_levels.clone());
    let hisp = Hisp::new(repo.store().clone(), hisp_config, kek, crls).with_onboarding(onboarding);
    let mut running = spawn(listener, hisp.clone(), tls.clone())?;
    if let Some(from) = hisp.config().notice_address.clone() {
        notices::start(&running, repo, hisp.clone(), from).await?;
    }
    if let Some(listener) = submission {
        running.submission = Some(spawn_submission(&running, listener, hisp, tls)?);
    }
    Ok(Some(running))
}

/// Serves SMTP submission on `listener` (STARTTLS with `tls`, then AUTH PLAIN) until `running`
/// is dropped. Answers where it is bound.
pub fn spawn_submission(
    running: &Running,
    listener: tokio::net::TcpListener,
    hisp: Hisp,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
) -> anyhow::Result<std::net::SocketAddr> {
    let address = listener.local_addr()?;
    let mut stop = running.stopped.subscribe();
    tokio::spawn(async move {
        let stop = async move {
            let _ = stop.recv().await;
        };
        if let Err(e) =
            server::serve_mode(listener, hisp, tls, server::Mode::Submission, stop).await
        {
            tracing::error!(error = %e, "smtp: the submission listener failed");
        }
    });
    tracing::info!(%address, "smtp: listening for submission");
    Ok(address)
}

/// Serves SMTP on `listener` and runs the delivery worker (polling every second) until the
/// answer is dropped.
pub fn spawn(
    listener: tokio::net::TcpListener,
    hisp: Hisp,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
) -> anyhow::Result<Running> {
    let address = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut server_stop = tx.subscribe();
    let tx_workers = tx.clone();
    let stopping = tx.clone();
    tokio::spawn(async move {
        let _ = stopped.await;
        let _ = tx.send(());
    });
    let server_hisp = hisp.clone();
    tokio::spawn(async move {
        let stop = async move {
            let _ = server_stop.recv().await;
        };
        if let Err(e) = server::serve(listener, server_hisp, tls, stop).await {
            tracing::error!(error = %e, "smtp: the listener failed");
        }
    });
    for _ in 0..hisp.config().workers.max(1) {
        let mut worker_stop = tx_workers.subscribe();
        tokio::spawn(worker::run(
            hisp.clone(),
            Duration::from_secs(1),
            async move {
                let _ = worker_stop.recv().await;
            },
        ));
    }
    tracing::info!(%address, "smtp: listening for Direct mail");
    Ok(Running {
        address,
        submission: None,
        hisp,
        stop: Some(stop),
        stopped: stopping,
    })
}
