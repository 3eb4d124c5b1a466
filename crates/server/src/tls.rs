//! HTTPS for the HTTP listener: the rustls server configuration built from PEM files (checked at
//! start-up with the rest of the configuration), and [`TlsListener`], which completes handshakes
//! beside the accept loop so that a slow, silent or broken client delays no other connection.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use rustls::pki_types::pem::{self, PemObject as _};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a client has to complete its handshake: without a limit, a client that connects and
/// says nothing would hold a task and a socket for ever.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress at once; past this the listener stops accepting until one finishes, so a
/// flood of connections that never complete costs bounded memory.
const MAX_HANDSHAKES: usize = 1024;

/// The certificate chain and key the server presents, ready for rustls.
#[derive(Debug, Clone)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub server: Arc<ServerConfig>,
}

/// Why a certificate and key cannot be served. Never shows key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display())]
    NoCertificate { path: PathBuf },
    #[error(
        "{} holds no PEM private key (PKCS#8 PRIVATE KEY, PKCS#1 RSA PRIVATE KEY or SEC1 EC PRIVATE KEY)",
        path.display()
    )]
    NoKey { path: PathBuf },
    #[error("{} is not valid PEM: {source}", path.display())]
    Pem { path: PathBuf, source: pem::Error },
    #[error(
        "the private key in {} does not belong to the certificate in {}",
        key.display(),
        cert.display()
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("cannot serve the certificate {} with the key {}: {source}", cert.display(), key.display())]
    Unusable {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
}

/// Reads the certificate chain (first the server's own certificate, then its issuers) and the
/// private key, and checks that they belong together; answers every problem found.
pub fn load(cert: &Path, key: &Path) -> Result<Tls, Vec<TlsError>> {
    let mut problems = Vec::new();
    let chain = read(cert, &mut problems).and_then(|text| certificates(cert, &text, &mut problems));
    let private = read(key, &mut problems).and_then(|text| private_key(key, &text, &mut problems));
    let (Some(chain), Some(private)) = (chain, private) else {
        return Err(problems);
    };
    match server_config(chain, private) {
        Ok(server) => Ok(Tls {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            server: Arc::new(server),
        }),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(vec![TlsError::KeyMismatch {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            }])
        }
        Err(source) => Err(vec![TlsError::Unusable {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            source,
        }]),
    }
}

fn read(path: &Path, problems: &mut Vec<TlsError>) -> Option<Vec<u8>> {
    std::fs::read(path)
        .map_err(|source| {
            problems.push(TlsError::Read {
                path: path.to_path_buf(),
                source,
            });
        })
        .ok()
}

fn certificates(
    path: &Path,
    text: &[u8],
    problems: &mut Vec<TlsError>,
) -> Option<Vec<CertificateDer<'static>>> {
    let chain = CertificateDer::pem_slice_iter(text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| {
            problems.push(TlsError::Pem {
                path: path.to_path_buf(),
                source,
            });
        })
        .ok()?;
    if chain.is_empty() {
        problems.push(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
        return None;
    }
    Some(chain)
}

fn private_key(
    path: &Path,
    text: &[u8],
    problems: &mut Vec<TlsError>,
) -> Option<PrivateKeyDer<'static>> {
    match PrivateKeyDer::from_pem_slice(text) {
        Ok(key) => Some(key),
        Err(pem::Error::NoItemsFound) => {
            problems.push(TlsError::NoKey {
                path: path.to_path_buf(),
            });
            None
        }
        Err(source) => {
            problems.push(TlsError::Pem {
                path: path.to_path_buf(),
                source,
            });
            None
        }
    }
}

/// TLS 1.3 and 1.2 with ring's algorithms (aws-lc-rs would need a C and assembler build), HTTP/1.1
/// as the one application protocol (the server speaks nothing else).
fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        // Also checks that the key is the certificate's.
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A TCP listener that hands axum only connections whose TLS handshake completed.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    timeout: Duration,
    /// Dropped with the listener at shutdown, which abandons handshakes still in progress.
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, server: Arc<ServerConfig>) -> TlsListener {
        TlsListener::with_timeout(tcp, server, HANDSHAKE_TIMEOUT)
    }

    pub fn with_timeout(
        tcp: TcpListener,
        server: Arc<ServerConfig>,
        timeout: Duration,
    ) -> TlsListener {
        TlsListener {
            tcp,
            acceptor: TlsAcceptor::from(server),
            timeout,
            handshakes: JoinSet::new(),
        }
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            // Both branches are cancel-safe: axum drops this future when shutdown begins.
            tokio::select! {
                (tcp, peer) = Listener::accept(&mut self.tcp), if self.handshakes.len() < MAX_HANDSHAKES => {
                    // Small responses go out at once instead of waiting on Nagle's algorithm.
                    let _ = tcp.set_nodelay(true);
                    self.handshakes.spawn(handshake(self.acceptor.clone(), tcp, peer, self.timeout));
                }
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    match done {
                        Ok(Some(connection)) => return connection,
                        Ok(None) => {}
                        Err(e) => tracing::error!(error = %e, "a TLS handshake task failed"),
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// One handshake, bounded by `timeout`. Failures are logged by kind only (the client's address
/// and what it sent stay out of the log).
async fn handshake(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    timeout: Duration,
) -> Option<(TlsStream<TcpStream>, SocketAddr)> {
    match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => Some((stream, peer)),
        Ok(Err(e)) => {
            tracing::info!(error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::info!(timeout_s = timeout.as_secs_f64(), "TLS handshake timed out");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};

    use super::*;

    /// A self-signed certificate for localhost in a fresh directory: (dir, cert path, key path).
    fn self_signed() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, certified.cert.pem()).unwrap();
        std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
        (dir, cert, key)
    }

    /// Loads `cert` and `key`, answering the problems as text.
    fn check(cert: &Path, key: &Path, expected: &[&str]) {
        let problems: Vec<String> = match load(cert, key) {
            Ok(_) => Vec::new(),
            Err(problems) => problems.iter().map(ToString::to_string).collect(),
        };
        assert_eq!(problems.len(), expected.len(), "{problems:#?}");
        for (problem, expected) in problems.iter().zip(expected) {
            assert!(problem.contains(expected), "{problem:?} lacks {expected:?}");
        }
    }

    #[test]
    fn certificates_and_keys_are_checked() {
        let (dir, cert, key) = self_signed();
        let (_other_dir, _, other_key) = self_signed();
        let missing = dir.path().join("missing.pem");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "-----BEGIN CERTIFICATE-----\n!!!!\n").unwrap();
        check(&cert, &key, &[]);
        // One file with both, as some tools write them.
        let both = dir.path().join("both.pem");
        let text =
            std::fs::read_to_string(&cert).unwrap() + &std::fs::read_to_string(&key).unwrap();
        std::fs::write(&both, text).unwrap();
        check(&both, &both, &[]);
        check(&missing, &missing, &["cannot read", "cannot read"]);
        check(
            &key,
            &cert,
            &["holds no PEM certificate", "holds no PEM private key"],
        );
        check(&cert, &other_key, &["does not belong to the certificate"]);
        check(&junk, &key, &["is not valid PEM"]);
    }

    /// The TLV at the start of `der`: (its value, the rest after it). Short and long lengths only,
    /// which is all a P-256 PKCS#8 document uses.
    fn tlv(der: &[u8]) -> (&[u8], &[u8]) {
        let (length, header) = match der[1] {
            n if n < 0x80 => (usize::from(n), 2),
            0x81 => (usize::from(der[2]), 3),
            _ => (usize::from(der[2]) << 8 | usize::from(der[3]), 4),
        };
        (&der[header..header + length], &der[header + length..])
    }

    #[test]
    fn a_sec1_ec_key_is_read() {
        // rcgen writes PKCS#8 only; its privateKey OCTET STRING is the SEC1 ECPrivateKey.
        let dir = tempfile::tempdir().unwrap();
        let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        let cert = params.self_signed(&key_pair).unwrap();
        let (pkcs8, _) = tlv(key_pair.serialized_der());
        let (_version, rest) = tlv(pkcs8);
        let (_algorithm, rest) = tlv(rest);
        let (sec1, _) = tlv(rest);
        let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, sec1);
        let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(
            &key_path,
            format!("-----BEGIN EC PRIVATE KEY-----\n{encoded}\n-----END EC PRIVATE KEY-----\n"),
        )
        .unwrap();
        let key = PrivateKeyDer::from_pem_file(&key_path).unwrap();
        assert!(matches!(key, PrivateKeyDer::Sec1(_)));
        check(&cert_path, &key_path, &[]);
    }

    // Several threads: the blocking clients below wait on handshakes that run on the runtime.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_silent_client_is_dropped_after_the_timeout_and_delays_nobody() {
        let (_dir, cert, key) = self_signed();
        let tls = load(&cert, &key).unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = tcp.local_addr().unwrap();
        let mut listener =
            TlsListener::with_timeout(tcp, tls.server.clone(), Duration::from_millis(300));
        let silent = std::thread::spawn(move || {
            let mut stream = std::net::TcpStream::connect(address).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let started = std::time::Instant::now();
            // The server closes the connection: end of file (or a reset), not the read timeout.
            let _ = stream.read(&mut [0; 16]);
            started.elapsed()
        });
        let client = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(&cert).unwrap() {
                roots.add(cert.unwrap()).unwrap();
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            let name = "localhost".try_into().unwrap();
            let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
            let tcp = std::net::TcpStream::connect(address).unwrap();
            let mut stream = rustls::StreamOwned::new(connection, tcp);
            stream.write_all(b"ping").unwrap();
            stream.flush().unwrap();
        });
        let (mut io, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
            .await
            .expect("the second client's handshake completes while the first is silent");
        let mut buffer = [0; 4];
        tokio::io::AsyncReadExt::read_exact(&mut io, &mut buffer)
            .await
            .unwrap();
        assert_eq!(&buffer, b"ping");
        client.join().unwrap();
        let waited = silent.join().unwrap();
        assert!(waited < Duration::from_secs(5), "held for {waited:?}");
    }
}
