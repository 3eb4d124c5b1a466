//! Rate limits for the portal's public forms, per client address: the compliance self-lookup (which
//! answers whether a licence number and an NPI belong together, so must not be enumerated), the
//! connection application and the EHR catalog's request form (which store what they are sent).
//!
//! A fixed window per address: at most `limit` requests in each `window`; the next is refused with
//! 429 and `Retry-After` until the window ends. The counts live in this process's memory (at most
//! [`MAX_ADDRESSES`] addresses, IPv6 ones by their /64; when full, windows that have ended are
//! dropped, and if none has, some address is), so several processes behind one name each apply the limit. A request
//! without a known client address (not over the network) is not limited. The exchange serves HTTPS
//! itself; behind a reverse proxy every request would share the proxy's address, which is why the
//! limits are generous for one person and small for a script.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;

use super::html::{page, respond};

/// The most addresses remembered at once.
pub const MAX_ADDRESSES: usize = 100_000;

/// The compliance self-lookup: 30 per address in 10 minutes.
pub fn lookups() -> &'static Limiter {
    static L: OnceLock<Limiter> = OnceLock::new();
    L.get_or_init(|| Limiter::new(30, Duration::from_secs(600)))
}

/// The connection application: 30 sendings per address an hour (a form with mistakes, sent
/// again, counts each time).
pub fn applications() -> &'static Limiter {
    static L: OnceLock<Limiter> = OnceLock::new();
    L.get_or_init(|| Limiter::new(30, Duration::from_secs(3600)))
}

/// The EHR catalog's request form: 30 per address an hour.
pub fn catalog_requests() -> &'static Limiter {
    static L: OnceLock<Limiter> = OnceLock::new();
    L.get_or_init(|| Limiter::new(30, Duration::from_secs(3600)))
}

/// What an address is counted as: an IPv4 address itself, an IPv6 address by its /64 (one
/// subscriber's network: anyone with one has all of it).
fn key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::from(octets)
        }
    }
}

/// One form's limit.
pub struct Limiter {
    limit: u32,
    window: Duration,
    seen: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl Limiter {
    pub fn new(limit: u32, window: Duration) -> Limiter {
        Limiter {
            limit,
            window,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a request from `address` at `now`: `Ok` if it may go on, or `Err(seconds)` until the
    /// address may try again.
    pub fn check_at(&self, address: Option<IpAddr>, now: Instant) -> Result<(), u64> {
        let Some(address) = address.map(key) else {
            return Ok(());
        };
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= MAX_ADDRESSES && !seen.contains_key(&address) {
            let window = self.window;
            seen.retain(|_, (start, _)| now.duration_since(*start) < window);
            if seen.len() >= MAX_ADDRESSES {
                if let Some(any) = seen.keys().next().copied() {
                    seen.remove(&any);
                }
            }
        }
        let entry = seen.entry(address).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        if entry.1 >= self.limit {
            let left = self.window.saturating_sub(now.duration_since(entry.0));
            return Err(left.as_secs().max(1));
        }
        entry.1 += 1;
        Ok(())
    }

    /// [`Limiter::check_at`] now: `None` if the request may go on, or the refusal as a page
    /// (429 with `Retry-After`).
    pub fn refusal(&self, address: Option<IpAddr>) -> Option<Response> {
        self.check_at(address, Instant::now()).err().map(|seconds| {
            let mut response = respond(
                StatusCode::TOO_MANY_REQUESTS,
                page(
                    "Too many requests",
                    &format!(
                        "<h1>Too many requests</h1>\n<p>This form was sent too often from your \
                         address. Please try again in {} minute(s).</p>\n",
                        seconds.div_ceil(60)
                    ),
                ),
                &[],
            );
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_gets_its_window_and_no_more() {
        let limiter = Limiter::new(3, Duration::from_secs(60));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let t = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check_at(Some(a), t), Ok(()));
        }
        assert_eq!(
            limiter.check_at(Some(a), t + Duration::from_secs(20)),
            Err(40)
        );
        assert_eq!(
            limiter.check_at(Some(b), t),
            Ok(()),
            "another address has its own"
        );
        assert_eq!(
            limiter.check_at(Some(a), t + Duration::from_secs(60)),
            Ok(()),
            "a new window"
        );
        assert_eq!(limiter.check_at(None, t), Ok(()), "not over the network");
        let v6 = |text: &str| Some(text.parse::<IpAddr>().unwrap());
        assert_eq!(limiter.check_at(v6("2001:db8::1"), t), Ok(()));
        assert_eq!(limiter.check_at(v6("2001:db8::2"), t), Ok(()));
        assert_eq!(limiter.check_at(v6("2001:db8::ffff:3"), t), Ok(()));
        assert!(
            limiter.check_at(v6("2001:db8::4"), t).is_err(),
            "one /64 is one subscriber"
        );
        assert_eq!(limiter.check_at(v6("2001:db8:0:1::1"), t), Ok(()));
    }

    #[test]
    fn the_memory_is_bounded() {
        let limiter = Limiter::new(1, Duration::from_secs(60));
        let t = Instant::now();
        for i in 0..(MAX_ADDRESSES as u32 + 10) {
            let address = IpAddr::from(i.to_be_bytes());
            assert_eq!(limiter.check_at(Some(address), t), Ok(()));
        }
        assert!(limiter.seen.lock().unwrap().len() <= MAX_ADDRESSES);
    }
}
