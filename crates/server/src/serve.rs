//! `nutmeg serve`: open the store, bind the listener, and serve the HTTP application (over TLS
//! when the configuration has a certificate) until SIGTERM or Ctrl-C, then finish the requests in
//! flight (for at most [`GRACE`]) and exit.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use axum::Router;
use exchange::access::DecisionPoint;
use exchange::repository::{Repository, RepositoryConfig};
use tokio::net::{TcpListener, TcpStream};

use crate::config::{AuthMode, Config};
use crate::http::smart::Smart;
use crate::http::{app, AppState};
use crate::metrics::Metrics;
use crate::tls::TlsListener;

/// How long shutdown waits for in-flight requests before giving up on them.
pub const GRACE: Duration = Duration::from_secs(30);

/// Opens the store the configuration names (creating the data directory of a SQLite database) and
/// builds the repository over it.
pub async fn open_repository(config: &Config, base_url: &str) -> anyhow::Result<Repository> {
    if let Some(rest) = config.database.strip_prefix("sqlite:") {
        let path = std::path::Path::new(rest.strip_prefix("//").unwrap_or(rest));
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create the directory {}", parent.display()))?;
        }
    }
    let store = store::Store::open(&config.database)
        .await
        // The URL may hold a password: name only the engine.
        .with_context(|| format!("cannot open the {} database", scheme(&config.database)))?;
    let gate = match config.auth {
        AuthMode::Smart => DecisionPoint::enforcing(store.clone()),
        AuthMode::None => DecisionPoint::new(),
    };
    Ok(Repository::new(
        store,
        RepositoryConfig {
            base_url: base_url.to_string(),
            default_count: config.default_count,
            max_count: config.max_count,
        },
        gate,
    ))
}

fn scheme(url: &str) -> &str {
    url.split(':').next().unwrap_or_default()
}

/// Binds the configured address; answers the listener and the FHIR base URL it serves.
pub async fn bind(config: &Config) -> anyhow::Result<(TcpListener, String)> {
    let listener = TcpListener::bind(config.http)
        .await
        .with_context(|| format!("cannot listen on {}", config.http))?;
    let bound = listener.local_addr()?;
    Ok((listener, config.base_url_for(bound)))
}

/// `nutmeg serve`.
pub async fn serve(config: Config, metrics: Metrics) -> anyhow::Result<()> {
    let (listener, base_url) = bind(&config).await?;
    let repo = open_repository(&config, &base_url).await?;
    tracing::info!(engine = repo.store().engine(), "store open");
    let direct = crate::smtp::start(&config, &repo).await?;
    let _purge = config
        .purge_interval
        .map(|every| crate::purge::spawn_periodic(crate::purge::job(&repo, &config), every));
    announce(&base_url);
    let hisp = direct.as_ref().map(|running| running.hisp.clone());
    run(listener, repo, &config, metrics, hisp, shutdown_signal()).await
}

/// Tells the operator (and tests, which read stdout) where the server listens.
pub fn announce(base_url: &str) {
    use std::io::Write as _;
    println!("nutmeg listening on {base_url}");
    let _ = std::io::stdout().flush();
}

/// Serves (HTTPS if the configuration has TLS) until `shutdown` completes, then lets in-flight
/// requests finish. `direct` is the HISP the web inbox uses, if Direct messaging runs.
pub async fn run(
    listener: TcpListener,
    repo: Repository,
    config: &Config,
    metrics: Metrics,
    direct: Option<crate::smtp::Hisp>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let base_url = config.base_url_for(listener.local_addr()?);
    let smart = Smart::open(repo.store(), &base_url)
        .await
        .context("cannot load the token signing key")?;
    let onboarding =
        exchange::onboarding::Onboarding::new(repo.clone(), config.service_levels.clone());
    let router = app(AppState {
        repo,
        onboarding,
        metrics,
        max_body: config.max_body,
        smart: Arc::new(smart),
        direct,
        mandate: config.mandate.clone(),
    });
    match &config.tls {
        Some(tls) => {
            tracing::info!(certificate = %tls.cert.display(), "serving HTTPS only");
            let listener = TlsListener::new(listener, tls.server.clone());
            serve_until(listener, router, shutdown).await
        }
        None => serve_until(PlainListener(listener), router, shutdown).await,
    }
}

async fn serve_until<L>(
    listener: L,
    router: Router,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()>
where
    L: Listener,
    L::Addr: std::fmt::Debug,
    Peer: for<'a> Connected<IncomingStream<'a, L>>,
{
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    // Each request carries its peer's address (for the audit trail) as `ConnectInfo`.
    let app = router.into_make_service_with_connect_info::<Peer>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = stopped.changed().await;
    });
    let mut server = std::pin::pin!(server.into_future());
    tokio::select! {
        result = &mut server => return result.context("the HTTP server failed"),
        () = shutdown => {}
    }
    tracing::info!("shutting down: finishing the requests in flight");
    let _ = stop.send(true);
    match tokio::time::timeout(GRACE, server).await {
        Ok(result) => result.context("the HTTP server failed")?,
        Err(_) => tracing::warn!("requests still in flight after the grace period were abandoned"),
    }
    tracing::info!("stopped");
    Ok(())
}

/// Completes on SIGTERM or Ctrl-C (SIGINT).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// The address of the client at the other end of the connection (plain or TLS), which the server
/// attaches to each request as `ConnectInfo<Peer>` for the audit trail.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// The plain-HTTP listener: TCP with Nagle's algorithm off, so that small responses go out at once
/// instead of waiting for delayed ACKs.
pub struct PlainListener(pub TcpListener);

impl Listener for PlainListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        let (tcp, peer) = Listener::accept(&mut self.0).await;
        let _ = tcp.set_nodelay(true);
        (tcp, peer)
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Listener::local_addr(&self.0)
    }
}

impl Connected<IncomingStream<'_, PlainListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, PlainListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}
