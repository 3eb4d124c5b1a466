//! The server's configuration: one typed [`Config`] built from defaults, a TOML file (`--config`),
//! `NUTMEG_*` environment variables and flags (flags win over the environment, which wins over the
//! file), validated at start-up with every problem reported at once. That includes the transport
//! rule: HTTPS when a certificate and key are given, plain HTTP only on loopback unless allowed.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::tls::Tls;

/// The default `--max-body`: 16 MiB, enough for large transaction bundles.
pub const DEFAULT_MAX_BODY: usize = 16 * 1024 * 1024;
pub const DEFAULT_HTTP: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "./nutmeg-data";
pub const DEFAULT_COUNT: usize = 20;
pub const DEFAULT_MAX_COUNT: usize = 1000;
/// The default `--smtp` address (used when a Direct configuration is given).
pub const DEFAULT_SMTP: &str = "127.0.0.1:2525";
/// How often `serve` runs the consent purge, in seconds, unless configured: hourly.
pub const DEFAULT_PURGE_INTERVAL_SECS: u64 = 3600;

/// The settings every command shares, as given on the command line or in the environment. All are
/// text here so that a bad value is one more problem in the report instead of an early exit.
#[derive(Args, Debug, Clone, Default)]
pub struct Settings {
    /// A TOML file with any of the settings below (keys as the flags, with `_` or `-`).
    #[arg(long, env = "NUTMEG_CONFIG", global = true, hide_env_values = true)]
    pub config: Option<PathBuf>,
    /// `sqlite://PATH` or `postgres://USER@HOST:PORT/DB` [default: sqlite://DATA_DIR/nutmeg.db].
    #[arg(long, env = "NUTMEG_DATABASE", global = true, hide_env_values = true)]
    pub database: Option<String>,
    /// The directory of the default SQLite database [default: ./nutmeg-data].
    #[arg(long, env = "NUTMEG_DATA_DIR", global = true, hide_env_values = true)]
    pub data_dir: Option<String>,
    /// The address the HTTP server listens on; plain HTTP only on loopback (127.0.0.0/8, ::1,
    /// localhost) unless --tls-cert/--tls-key or --allow-plain-http [default: 127.0.0.1:8080].
    #[arg(long, env = "NUTMEG_HTTP", global = true, hide_env_values = true)]
    pub http: Option<String>,
    /// The public base URL of the FHIR API [default: http://HTTP/fhir, https://HTTP/fhir with TLS].
    #[arg(long, env = "NUTMEG_BASE_URL", global = true, hide_env_values = true)]
    pub base_url: Option<String>,
    /// A PEM file with the server's certificate, then any intermediates: with --tls-key, the
    /// server speaks HTTPS (only) on --http.
    #[arg(long, env = "NUTMEG_TLS_CERT", global = true, hide_env_values = true)]
    pub tls_cert: Option<String>,
    /// A PEM file with the private key of --tls-cert (PKCS#8, PKCS#1 RSA or SEC1 EC).
    #[arg(long, env = "NUTMEG_TLS_KEY", global = true, hide_env_values = true)]
    pub tls_key: Option<String>,
    /// Serve plain HTTP on a non-loopback address, e.g. behind a proxy that terminates TLS on a
    /// private network [default: false].
    #[arg(
        long,
        env = "NUTMEG_ALLOW_PLAIN_HTTP",
        global = true,
        hide_env_values = true,
        value_name = "BOOL",
        num_args = 0..=1,
        // Without `=`, a following word is the subcommand, not a value.
        require_equals = true,
        default_missing_value = "true"
    )]
    pub allow_plain_http: Option<String>,
    /// How API requests are authenticated: `smart` (SMART Backend Services bearer tokens, the
    /// default) or `none` (every request is anonymous and every access is permitted; for local
    /// development and benchmarks only, refused on a non-loopback address) [default: smart].
    #[arg(long, env = "NUTMEG_AUTH", global = true, hide_env_values = true)]
    pub auth: Option<String>,
    /// The largest request body accepted, in bytes (`KiB`/`MiB` suffixes allowed) [default: 16MiB].
    #[arg(long, env = "NUTMEG_MAX_BODY", global = true, hide_env_values = true)]
    pub max_body: Option<String>,
    /// Search page size when the client gives no `_count` [default: 20].
    #[arg(
        long,
        env = "NUTMEG_DEFAULT_COUNT",
        global = true,
        hide_env_values = true
    )]
    pub default_count: Option<String>,
    /// The largest `_count` honoured [default: 1000].
    #[arg(long, env = "NUTMEG_MAX_COUNT", global = true, hide_env_values = true)]
    pub max_count: Option<String>,
    /// The log filter, as for `RUST_LOG` [default: info].
    #[arg(long, env = "NUTMEG_LOG", global = true, hide_env_values = true)]
    pub log: Option<String>,
    /// `text` or `json` [default: text].
    #[arg(long, env = "NUTMEG_LOG_FORMAT", global = true, hide_env_values = true)]
    pub log_format: Option<String>,
    /// The address the Direct SMTP listener binds when --direct-config is given (STARTTLS with
    /// --tls-cert/--tls-key) [default: 127.0.0.1:2525].
    #[arg(long, env = "NUTMEG_SMTP", global = true, hide_env_values = true)]
    pub smtp: Option<String>,
    /// With --direct-config, also listen for SMTP submission (port 587 style) here: portal users
    /// who own a Direct address send with a mail client, AUTH PLAIN after STARTTLS (which needs
    /// --tls-cert/--tls-key) [default: none].
    #[arg(long, env = "NUTMEG_SUBMISSION", global = true, hide_env_values = true)]
    pub submission: Option<String>,
    /// A TOML file configuring Direct secure messaging (domains, key-encryption key, routes);
    /// with it, `serve` also runs the SMTP listener and the delivery worker.
    #[arg(
        long,
        env = "NUTMEG_DIRECT_CONFIG",
        global = true,
        hide_env_values = true
    )]
    pub direct_config: Option<String>,
    /// Business days (Monday to Friday) after a patient's opt-out before the consent purge
    /// deletes their clinical data [default: 5].
    #[arg(
        long,
        env = "NUTMEG_PURGE_WINDOW_DAYS",
        global = true,
        hide_env_values = true
    )]
    pub purge_window_days: Option<String>,
    /// Seconds between runs of the consent purge in `serve`; 0 turns the periodic purge off
    /// (run `nutmeg admin consent purge` instead) [default: 3600].
    #[arg(
        long,
        env = "NUTMEG_PURGE_INTERVAL",
        global = true,
        hide_env_values = true
    )]
    pub purge_interval: Option<String>,
    /// Onboarding service levels: days allowed for a checklist step after the step before it,
    /// as STEP=DAYS pairs separated by commas (`package-sent=10,agreements-signed=30`); those
    /// given replace the defaults, the others stay [default: package-sent=10,
    /// agreements-signed=30, endpoints-registered=60, test-messages-passed=60, live=30,
    /// direct-address-issued=5, test-message-exchanged=14].
    #[arg(
        long,
        env = "NUTMEG_SERVICE_LEVELS",
        global = true,
        hide_env_values = true
    )]
    pub service_levels: Option<String>,
    /// A TOML file with the state's mandate to connect (who must do what by when, and who is
    /// exempt), in the shape of `crates/onboard/mandates/connecticut.toml` [default: Connecticut's].
    #[arg(long, env = "NUTMEG_MANDATE", global = true, hide_env_values = true)]
    pub mandate: Option<String>,
}

/// How API requests are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// Bearer tokens from `/auth/token` (SMART Backend Services), and the exchange's access rules.
    #[default]
    Smart,
    /// Nobody is authenticated and the decision point permits everything (reads are still
    /// audited, as anonymous). Loopback only.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The database URL (`sqlite://...` or `postgres://...`).
    pub database: String,
    pub data_dir: PathBuf,
    pub http: SocketAddr,
    /// `None` until the listener is bound: then it defaults to `http://ADDR/fhir` (`https://`
    /// with TLS).
    pub base_url: Option<String>,
    /// HTTPS (only) on `http` when set.
    pub tls: Option<Tls>,
    /// Plain HTTP on a non-loopback address was explicitly allowed.
    pub allow_plain_http: bool,
    pub auth: AuthMode,
    pub max_body: usize,
    pub default_count: usize,
    pub max_count: usize,
    pub log: String,
    pub log_format: LogFormat,
    /// Where the Direct SMTP listener binds (with `direct_config`).
    pub smtp: SocketAddr,
    /// Where the SMTP submission listener binds, if anywhere (with `direct_config` and TLS).
    pub submission: Option<SocketAddr>,
    /// The Direct configuration file; `None`: no SMTP listener.
    pub direct_config: Option<PathBuf>,
    /// Business days after an opt-out before the purge deletes the patient's clinical data.
    pub purge_window_days: u32,
    /// How often `serve` runs the purge; `None`: never (only `nutmeg admin consent purge`).
    pub purge_interval: Option<std::time::Duration>,
    /// Days allowed for each onboarding step after the one before it (overdue after that).
    pub service_levels: onboard::workflow::ServiceLevels,
    /// The mandate the compliance report and the providers' lookup apply (Connecticut's unless
    /// `mandate` names a file).
    pub mandate: std::sync::Arc<onboard::mandate::Mandate>,
}

impl Config {
    /// The base URL of the FHIR API for a server listening on `bound`.
    pub fn base_url_for(&self, bound: SocketAddr) -> String {
        match &self.base_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => {
                let scheme = if self.tls.is_some() { "https" } else { "http" };
                format!("{scheme}://{bound}/fhir")
            }
        }
    }

    /// A configuration for tests: an in-process server over `database`, with open access (tests
    /// of access control run the binary with tokens).
    pub fn for_database(database: impl Into<String>) -> Config {
        Config {
            database: database.into(),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            http: DEFAULT_HTTP.parse().expect("the default address parses"),
            base_url: None,
            tls: None,
            allow_plain_http: false,
            auth: AuthMode::None,
            max_body: DEFAULT_MAX_BODY,
            default_count: DEFAULT_COUNT,
            max_count: DEFAULT_MAX_COUNT,
            log: "info".into(),
            log_format: LogFormat::Text,
            smtp: DEFAULT_SMTP.parse().expect("the default address parses"),
            submission: None,
            direct_config: None,
            purge_window_days: exchange::purge::DEFAULT_WINDOW_DAYS,
            purge_interval: None,
            service_levels: onboard::workflow::ServiceLevels::default(),
            mandate: std::sync::Arc::new(onboard::mandate::Mandate::connecticut()),
        }
    }
}

/// Every problem found in the configuration, one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub Vec<String>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration ({} problems):", self.0.len())?;
        for problem in &self.0 {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// The keys a configuration file may hold.
const FILE_KEYS: &[&str] = &[
    "database",
    "data_dir",
    "http",
    "base_url",
    "tls_cert",
    "tls_key",
    "allow_plain_http",
    "auth",
    "max_body",
    "default_count",
    "max_count",
    "log",
    "log_format",
    "smtp",
    "submission",
    "direct_config",
    "purge_window_days",
    "purge_interval",
    "service_levels",
    "mandate",
];

impl Settings {
    /// Merges the file (if any) under these settings and validates the result.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let file = match &self.config {
            Some(path) => read_file(path, &mut problems),
            None => Settings::default(),
        };
        let merged = self.clone().over(file);
        merged.validate(problems)
    }

    /// Fills every unset field from `lower`.
    fn over(self, lower: Settings) -> Settings {
        Settings {
            config: self.config,
            database: self.database.or(lower.database),
            data_dir: self.data_dir.or(lower.data_dir),
            http: self.http.or(lower.http),
            base_url: self.base_url.or(lower.base_url),
            tls_cert: self.tls_cert.or(lower.tls_cert),
            tls_key: self.tls_key.or(lower.tls_key),
            allow_plain_http: self.allow_plain_http.or(lower.allow_plain_http),
            auth: self.auth.or(lower.auth),
            max_body: self.max_body.or(lower.max_body),
            default_count: self.default_count.or(lower.default_count),
            max_count: self.max_count.or(lower.max_count),
            log: self.log.or(lower.log),
            log_format: self.log_format.or(lower.log_format),
            smtp: self.smtp.or(lower.smtp),
            submission: self.submission.or(lower.submission),
            direct_config: self.direct_config.or(lower.direct_config),
            purge_window_days: self.purge_window_days.or(lower.purge_window_days),
            purge_interval: self.purge_interval.or(lower.purge_interval),
            service_levels: self.service_levels.or(lower.service_levels),
            mandate: self.mandate.or(lower.mandate),
        }
    }

    fn validate(self, mut problems: Vec<String>) -> Result<Config, ConfigError> {
        let data_dir = PathBuf::from(self.data_dir.as_deref().unwrap_or(DEFAULT_DATA_DIR));
        let database = match self.database {
            Some(url) => {
                check_database(&url, &mut problems);
                url
            }
            None => format!("sqlite://{}", data_dir.join("nutmeg.db").display()),
        };
        let http_text = self.http.as_deref().unwrap_or(DEFAULT_HTTP);
        let http = match parse_address(http_text) {
            Some(addr) => Some(addr),
            None => {
                problems.push(format!(
                    "http: '{http_text}' is not a socket address like 127.0.0.1:8080 or localhost:8080"
                ));
                None
            }
        };
        let tls_given = self.tls_cert.is_some() || self.tls_key.is_some();
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => match crate::tls::load(Path::new(&cert), Path::new(&key)) {
                Ok(tls) => Some(tls),
                Err(errors) => {
                    problems.extend(errors.iter().map(|e| format!("tls: {e}")));
                    None
                }
            },
            (Some(_), None) => {
                problems.push(
                    "tls_cert is given without tls_key: HTTPS needs both (--tls-cert and --tls-key)"
                        .into(),
                );
                None
            }
            (None, Some(_)) => {
                problems.push(
                    "tls_key is given without tls_cert: HTTPS needs both (--tls-cert and --tls-key)"
                        .into(),
                );
                None
            }
            (None, None) => None,
        };
        let allow_plain_http = match self.allow_plain_http.as_deref() {
            None => false,
            Some(text) => parse_bool(text).unwrap_or_else(|| {
                problems.push(format!(
                    "allow_plain_http: '{text}' is neither true nor false"
                ));
                false
            }),
        };
        // A half-given or broken TLS setting is reported above; this would only repeat it.
        if let Some(addr) = http.filter(|_| !tls_given && !allow_plain_http) {
            if !addr.ip().to_canonical().is_loopback() {
                problems.push(format!(
                    "http: plain HTTP on {addr}, which is not a loopback address, would carry \
                     patient data unencrypted over the network; give --tls-cert and --tls-key to \
                     serve HTTPS there, listen on 127.0.0.1 behind a proxy that terminates TLS, or \
                     pass --allow-plain-http if the network is protected otherwise"
                ));
            }
        }
        let auth = match self.auth.as_deref() {
            None | Some("smart") => AuthMode::Smart,
            Some("none") => AuthMode::None,
            Some(other) => {
                problems.push(format!("auth: '{other}' is neither 'smart' nor 'none'"));
                AuthMode::Smart
            }
        };
        if let Some(addr) = http.filter(|_| auth == AuthMode::None) {
            if !addr.ip().to_canonical().is_loopback() {
                problems.push(format!(
                    "auth: 'none' lets anyone on the network read and write every record; it is \
                     allowed only on a loopback address, not on {addr}"
                ));
            }
        }
        let base_url = self.base_url.map(|url| {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                problems.push(format!(
                    "base_url: '{url}' must be an absolute http:// or https:// URL"
                ));
            }
            url.trim_end_matches('/').to_string()
        });
        let max_body = match self.max_body.as_deref() {
            None => Some(DEFAULT_MAX_BODY),
            Some(text) => match parse_size(text) {
                Some(0) | None => {
                    problems.push(format!(
                        "max_body: '{text}' is not a positive size in bytes (e.g. 16777216 or 16MiB)"
                    ));
                    None
                }
                size => size,
            },
        };
        let default_count = count(
            "default_count",
            self.default_count,
            DEFAULT_COUNT,
            &mut problems,
        );
        let max_count = count(
            "max_count",
            self.max_count,
            DEFAULT_MAX_COUNT,
            &mut problems,
        );
        if let (Some(default), Some(max)) = (default_count, max_count) {
            if default > max {
                problems.push(format!(
                    "default_count ({default}) is larger than max_count ({max})"
                ));
            }
        }
        let log = self.log.unwrap_or_else(|| "info".into());
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&log) {
            problems.push(format!("log: '{log}' is not a log filter: {e}"));
        }
        let log_format = match self.log_format.as_deref() {
            None | Some("text") => Some(LogFormat::Text),
            Some("json") => Some(LogFormat::Json),
            Some(other) => {
                problems.push(format!(
                    "log_format: '{other}' is neither 'text' nor 'json'"
                ));
                None
            }
        };
        let smtp_text = self.smtp.as_deref().unwrap_or(DEFAULT_SMTP);
        let smtp = parse_address(smtp_text).unwrap_or_else(|| {
            problems.push(format!(
                "smtp: '{smtp_text}' is not a socket address like 127.0.0.1:2525"
            ));
            DEFAULT_SMTP.parse().expect("the default address parses")
        });
        let submission = self.submission.as_deref().and_then(|text| {
            let parsed = parse_address(text);
            if parsed.is_none() {
                problems.push(format!(
                    "submission: '{text}' is not a socket address like 127.0.0.1:5870"
                ));
            }
            parsed
        });
        let direct_config = self.direct_config.map(PathBuf::from);
        if submission.is_some() && (direct_config.is_none() || tls.is_none()) {
            problems.push(
                "submission: needs --direct-config and --tls-cert/--tls-key (AUTH only after STARTTLS)"
                    .to_string(),
            );
        }
        let purge_window_days = match self.purge_window_days.as_deref() {
            None => exchange::purge::DEFAULT_WINDOW_DAYS,
            Some(text) => match text.trim().parse::<u32>() {
                Ok(n) if n <= 365 => n,
                _ => {
                    problems.push(format!(
                        "purge_window_days: '{text}' is not a whole number of business days from 0 to 365"
                    ));
                    exchange::purge::DEFAULT_WINDOW_DAYS
                }
            },
        };
        let purge_interval = match self.purge_interval.as_deref() {
            None => Some(std::time::Duration::from_secs(DEFAULT_PURGE_INTERVAL_SECS)),
            Some(text) => match text.trim().parse::<u64>() {
                Ok(0) => None,
                Ok(n) => Some(std::time::Duration::from_secs(n)),
                Err(_) => {
                    problems.push(format!(
                        "purge_interval: '{text}' is not a whole number of seconds (0 turns the periodic purge off)"
                    ));
                    None
                }
            },
        };
        let service_levels = match self.service_levels.as_deref() {
            None => onboard::workflow::ServiceLevels::default(),
            Some(text) => parse_service_levels(text, &mut problems),
        };
        let mandate = match self.mandate.as_deref() {
            None => onboard::mandate::Mandate::connecticut(),
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) => match onboard::mandate::Mandate::parse(&text) {
                    Ok(mandate) => mandate,
                    Err(e) => {
                        problems.push(format!("mandate: {path}: {e}"));
                        onboard::mandate::Mandate::connecticut()
                    }
                },
                Err(e) => {
                    problems.push(format!("mandate: cannot read {path}: {e}"));
                    onboard::mandate::Mandate::connecticut()
                }
            },
        };
        match (http, max_body, default_count, max_count, log_format) {
            (
                Some(http),
                Some(max_body),
                Some(default_count),
                Some(max_count),
                Some(log_format),
            ) if problems.is_empty() => Ok(Config {
                database,
                data_dir,
                http,
                base_url,
                tls,
                allow_plain_http,
                auth,
                max_body,
                default_count,
                max_count,
                log,
                log_format,
                smtp,
                submission,
                direct_config,
                purge_window_days,
                purge_interval,
                service_levels,
                mandate: std::sync::Arc::new(mandate),
            }),
            _ => Err(ConfigError(problems)),
        }
    }
}

/// `IP:PORT`, `[IPv6]:PORT`, or `localhost:PORT` (as 127.0.0.1, so that it never depends on how
/// the machine resolves the name).
fn parse_address(text: &str) -> Option<SocketAddr> {
    match text.strip_prefix("localhost:") {
        Some(port) => Some(SocketAddr::from(([127, 0, 0, 1], port.parse().ok()?))),
        None => text.parse().ok(),
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

fn check_database(url: &str, problems: &mut Vec<String>) {
    if let Some(rest) = url.strip_prefix("sqlite:") {
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.is_empty() {
            problems.push("database: 'sqlite://' needs a file path".into());
        }
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        if !cfg!(feature = "postgres") {
            problems.push("database: this build has no PostgreSQL engine".into());
        }
    } else {
        // Only the scheme: the rest may hold a password.
        let scheme = url.split(':').next().unwrap_or_default();
        problems.push(format!(
            "database: unknown scheme '{scheme}' (use sqlite://PATH or postgres://...)"
        ));
    }
}

fn count(
    name: &str,
    text: Option<String>,
    default: usize,
    problems: &mut Vec<String>,
) -> Option<usize> {
    match text {
        None => Some(default),
        Some(text) => match text.trim().parse::<usize>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                problems.push(format!("{name}: '{text}' is not a positive whole number"));
                None
            }
        },
    }
}

/// `1048576`, `512KiB`, `16MiB`, `1GiB` (also `KB`/`MB`/`GB` as powers of 1000).
pub fn parse_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: usize = number.parse().ok()?;
    let factor: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return None,
    };
    number.checked_mul(factor)
}

/// Reads the TOML file into settings, noting every unknown key and every value of the wrong type.
/// `STEP=DAYS,STEP=DAYS` over the default service levels; each bad pair is one problem.
fn parse_service_levels(
    text: &str,
    problems: &mut Vec<String>,
) -> onboard::workflow::ServiceLevels {
    let mut levels = onboard::workflow::ServiceLevels::default();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let parsed = pair.split_once('=').and_then(|(step, days)| {
            let step = onboard::workflow::Step::parse(step.trim())?;
            let days = days.trim().parse::<u32>().ok().filter(|d| *d <= 3650)?;
            Some((step, days))
        });
        match parsed {
            Some((step, days)) => {
                levels.0.insert(step.code().to_string(), days);
            }
            None => problems.push(format!(
                "service_levels: '{pair}' is not STEP=DAYS with a checklist step (package-sent, \
                 agreements-signed, endpoints-registered, test-messages-passed, live, \
                 direct-address-issued, test-message-exchanged) and 0 to 3650 days"
            )),
        }
    }
    levels
}

fn read_file(path: &Path, problems: &mut Vec<String>) -> Settings {
    let shown = path.display();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            problems.push(format!("config: cannot read {shown}: {e}"));
            return Settings::default();
        }
    };
    let table: toml::Table = match text.parse() {
        Ok(table) => table,
        Err(e) => {
            problems.push(format!(
                "config: {shown} is not valid TOML: {}",
                e.message()
            ));
            return Settings::default();
        }
    };
    let mut settings = Settings::default();
    for (key, value) in table {
        let name = key.replace('-', "_");
        if !FILE_KEYS.contains(&name.as_str()) {
            problems.push(format!("config: unknown key '{key}' in {shown}"));
            continue;
        }
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) if name == "allow_plain_http" => b.to_string(),
            other => {
                problems.push(format!(
                    "config: '{key}' in {shown} must be a string or a number, not {}",
                    other.type_str()
                ));
                continue;
            }
        };
        let slot = match name.as_str() {
            "database" => &mut settings.database,
            "data_dir" => &mut settings.data_dir,
            "http" => &mut settings.http,
            "base_url" => &mut settings.base_url,
            "tls_cert" => &mut settings.tls_cert,
            "tls_key" => &mut settings.tls_key,
            "allow_plain_http" => &mut settings.allow_plain_http,
            "auth" => &mut settings.auth,
            "max_body" => &mut settings.max_body,
            "default_count" => &mut settings.default_count,
            "max_count" => &mut settings.max_count,
            "log" => &mut settings.log,
            "smtp" => &mut settings.smtp,
            "submission" => &mut settings.submission,
            "direct_config" => &mut settings.direct_config,
            "purge_window_days" => &mut settings.purge_window_days,
            "purge_interval" => &mut settings.purge_interval,
            "service_levels" => &mut settings.service_levels,
            "mandate" => &mut settings.mandate,
            _ => &mut settings.log_format,
        };
        *slot = Some(text);
    }
    settings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mandate_is_connecticuts_unless_a_file_says_otherwise() {
        let defaults = Settings::default().load().unwrap();
        assert_eq!(defaults.mandate.name, "Connecticut");
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("m.toml");
        std::fs::write(
            &good,
            "name = \"Elsewhere\"\n[[requirement]]\nid = \"all\"\nlicence_types = [\"*\"]\n\
             ehr = \"any\"\nmust = \"apply\"\nby = \"2030-01-01\"\n",
        )
        .unwrap();
        let set = Settings {
            mandate: Some(good.display().to_string()),
            ..Settings::default()
        }
        .load()
        .unwrap();
        assert_eq!(set.mandate.name, "Elsewhere");
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "name = \"X\"\n[[requirement]]\nid = \"a\"\nlicence_types = [\"wizard\"]\nehr = \"any\"\nmust = \"apply\"\nby = \"soon\"\n").unwrap();
        let err = Settings {
            mandate: Some(bad.display().to_string()),
            ..Settings::default()
        }
        .load()
        .unwrap_err();
        assert!(
            err.to_string().contains("unknown licence type `wizard`"),
            "{err}"
        );
        assert!(err.to_string().contains("`by` must be YYYY-MM-DD"), "{err}");
        let missing = Settings {
            mandate: Some(dir.path().join("none.toml").display().to_string()),
            ..Settings::default()
        }
        .load()
        .unwrap_err();
        assert!(
            missing.to_string().contains("mandate: cannot read"),
            "{missing}"
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("16MiB"), Some(16 << 20));
        assert_eq!(parse_size("2 KB"), Some(2000));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("12XB"), None);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let settings = Settings {
            database: Some("mysql://x".into()),
            http: Some("not-an-address".into()),
            max_body: Some("huge".into()),
            log_format: Some("xml".into()),
            ..Settings::default()
        };
        let err = settings.load().unwrap_err();
        assert_eq!(err.0.len(), 4, "{err}");
    }

    #[test]
    fn service_levels_replace_the_defaults_they_name() {
        let defaults = Settings::default().load().unwrap();
        assert_eq!(
            defaults.service_levels,
            onboard::workflow::ServiceLevels::default()
        );
        let set = Settings {
            service_levels: Some(" package-sent=3, live = 0 ".into()),
            ..Settings::default()
        }
        .load()
        .unwrap();
        let days = |s: &str| set.service_levels.0.get(s).copied();
        assert_eq!(
            (
                days("package-sent"),
                days("live"),
                days("agreements-signed")
            ),
            (Some(3), Some(0), Some(30))
        );
        let err = Settings {
            service_levels: Some("package-sent=-1,lunch=3,live".into()),
            ..Settings::default()
        }
        .load()
        .unwrap_err();
        assert_eq!(err.0.len(), 3, "{err}");
        assert!(
            err.0.iter().all(|p| p.starts_with("service_levels")),
            "{err}"
        );
    }

    #[test]
    fn the_purge_window_and_interval() {
        let defaults = Settings::default().load().unwrap();
        assert_eq!(defaults.purge_window_days, 5);
        assert_eq!(
            defaults.purge_interval,
            Some(std::time::Duration::from_secs(3600))
        );
        let set = Settings {
            purge_window_days: Some("10".into()),
            purge_interval: Some("0".into()),
            ..Settings::default()
        }
        .load()
        .unwrap();
        assert_eq!(set.purge_window_days, 10);
        assert_eq!(set.purge_interval, None, "0 turns it off");
        let err = Settings {
            purge_window_days: Some("-1".into()),
            purge_interval: Some("hourly".into()),
            ..Settings::default()
        }
        .load()
        .unwrap_err();
        assert_eq!(err.0.len(), 2, "{err}");
        assert!(err.0[0].starts_with("purge_window_days"), "{err}");
        assert!(err.0[1].starts_with("purge_interval"), "{err}");
    }

    #[test]
    fn open_access_is_loopback_only() {
        let load = |http: &str, auth: Option<&str>| {
            Settings {
                http: Some(http.into()),
                auth: auth.map(Into::into),
                allow_plain_http: Some("true".into()),
                ..Settings::default()
            }
            .load()
        };
        assert_eq!(load("127.0.0.1:8080", None).unwrap().auth, AuthMode::Smart);
        assert_eq!(
            load("127.0.0.1:8080", Some("none")).unwrap().auth,
            AuthMode::None
        );
        let refused = load("0.0.0.0:8080", Some("none")).unwrap_err();
        assert!(
            refused.0[0].contains("only on a loopback address"),
            "{refused}"
        );
        let unknown = load("127.0.0.1:8080", Some("basic")).unwrap_err();
        assert!(
            unknown.0[0].contains("neither 'smart' nor 'none'"),
            "{unknown}"
        );
    }

    #[test]
    fn plain_http_is_loopback_only_unless_allowed() {
        let check = |http: &str, allow: Option<&str>, expected: Option<&str>| {
            let settings = Settings {
                http: Some(http.into()),
                allow_plain_http: allow.map(Into::into),
                ..Settings::default()
            };
            let problems = settings.load().err().map(|e| e.0).unwrap_or_default();
            match expected {
                None => assert!(problems.is_empty(), "{http} {allow:?}: {problems:?}"),
                Some(expected) => assert!(
                    problems.len() == 1 && problems[0].contains(expected),
                    "{http} {allow:?}: {problems:?}"
                ),
            }
        };
        let refused = Some("not a loopback address");
        check("127.0.0.1:8080", None, None);
        check("127.5.6.7:80", None, None);
        check("[::1]:8080", None, None);
        check("[::ffff:127.0.0.1]:8080", None, None);
        check("localhost:8080", None, None);
        check("0.0.0.0:8080", None, refused);
        check("[::]:8080", None, refused);
        check("192.168.1.20:8080", None, refused);
        check("0.0.0.0:8080", Some("true"), None);
        check("[::]:8080", Some("1"), None);
        check("0.0.0.0:8080", Some("false"), refused);
        check(
            "127.0.0.1:8080",
            Some("maybe"),
            Some("neither true nor false"),
        );
    }

    #[test]
    fn a_file_may_allow_plain_http_and_name_tls_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.toml");
        std::fs::write(&path, "http = \"0.0.0.0:0\"\nallow-plain-http = true\n").unwrap();
        let settings = Settings {
            config: Some(path.clone()),
            ..Settings::default()
        };
        let config = settings.load().unwrap();
        assert!(config.allow_plain_http && config.tls.is_none());
        assert_eq!(config.base_url_for(config.http), "http://0.0.0.0:0/fhir");
        let missing = dir.path().join("missing.pem");
        std::fs::write(
            &path,
            format!("tls_cert = {:?}\n", missing.display().to_string()),
        )
        .unwrap();
        let problems = settings.load().unwrap_err().0;
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("without tls_key"), "{problems:?}");
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = std::env::temp_dir().join(format!("nutmeg-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("n.toml");
        std::fs::write(&path, "http = \"127.0.0.1:9000\"\nmax-body = \"1KiB\"\n").unwrap();
        let settings = Settings {
            config: Some(path),
            http: Some("127.0.0.1:9001".into()),
            ..Settings::default()
        };
        let config = settings.load().unwrap();
        assert_eq!(config.http.port(), 9001);
        assert_eq!(config.max_body, 1024);
        std::fs::remove_dir_all(dir).ok();
    }
}
