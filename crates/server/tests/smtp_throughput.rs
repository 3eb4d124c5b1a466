//! Direct throughput (issue 6, section 9), ignored by default:
//!
//! ```sh
//! cargo test --release -p server --test smtp_throughput -- --ignored --nocapture
//! ```
//!
//! Outbound: messages of 100 KB queued durably (SQLite), then signed, encrypted (RSA-2048,
//! AES-128-CBC, wrapped) and handed over by SMTP to a local sink by the delivery worker, timed
//! from the first queueing to the sink's last receipt. Inbound: messages already sealed to a local
//! address sent over concurrent SMTP connections and decrypted, verified, stored and answered
//! with a queued processed notification before the 250 reply, timed to the last reply; and then
//! until the sink has every processed notification (signed and encrypted too). Compared with
//! `openssl speed rsa2048` (the RSA-2048 private-key operations per second the machine can do).
//! `NUTMEG_BENCH_MESSAGES` sets the count (default 400). The process allocates with mimalloc, as
//! the `nutmeg` binary does (with the system allocator the numbers are different: BENCHMARKS.md).

// The allocator of the `nutmeg` binary (crates/server/src/main.rs), so that this measures what the
// product runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use direct::ca::{self, Authority, Binding, CaConfig, KeySpec, Validity};
use direct::keys::Kek;
use direct::smime::{self, Outgoing, SealOptions, Signer};
use server::smtp::hisp::{certificate_record, fingerprint, now_ms};
use server::smtp::{Hisp, HispConfig, Route};
use store::{AnchorDirection, Store, TrustAnchor};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

fn authority(domain: &str) -> Authority {
    let config = CaConfig {
        domain: domain.to_string(),
        organization: "bench".to_string(),
        crl_url: None,
        ca_issuers_url: None,
        policy_oids: Vec::new(),
    };
    let key = ca::generate_key(KeySpec::Rsa(2048)).unwrap();
    Authority::create_root(
        config,
        key,
        Validity::days_from(now_ms() / 1000 - 86_400, 3650),
    )
    .unwrap()
}

/// A sink that accepts everything, counting messages.
async fn sink(count: Arc<AtomicUsize>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut conn = BufReader::new(tcp);
                conn.get_mut().write_all(b"220 sink\r\n").await.ok()?;
                let mut line = Vec::new();
                loop {
                    line.clear();
                    if conn.read_until(b'\n', &mut line).await.ok()? == 0 {
                        return Some(());
                    }
                    let reply: &[u8] = match line.get(..4).map(|v| v.to_ascii_uppercase()) {
                        Some(v) if v == b"DATA" => {
                            conn.get_mut().write_all(b"354 go\r\n").await.ok()?;
                            loop {
                                line.clear();
                                if conn.read_until(b'\n', &mut line).await.ok()? == 0 {
                                    return Some(());
                                }
                                if line == b".\r\n" {
                                    break;
                                }
                            }
                            count.fetch_add(1, Ordering::SeqCst);
                            b"250 OK\r\n"
                        }
                        Some(v) if v == b"QUIT" => {
                            conn.get_mut().write_all(b"221 bye\r\n").await.ok()?;
                            return Some(());
                        }
                        _ => b"250 OK\r\n",
                    };
                    conn.get_mut().write_all(reply).await.ok()?;
                }
            });
        }
    });
    address
}

fn rsa2048_sign_per_second() -> Option<f64> {
    let out = std::process::Command::new("openssl")
        .args(["speed", "-seconds", "3", "rsa2048"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "rsa 2048 bits 0.000255s 0.000007s   3921.6 135000.0"
    let line = text
        .lines()
        .find(|l| l.starts_with("rsa 2048") || l.starts_with("rsa  2048"))?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    fields.get(fields.len().checked_sub(2)?)?.parse().ok()
}

/// CPU time this process has used (user and system, all threads), from `/proc/self/stat`
/// (clock ticks of 10 ms); `None` where there is no `/proc`.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name (in parentheses, which may hold spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let (user, system): (u64, u64) = (fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?);
    Some(Duration::from_millis((user + system) * 10))
}

async fn wait_for(count: &AtomicUsize, n: usize) {
    while count.load(Ordering::SeqCst) < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement; run with --ignored --nocapture (in release)"]
async fn direct_throughput() {
    let n: usize = std::env::var("NUTMEG_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("b.db").display()))
        .await
        .unwrap();
    let (local, remote) = ("direct.bench.test", "other.bench.test");
    let (jane_addr, bob_addr) = ("jane@direct.bench.test", "bob@other.bench.test");
    let (local_ca, remote_ca) = (authority(local), authority(remote));
    let validity = Validity::days_from(now_ms() / 1000 - 86_400, 365);
    let jane_key = ca::generate_key(KeySpec::Rsa(2048)).unwrap();
    let jane = local_ca
        .issue(&Binding::Address(jane_addr.into()), &jane_key, validity)
        .unwrap();
    let bob_key = ca::generate_key(KeySpec::Rsa(2048)).unwrap();
    let bob = remote_ca
        .issue(&Binding::Address(bob_addr.into()), &bob_key, validity)
        .unwrap();
    let kek = Kek::from_base64(&Kek::generate_base64().unwrap()).unwrap();
    let t = now_ms();
    store
        .add_direct_address(jane_addr, "practitioner", "p", "Jane", t)
        .await
        .unwrap();
    store
        .add_direct_certificate(
            certificate_record(&jane, jane_addr, Some((&kek, &jane_key)), t).unwrap(),
        )
        .await
        .unwrap();
    store
        .add_direct_certificate(certificate_record(&bob, bob_addr, None, t).unwrap())
        .await
        .unwrap();
    for direction in [AnchorDirection::Inbound, AnchorDirection::Outbound] {
        store
            .add_trust_anchor(TrustAnchor {
                domain: local.into(),
                direction,
                fingerprint: fingerprint(remote_ca.certificate()).unwrap(),
                cert_pem: String::from_utf8(remote_ca.certificate().to_pem().unwrap()).unwrap(),
                added: t,
            })
            .await
            .unwrap();
    }
    let delivered = Arc::new(AtomicUsize::new(0));
    let sink_address = sink(delivered.clone()).await;
    let mut config = HispConfig::new(vec![local.to_string()], "hisp.bench.test");
    config.routes = vec![Route::new(remote, &sink_address.to_string())];
    let hisp = Hisp::new(store.clone(), config, kek, Vec::new());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let smtp = listener.local_addr().unwrap();
    let _running = server::smtp::spawn(listener, hisp.clone(), None).unwrap();

    // A 100 KB text body.
    let mut content = b"Content-Type: text/plain; charset=us-ascii\r\n\r\n".to_vec();
    while content.len() < 100 * 1024 {
        content.extend_from_slice(
            b"The quick brown fox jumps over the lazy dog; the patient is stable.\r\n",
        );
    }

    // Outbound.
    let cpu_started = cpu_time();
    let started = Instant::now();
    for i in 0..n {
        hisp.send(
            jane_addr,
            &[bob_addr.to_string()],
            &format!("Bench {i}"),
            &content,
        )
        .await
        .unwrap();
    }
    let queued = started.elapsed();
    wait_for(&delivered, n).await;
    let outbound = started.elapsed();
    let outbound_cpu = cpu_time().zip(cpu_started).map(|(b, a)| b - a);
    // Each phase says when it starts, so that a profiler can be attached to one.
    eprintln!("phase: outbound done; sealing the inbound messages");

    // Inbound: sealed beforehand (Bob's side, not measured).
    let messages: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let to = [jane_addr.to_string()];
            smime::seal(
                &Outgoing {
                    from: bob_addr,
                    to: &to,
                    subject: "Bench",
                    message_id: &format!("<in-{i}@other.bench.test>"),
                    date: "Sun, 29 Nov 2026 08:00:00 +0000",
                    extra_headers: &[],
                    content: &content,
                },
                &Signer {
                    cert: &bob,
                    key: &bob_key,
                    chain: &[],
                },
                std::slice::from_ref(&jane),
                SealOptions {
                    wrap: true,
                    ..SealOptions::default()
                },
            )
            .map(|m| server::smtp::client::data_block(&m))
            .unwrap()
        })
        .collect();
    let before_mdns = delivered.load(Ordering::SeqCst);
    let connections = 8;
    let messages = Arc::new(messages);
    let next = Arc::new(AtomicUsize::new(0));
    eprintln!("phase: inbound");
    let cpu_started = cpu_time();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (messages, next) = (messages.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = BufReader::new(TcpStream::connect(smtp).await.unwrap());
            let mut line = String::new();
            async fn reply(conn: &mut BufReader<TcpStream>, line: &mut String) -> String {
                loop {
                    line.clear();
                    conn.read_line(line).await.unwrap();
                    if line.as_bytes().get(3) != Some(&b'-') {
                        return line.clone();
                    }
                }
            }
            reply(&mut conn, &mut line).await;
            conn.get_mut().write_all(b"EHLO bench\r\n").await.unwrap();
            reply(&mut conn, &mut line).await;
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(m) = messages.get(i) else { break };
                conn.get_mut()
                    .write_all(b"MAIL FROM:<bob@other.bench.test>\r\nRCPT TO:<jane@direct.bench.test>\r\nDATA\r\n")
                    .await
                    .unwrap();
                for _ in 0..3 {
                    reply(&mut conn, &mut line).await;
                }
                conn.get_mut().write_all(m).await.unwrap();
                let done = reply(&mut conn, &mut line).await;
                assert!(done.starts_with("250"), "{done}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let inbound = started.elapsed();
    wait_for(&delivered, before_mdns + n).await;
    let inbound_with_mdns = started.elapsed();
    let inbound_cpu = cpu_time().zip(cpu_started).map(|(b, a)| b - a);
    let per = |cpu: Option<Duration>| {
        cpu.map_or("unknown".to_string(), |c| {
            format!("{:.2} ms", c.as_secs_f64() * 1000.0 / n as f64)
        })
    };

    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    let ceiling = rsa2048_sign_per_second();
    println!(
        "messages: {n} of {} bytes, RSA-2048, AES-128-CBC, wrapped; SQLite; mimalloc",
        content.len()
    );
    println!("outbound: queued in {queued:.2?}; signed, encrypted and handed over by SMTP: {:.0} messages/s", rate(outbound));
    println!("inbound: received over {connections} connections (decrypt, verify, store, MDN queued): {:.0} messages/s", rate(inbound));
    println!(
        "inbound with the processed MDNs signed, encrypted and handed over: {:.0} messages/s",
        rate(inbound_with_mdns)
    );
    println!(
        "CPU time per message (this process, all threads; the sink and the inbound client included): outbound {}, inbound with its MDN {}",
        per(outbound_cpu),
        per(inbound_cpu)
    );
    if let Some(per_core) = ceiling {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let c = per_core * cores;
        println!(
            "openssl speed rsa2048: {per_core:.0} private-key operations/s on one core; {cores} cores: ceiling {c:.0}/s"
        );
        // A message out is one private-key operation (sign); in, two (decrypt, and sign the MDN).
        println!(
            "outbound at {:.0}% of the ceiling (1 private-key operation each); inbound with its MDN at {:.0}% of half of it (2 each)",
            100.0 * rate(outbound) / c,
            100.0 * rate(inbound_with_mdns) / (c / 2.0)
        );
    }
}
