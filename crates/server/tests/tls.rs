//! HTTPS and the plain-HTTP rule, end to end: the real `nutmeg` binary with a self-signed
//! certificate made at test time, clients over real sockets and real TLS (trusting that
//! certificate, or not, or not speaking TLS at all), graceful shutdown over HTTPS, and the
//! start-up checks of certificates, keys and listening addresses.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{
    ClientConfig, ClientConnection, RootCertStore, StreamOwned, SupportedProtocolVersion,
};

const NUTMEG: &str = env!("CARGO_BIN_EXE_nutmeg");

/// A `nutmeg` command with no configuration leaking in from the environment.
fn nutmeg() -> Command {
    let mut command = Command::new(NUTMEG);
    for (name, _) in std::env::vars() {
        if name.starts_with("NUTMEG_") {
            command.env_remove(name);
        }
    }
    command
}

/// A self-signed certificate for localhost and 127.0.0.1, as PEM files in a temporary directory.
struct Certificate {
    dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    der: CertificateDer<'static>,
}

impl Certificate {
    fn new() -> Certificate {
        let dir = tempfile::tempdir().unwrap();
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                .unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, certified.cert.pem()).unwrap();
        std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
        Certificate {
            dir,
            cert,
            key,
            der: certified.cert.der().clone(),
        }
    }
}

/// A running server: its process and the `host:port` of the base URL it printed.
struct Server {
    child: Child,
    base: String,
    address: String,
}

impl Server {
    fn start(mut command: Command) -> Server {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("start nutmeg");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line.unwrap_or_default()).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(base) = line.strip_prefix("nutmeg listening on ") {
                        let base = base.trim().to_string();
                        let address = base
                            .split("://")
                            .nth(1)
                            .and_then(|rest| rest.split('/').next())
                            .unwrap()
                            .to_string();
                        return Server {
                            child,
                            base,
                            address,
                        };
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("nutmeg did not start listening");
                }
            }
        }
    }

    /// The address to connect to: an unspecified listening address is reached on loopback.
    fn connect_to(&self) -> String {
        let port = self.address.rsplit(':').next().unwrap();
        format!("127.0.0.1:{port}")
    }

    /// Waits for the process to exit; answers whether it exited successfully.
    fn wait(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            assert!(
                Instant::now() < deadline,
                "nutmeg did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serves HTTPS with `certificate`, logging (at info) to `nutmeg.log` in `data`.
fn serve_tls(data: &Path, certificate: &Certificate) -> Server {
    let mut command = nutmeg();
    let log = std::fs::File::create(data.join("nutmeg.log")).unwrap();
    command.stderr(log);
    command.args([
        "serve",
        "--http",
        "127.0.0.1:0",
        "--log",
        "info",
        "--auth",
        "none",
    ]);
    command.arg("--data-dir").arg(data);
    command.arg("--tls-cert").arg(&certificate.cert);
    command.arg("--tls-key").arg(&certificate.key);
    Server::start(command)
}

/// A TLS client that trusts `roots` only, offers HTTP/1.1 by ALPN, and speaks the given versions.
fn client(
    roots: &[&CertificateDer<'static>],
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add((*root).clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

fn trusting(certificate: &Certificate) -> Arc<ClientConfig> {
    client(&[&certificate.der], rustls::DEFAULT_VERSIONS)
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// Opens a connection and completes the handshake (so a rejected certificate is an error here).
fn connect(config: &Arc<ClientConfig>, address: &str) -> io::Result<Tls> {
    let name = ServerName::try_from("localhost").unwrap();
    let connection = ClientConnection::new(config.clone(), name).map_err(io::Error::other)?;
    let tcp = TcpStream::connect(address)?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut stream = StreamOwned::new(connection, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

/// Reads until the server closes the connection (a close without close_notify included).
fn read_all(stream: &mut impl Read) -> io::Result<String> {
    let mut bytes = Vec::new();
    let mut buffer = [0; 8192];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// GET over HTTPS: the status and the whole response text.
fn get(config: &Arc<ClientConfig>, address: &str, path: &str) -> io::Result<(u16, String)> {
    let mut stream = connect(config, address)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: application/fhir+json\r\nConnection: close\r\n\r\n"
    )?;
    stream.flush()?;
    let response = read_all(&mut stream)?;
    Ok((status(&response), response))
}

fn status(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

#[test]
fn https_answers_a_client_that_trusts_the_certificate_and_only_it() {
    let certificate = Certificate::new();
    let server = serve_tls(certificate.dir.path(), &certificate);
    assert!(
        server.base.starts_with("https://127.0.0.1:"),
        "{}",
        server.base
    );
    let address = server.connect_to();
    let trusted = trusting(&certificate);

    let (code, response) = get(&trusted, &address, "/healthz").unwrap();
    assert_eq!(code, 200, "{response}");
    let (code, response) = get(&trusted, &address, "/fhir/metadata").unwrap();
    assert_eq!(code, 200, "{response}");
    assert!(response.contains("CapabilityStatement"), "{response}");
    // The CapabilityStatement names the HTTPS base.
    assert!(response.contains(&server.base), "{response}");

    // TLS 1.3 by default, TLS 1.2 for a client that has nothing newer; HTTP/1.1 by ALPN.
    for (versions, expected) in [
        (rustls::DEFAULT_VERSIONS, rustls::ProtocolVersion::TLSv1_3),
        (
            &[&rustls::version::TLS12][..],
            rustls::ProtocolVersion::TLSv1_2,
        ),
    ] {
        let stream = connect(&client(&[&certificate.der], versions), &address).unwrap();
        assert_eq!(stream.conn.protocol_version(), Some(expected));
        assert_eq!(stream.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    }

    // A client that trusts another certificate refuses this one.
    let stranger = Certificate::new();
    let error = get(&trusting(&stranger), &address, "/healthz").unwrap_err();
    assert!(
        error.to_string().contains("invalid peer certificate"),
        "{error}"
    );

    // Plain HTTP to the HTTPS port gets no HTTP answer, let alone a FHIR one.
    let mut plain = TcpStream::connect(&address).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        plain,
        "GET /fhir/metadata HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let answer = read_all(&mut plain).unwrap_or_default();
    assert!(!answer.starts_with("HTTP/"), "{answer}");
    assert!(!answer.contains("CapabilityStatement"));

    // A client that connects and says nothing holds up no one else, and the failures above left
    // the server answering.
    let _silent = TcpStream::connect(&address).unwrap();
    let (code, _) = get(&trusted, &address, "/healthz").unwrap();
    assert_eq!(code, 200);

    // The failed handshakes are logged, by kind only: not what the client sent.
    let log = certificate.dir.path().join("nutmeg.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.matches("TLS handshake failed").count() >= 2 || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(text.matches("TLS handshake failed").count(), 2, "{text}");
    assert!(!text.contains("HTTP/1.1"), "{text}");
}

#[test]
fn https_finishes_an_in_flight_request_on_sigterm() {
    let certificate = Certificate::new();
    let mut server = serve_tls(certificate.dir.path(), &certificate);
    let address = server.connect_to();
    let trusted = trusting(&certificate);

    // A create whose body is still arriving when SIGTERM comes.
    let body = r#"{"resourceType":"Patient","id":"tls-1","name":[{"family":"Lindqvist"}]}"#;
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    let mut stream = connect(&trusted, &address).unwrap();
    write!(
        stream,
        "PUT /fhir/Patient/tls-1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/fhir+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(first).unwrap();
    stream.flush().unwrap();
    // Wait until the server is handling it (this /metrics request is the other one in flight).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !get(&trusted, &address, "/metrics")
        .unwrap()
        .1
        .contains("nutmeg_http_requests_in_flight 2")
    {
        assert!(Instant::now() < deadline, "the PUT never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server must wait for the request in flight; its log:\n{}",
        std::fs::read_to_string(certificate.dir.path().join("nutmeg.log")).unwrap_or_default()
    );
    stream.write_all(rest).unwrap();
    stream.flush().unwrap();
    let response = read_all(&mut stream).unwrap();
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    assert!(
        server.wait(Duration::from_secs(20)),
        "clean exit after SIGTERM"
    );
}

#[test]
fn the_certificate_and_key_may_come_from_the_environment() {
    let certificate = Certificate::new();
    let mut command = nutmeg();
    command.args(["serve", "--http", "localhost:0", "--log", "warn"]);
    command.arg("--data-dir").arg(certificate.dir.path());
    command.env("NUTMEG_TLS_CERT", &certificate.cert);
    command.env("NUTMEG_TLS_KEY", &certificate.key);
    command.stderr(Stdio::null());
    let server = Server::start(command);
    assert!(server.base.starts_with("https://"), "{}", server.base);
    let (code, _) = get(&trusting(&certificate), &server.connect_to(), "/healthz").unwrap();
    assert_eq!(code, 200);
}

/// Runs `nutmeg serve` with `args`, expecting it to refuse its configuration with each of
/// `expected` in one report (one problem each); answers the report.
fn check_refused(args: &[&str], expected: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let output: Output = nutmeg()
        .arg("serve")
        .args(args)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{args:?}:\n{stderr}");
    let header = format!("({} problems)", expected.len());
    assert!(
        stderr.contains(&header),
        "{args:?}: not {header}:\n{stderr}"
    );
    for expected in expected {
        assert!(
            stderr.contains(expected),
            "{args:?}: missing {expected:?} in:\n{stderr}"
        );
    }
    stderr.into_owned()
}

#[test]
fn tls_and_plain_http_problems_are_reported_at_once() {
    let certificate = Certificate::new();
    let stranger = Certificate::new();
    let (cert, key) = (
        certificate.cert.to_str().unwrap(),
        certificate.key.to_str().unwrap(),
    );
    let missing = certificate.dir.path().join("missing.pem");
    let missing = missing.to_str().unwrap();
    let unreadable = certificate.dir.path().to_str().unwrap();
    // Each run also has an unrelated problem, which must be reported beside the TLS ones.
    fn with<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["--http", "127.0.0.1:0", "--max-count", "none"];
        args.extend_from_slice(extra);
        args
    }

    check_refused(
        &with(&["--tls-cert", cert]),
        &["without tls_key", "max_count: 'none'"],
    );
    check_refused(
        &with(&["--tls-key", key]),
        &["without tls_cert", "max_count: 'none'"],
    );
    check_refused(
        &with(&["--tls-cert", missing, "--tls-key", unreadable]),
        &[
            &format!("cannot read {missing}"),
            &format!("cannot read {unreadable}"),
            "max_count: 'none'",
        ],
    );
    check_refused(
        &with(&["--tls-cert", key, "--tls-key", cert]),
        &[
            "holds no PEM certificate",
            "holds no PEM private key",
            "max_count: 'none'",
        ],
    );
    check_refused(
        &with(&[
            "--tls-cert",
            cert,
            "--tls-key",
            stranger.key.to_str().unwrap(),
        ]),
        &["does not belong to the certificate", "max_count: 'none'"],
    );
    for address in ["0.0.0.0:0", "[::]:0"] {
        let report = check_refused(
            &["--http", address, "--max-count", "none"],
            &["not a loopback address", "max_count: 'none'"],
        );
        // The report says how to fix it.
        for hint in ["--tls-cert and --tls-key", "--allow-plain-http"] {
            assert!(report.contains(hint), "no {hint} in:\n{report}");
        }
    }
}

#[test]
fn plain_http_off_loopback_starts_when_explicitly_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let with_flag = |command: &mut Command| {
        command.arg("--allow-plain-http");
    };
    let with_env = |command: &mut Command| {
        command.env("NUTMEG_ALLOW_PLAIN_HTTP", "true");
    };
    for allow in [&with_flag as &dyn Fn(&mut Command), &with_env] {
        let mut command = nutmeg();
        command.args(["serve", "--http", "0.0.0.0:0", "--log", "warn"]);
        command.arg("--data-dir").arg(dir.path());
        allow(&mut command);
        command.stderr(Stdio::null());
        let server = Server::start(command);
        assert!(
            server.base.starts_with("http://0.0.0.0:"),
            "{}",
            server.base
        );
        let mut stream = TcpStream::connect(server.connect_to()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(
            stream,
            "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let response = read_all(&mut stream).unwrap();
        assert_eq!(status(&response), 200, "{response}");
    }
}
