//! The outbound delivery worker: claims due rows of the queue (under a lease, so that several
//! nutmeg processes sharing PostgreSQL never send one row twice and a crashed process's rows are
//! taken again when its lease runs out), delivers them, and sleeps until something is queued or
//! the poll interval passes.

use std::future::Future;
use std::time::Duration;

use super::hisp::Hisp;

/// Rows claimed per pass.
const BATCH: usize = 32;

/// Runs the worker until `shutdown` completes. `poll` bounds how long a row queued by another
/// process (or due for a retry) waits.
pub async fn run(hisp: Hisp, poll: Duration, shutdown: impl Future<Output = ()>) {
    let owner = format!(
        "{}/{}/{}",
        hisp.config().hostname,
        std::process::id(),
        uuid::Uuid::new_v4()
    );
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let handled = tokio::select! {
            r = hisp.run_once(&owner, BATCH) => r,
            () = &mut shutdown => return,
        };
        let idle = match handled {
            Ok(n) => n < BATCH,
            Err(e) => {
                tracing::warn!(error = %e, "direct: delivery worker pass failed");
                true
            }
        };
        if idle {
            tokio::select! {
                () = hisp.wake().notified() => {}
                () = tokio::time::sleep(poll) => {}
                () = &mut shutdown => return,
            }
        }
    }
}
