//! Logging set-up: `tracing` to stderr as text or JSON under the configured filter, plus the layer
//! that feeds the store's timing events into the metrics, and a panic hook that logs where a panic
//! happened but not its message (which may quote patient data).

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{Config, LogFormat};
use crate::metrics::{Metrics, StoreTimings};

/// Installs the global subscriber (once; later calls do nothing) and the panic hook.
pub fn init(config: &Config, metrics: &Metrics) {
    let mut filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info"));
    // These log statement parameters and headers at debug and trace level, which would put resource
    // contents and search values in the log: keep them quiet unless asked for by name.
    for quiet in ["tokio_postgres", "hyper", "rusqlite"] {
        if !config.log.contains(quiet) {
            if let Ok(directive) = format!("{quiet}=info").parse() {
                filter = filter.add_directive(directive);
            }
        }
    }
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let fmt = match config.log_format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    };
    let timings = StoreTimings::new(metrics.clone())
        .with_filter(Targets::new().with_target("store", tracing::Level::TRACE));
    let installed = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(timings)
        .try_init()
        .is_ok();
    if installed {
        std::panic::set_hook(Box::new(|info| {
            let location = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            tracing::error!(%location, "panic (its message is withheld: it may quote data)");
        }));
    }
}
