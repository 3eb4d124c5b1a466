//! Latency statistics and the small parsers the command line needs.

use std::time::Duration;

/// The nearest-rank percentile (`p` in 0..=100) of sorted samples; zero when there are none.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Milliseconds with two decimals, for tables.
pub fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// Parses `20s`, `500ms`, `2m` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("not a duration: {text:?} (try 20s, 500ms, 2m)"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("not a duration: {text:?}"));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        for (p, expected) in [(50.0, 50), (99.0, 99), (100.0, 100), (0.0, 1), (99.9, 100)] {
            assert_eq!(
                percentile(&samples, p),
                Duration::from_millis(expected),
                "p{p}"
            );
        }
        assert_eq!(
            percentile(&[Duration::from_millis(7)], 99.0),
            Duration::from_millis(7)
        );
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }

    #[test]
    fn parses_durations() {
        for (text, expected) in [
            ("20s", Some(20_000)),
            ("500ms", Some(500)),
            ("2m", Some(120_000)),
            ("3", Some(3_000)),
            ("1.5s", Some(1_500)),
            ("soon", None),
            ("-1s", None),
        ] {
            assert_eq!(
                parse_duration(text).ok().map(|d| d.as_millis() as u64),
                expected,
                "{text}"
            );
        }
    }
}
