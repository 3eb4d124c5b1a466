//! Messages per second to seal (sign + encrypt) and open (decrypt + verify + validate) a 100 KB
//! message with RSA-2048, beside the raw RSA-2048 private-key operations per second measured in the
//! same run (what `openssl speed rsa2048` reports as "sign/s"), which bounds both: each message
//! costs one private-key operation each way.
//!
//! `cargo run -p direct --release --example throughput -- [--seconds S] [--size BYTES] [--threads N]`
//!
//! Synthetic data only. Numbers mean something only on a quiet machine.

use std::time::{Duration, Instant};

use direct::ca::{self, Authority, Binding, CaConfig, KeySpec, Validity};
use direct::smime::{self, Outgoing, SealOptions, Signer};
use direct::trust::{Anchors, Validator};
use openssl::pkey::{PKey, Private};
use openssl::x509::{X509Crl, X509};

struct Args {
    seconds: f64,
    size: usize,
    threads: usize,
}

fn args() -> Result<Args, String> {
    let mut out = Args {
        seconds: 3.0,
        size: 100 * 1024,
        threads: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--seconds" => out.seconds = value.parse().map_err(|_| "bad --seconds")?,
            "--size" => out.size = value.parse().map_err(|_| "bad --size")?,
            "--threads" => out.threads = value.parse().map_err(|_| "bad --threads")?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    out.threads = out.threads.max(1);
    Ok(out)
}

/// Runs `op` on `threads` threads for about `seconds`; returns operations per second.
fn rate<F: Fn() + Sync>(seconds: f64, threads: usize, op: F) -> f64 {
    let budget = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let counts: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0u64;
                    while start.elapsed() < budget {
                        op();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).collect()
    });
    counts.iter().sum::<u64>() as f64 / start.elapsed().as_secs_f64()
}

fn content(size: usize) -> Vec<u8> {
    let mut body = b"Content-Type: text/plain; charset=us-ascii\r\n\r\n".to_vec();
    let line = b"Synthetic referral note for a synthetic patient; no real data here.\r\n";
    while body.len() < size {
        body.extend_from_slice(line);
    }
    body
}

struct Party {
    address: String,
    cert: X509,
    key: PKey<Private>,
}

fn party(
    authority: &Authority,
    address: &str,
    now: i64,
) -> Result<Party, Box<dyn std::error::Error>> {
    let key = ca::generate_key(KeySpec::Rsa(2048))?;
    let cert = authority.issue(
        &Binding::Address(address.to_owned()),
        &key,
        Validity::days_from(now - 60, 30),
    )?;
    Ok(Party {
        address: address.to_owned(),
        cert,
        key,
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let config = CaConfig {
        domain: "direct.example.org".into(),
        organization: "Nutmeg Benchmark HISP".into(),
        crl_url: Some("http://hisp.example.org/crl/direct.crl".into()),
        ca_issuers_url: Some("http://hisp.example.org/ca/direct.cer".into()),
        policy_oids: Vec::new(),
    };
    let authority = Authority::create_root(
        config,
        ca::generate_key(KeySpec::Rsa(2048))?,
        Validity::days_from(now - 60, 365),
    )?;
    let jane = party(&authority, "jane@direct.example.org", now)?;
    let bob = party(&authority, "bob@direct.example.org", now)?;
    let mut anchors = Anchors::new();
    anchors.add(authority.certificate().clone());
    let crls = vec![X509Crl::from_der(&authority.crl(
        &[],
        now - 60,
        now + 86_400,
        1,
    )?)?];
    let validator = Validator::new(&anchors, &crls, now);

    let content = content(args.size);
    let to = vec![bob.address.clone()];
    let msg = Outgoing {
        from: &jane.address,
        to: &to,
        subject: "Benchmark",
        message_id: "<bench@direct.example.org>",
        date: "Sun, 29 Nov 2026 04:00:00 +0000",
        extra_headers: &[],
        content: &content,
    };
    let signer = Signer {
        cert: &jane.cert,
        key: &jane.key,
        chain: &[],
    };
    let recipients = [bob.cert.clone()];
    let keys = [(bob.cert.clone(), bob.key.clone())];
    let options = SealOptions::default();
    let sealed = smime::seal(&msg, &signer, &recipients, options)?;
    smime::open(&sealed, &keys, &validator)?;

    println!(
        "message: {} bytes of content, {} bytes sealed; RSA-2048; AES-128-CBC; {} thread(s), {} s per measurement",
        content.len(),
        sealed.len(),
        args.threads,
        args.seconds
    );

    let digest = [7u8; 32];
    let raw = rate(args.seconds, args.threads, || {
        // One RSA-2048 private-key operation, as `openssl speed rsa2048` counts a sign.
        let mut s = match openssl::sign::Signer::new_without_digest(&jane.key) {
            Ok(s) => s,
            Err(_) => return,
        };
        let _ = s.sign_oneshot_to_vec(&digest);
    });
    let seal = rate(args.seconds, args.threads, || {
        let _ = smime::seal(&msg, &signer, &recipients, options);
    });
    let open = rate(args.seconds, args.threads, || {
        // The validator borrows per call; building one is cheap next to the RSA operation.
        let v = Validator::new(&anchors, &crls, now);
        let _ = smime::open(&sealed, &keys, &v);
    });
    println!("raw RSA-2048 private-key ops/s : {raw:>10.0}");
    println!(
        "seal (sign + encrypt) msgs/s   : {seal:>10.0}  ({:.0}% of the raw ceiling)",
        100.0 * seal / raw
    );
    println!(
        "open (decrypt + verify) msgs/s : {open:>10.0}  ({:.0}% of the raw ceiling)",
        100.0 * open / raw
    );
    Ok(())
}
