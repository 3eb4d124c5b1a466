//! Hand-rolled Prometheus metrics: request counts by interaction and status class, request latency
//! histograms by interaction, and store timings, rendered in the Prometheus text format at `/metrics`.
//!
//! Store timings come from the store's own `tracing` events (those that carry an `elapsed_us`
//! field): [`StoreTimings`] is a tracing layer that feeds them into a histogram, so the store needs
//! no knowledge of metrics.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Cumulative counts are computed when rendering; these are per bucket (the last is +Inf).
    buckets: [u64; 15],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        let slot = BUCKETS
            .iter()
            .position(|&upper| seconds <= upper)
            .unwrap_or(BUCKETS.len());
        self.buckets[slot] += 1;
        self.sum += seconds;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, upper) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i];
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{upper}\"}} {cumulative}");
        }
        cumulative += self.buckets[BUCKETS.len()];
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

#[derive(Debug, Default)]
struct Inner {
    requests: BTreeMap<(&'static str, &'static str), u64>,
    latency: BTreeMap<&'static str, Histogram>,
    store: BTreeMap<String, Histogram>,
}

/// The process's metrics. Cheap to clone; all clones share the numbers.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    inner: Arc<Mutex<Inner>>,
    in_flight: Arc<AtomicI64>,
}

/// Counts one request as in flight until dropped (also when the request is cancelled).
#[derive(Debug)]
pub struct InFlight(Arc<AtomicI64>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    pub fn new() -> Self {
        Metrics::default()
    }

    /// Marks a request as started; it is in flight until the guard is dropped.
    pub fn start(&self) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.in_flight.clone())
    }

    /// Counts one request of `interaction` that answered `status` after `elapsed`.
    pub fn request(&self, interaction: &'static str, status: u16, elapsed: Duration) {
        let class = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        *inner.requests.entry((interaction, class)).or_default() += 1;
        inner
            .latency
            .entry(interaction)
            .or_default()
            .observe(elapsed.as_secs_f64());
    }

    /// Records one store operation (`commit`, `health`...) that took `elapsed`.
    pub fn store(&self, operation: &str, elapsed: Duration) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if !inner.store.contains_key(operation) {
            inner
                .store
                .insert(operation.to_string(), Histogram::default());
        }
        if let Some(histogram) = inner.store.get_mut(operation) {
            histogram.observe(elapsed.as_secs_f64());
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        out.push_str("# HELP nutmeg_http_requests_in_flight HTTP requests being handled.\n");
        out.push_str("# TYPE nutmeg_http_requests_in_flight gauge\n");
        let _ = writeln!(
            out,
            "nutmeg_http_requests_in_flight {}",
            self.in_flight.load(Ordering::Relaxed)
        );
        out.push_str("# HELP nutmeg_http_requests_total HTTP requests by FHIR interaction and status class.\n");
        out.push_str("# TYPE nutmeg_http_requests_total counter\n");
        for ((interaction, class), n) in &inner.requests {
            let _ = writeln!(
                out,
                "nutmeg_http_requests_total{{interaction=\"{interaction}\",status=\"{class}\"}} {n}"
            );
        }
        out.push_str("# HELP nutmeg_http_request_duration_seconds HTTP request latency by FHIR interaction.\n");
        out.push_str("# TYPE nutmeg_http_request_duration_seconds histogram\n");
        for (interaction, histogram) in &inner.latency {
            histogram.render(
                &mut out,
                "nutmeg_http_request_duration_seconds",
                &format!("interaction=\"{interaction}\""),
            );
        }
        out.push_str("# HELP nutmeg_store_operation_duration_seconds Store operation latency.\n");
        out.push_str("# TYPE nutmeg_store_operation_duration_seconds histogram\n");
        for (operation, histogram) in &inner.store {
            histogram.render(
                &mut out,
                "nutmeg_store_operation_duration_seconds",
                &format!("operation=\"{}\"", escape(operation)),
            );
        }
        render_process(&mut out);
        out
    }
}

/// Resident and peak resident memory of this process, from `/proc/self/status` (Linux; elsewhere
/// nothing): the benchmarks read the peak.
fn render_process(out: &mut String) {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return;
    };
    let kib = |field: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
    };
    for (name, field, help) in [
        (
            "nutmeg_process_resident_memory_bytes",
            "VmRSS:",
            "Resident memory.",
        ),
        (
            "nutmeg_process_peak_resident_memory_bytes",
            "VmHWM:",
            "Peak resident memory.",
        ),
    ] {
        if let Some(value) = kib(field) {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
                value * 1024
            );
        }
    }
}

fn escape(label: &str) -> String {
    label
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect()
}

/// A tracing layer that turns the store's timing events (any event under the `store` target with
/// an `elapsed_us` or `elapsed_ms` field) into the store histogram, named by the event's message.
#[derive(Debug, Clone)]
pub struct StoreTimings {
    metrics: Metrics,
}

impl StoreTimings {
    pub fn new(metrics: Metrics) -> Self {
        StoreTimings { metrics }
    }
}

#[derive(Default)]
struct Timing {
    message: Option<String>,
    micros: Option<u64>,
}

impl Visit for Timing {
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "elapsed_us" => self.micros = Some(value),
            "elapsed_ms" => self.micros = Some(value.saturating_mul(1000)),
            _ => {}
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_u64(field, u64::try_from(value).unwrap_or(0));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = Some(value.to_string());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = Some(format!("{value:?}"));
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for StoreTimings {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if !event.metadata().target().starts_with("store") {
            return;
        }
        let mut timing = Timing::default();
        event.record(&mut timing);
        if let (Some(message), Some(micros)) = (timing.message, timing.micros) {
            self.metrics.store(&message, Duration::from_micros(micros));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let metrics = Metrics::new();
        metrics.request("read", 200, Duration::from_millis(3));
        metrics.request("read", 404, Duration::from_millis(30));
        let text = metrics.render();
        assert!(text.contains("nutmeg_http_requests_total{interaction=\"read\",status=\"2xx\"} 1"));
        assert!(text.contains("nutmeg_http_requests_total{interaction=\"read\",status=\"4xx\"} 1"));
        assert!(text.contains(
            "nutmeg_http_request_duration_seconds_bucket{interaction=\"read\",le=\"0.005\"} 1"
        ));
        assert!(text.contains(
            "nutmeg_http_request_duration_seconds_bucket{interaction=\"read\",le=\"+Inf\"} 2"
        ));
    }
}
