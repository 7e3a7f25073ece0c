//! Opening an authenticated russh session: host key verification against known_hosts,
//! agent-then-key-file authentication, and jump hosts whose one connection is shared by
//! every host behind them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{self, HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate, ssh_key};

use super::known_hosts::{self, Verdict};
use super::proxy;
use super::target::{Agent, Endpoint, Target};
use crate::config::HostKeyPolicy;
use crate::model::HostStatus;

/// Why a connection could not be made, already phrased for the user.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectError {
    pub status: HostStatus,
    pub message: String,
}

impl ConnectError {
    fn new(status: HostStatus, message: impl Into<String>) -> Self {
        ConnectError {
            status,
            message: message.into(),
        }
    }
}

/// What the session needs to know about host keys and authentication.
#[derive(Debug, Clone)]
pub struct Auth {
    pub known_hosts: PathBuf,
    pub policy: HostKeyPolicy,
    /// Tried after the agent when the ssh config names no IdentityFile.
    pub identity_files: Vec<PathBuf>,
    pub connect_timeout: Duration,
}

/// The russh client handler: it only decides whether to trust the server's key.
pub struct Client {
    /// The name the key is filed under (`host`, `[host]:port`, or the HostKeyAlias).
    name: String,
    /// The name a host certificate must list among its principals.
    principal: String,
    /// User files then global ones; new keys go to the first user file.
    files: Vec<PathBuf>,
    learn_to: Option<PathBuf>,
    policy: HostKeyPolicy,
    /// Set when the key was refused, with the reason shown to the user.
    refusal: Arc<Mutex<Option<String>>>,
}

impl Client {
    fn refuse(&self, why: String) -> Result<bool, russh::Error> {
        if let Ok(mut r) = self.refusal.lock() {
            *r = Some(why);
        }
        Ok(false)
    }

    fn files(&self) -> String {
        self.files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(&mut self, server: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let who = self.name.clone();
        let verdict = match server {
            PublicKeyOrCertificate::PublicKey { key, .. } => known_hosts::check_key(&who, key, &self.files),
            PublicKeyOrCertificate::Certificate(c) => {
                known_hosts::check_certificate(&who, &self.principal, c, &self.files)
            }
        };
        let (algorithm, fingerprint) = match server {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                (key.algorithm(), key.fingerprint(HashAlg::Sha256))
            }
            PublicKeyOrCertificate::Certificate(c) => {
                let k = PublicKey::new(c.public_key().clone(), "");
                (k.algorithm(), k.fingerprint(HashAlg::Sha256))
            }
        };
        match verdict {
            Verdict::Trusted => Ok(true),
            Verdict::Changed { file, line } => self.refuse(format!(
                "HOST KEY CHANGED for {who}: offered {algorithm} {fingerprint} differs from {} line {line}",
                file.display()
            )),
            Verdict::Revoked { file, line } => self.refuse(format!(
                "the host key of {who} ({algorithm} {fingerprint}) is marked @revoked in {} line {line}",
                file.display()
            )),
            Verdict::BadCertificate(why) => self.refuse(format!("{who}: {why}")),
            Verdict::Unknown => match (self.policy, &self.learn_to, server) {
                (HostKeyPolicy::AcceptNew, Some(file), PublicKeyOrCertificate::PublicKey { key, .. }) => {
                    match known_hosts::learn(&who, key, file) {
                        Ok(()) => {
                            log::info!("recorded new host key for {who} in {}: {fingerprint}", file.display());
                            Ok(true)
                        }
                        Err(e) => self.refuse(format!(
                            "cannot record the host key of {who} in {}: {e}",
                            file.display()
                        )),
                    }
                }
                (HostKeyPolicy::AcceptNew, _, _) => self.refuse(format!(
                    "unknown host key for {who}: {algorithm} {fingerprint} is not in {} and cannot be recorded",
                    self.files()
                )),
                (HostKeyPolicy::Strict, _, _) => self.refuse(format!(
                    "unknown host key for {who}: {algorithm} {fingerprint} is not in {} (host_key_policy = \"strict\")",
                    self.files()
                )),
            },
        }
    }
}

/// An authenticated session.
pub type Session = Handle<Client>;

/// russh's ciphers with AES-GCM first: with AES-NI it decrypts a sample with less CPU
/// than ChaCha20-Poly1305 (russh's first choice, a sixteenth of lookout's CPU at 1,000
/// hosts). Both are OpenSSH defaults; the first in this order that the server offers is used.
const CIPHERS: &[russh::cipher::Name] = &[
    russh::cipher::AES_256_GCM,
    russh::cipher::CHACHA20_POLY1305,
    russh::cipher::AES_256_CTR,
    russh::cipher::AES_192_CTR,
    russh::cipher::AES_128_CTR,
];

/// The client settings for one endpoint: its keepalive, and host certificates asked for
/// only where a `@cert-authority` line could vouch for them (as OpenSSH orders its host key
/// algorithms by what known_hosts holds).
fn russh_config(endpoint: &Endpoint, certificates: bool) -> Arc<client::Config> {
    let (keepalive, keepalive_max) = endpoint
        .keepalive
        .map_or((Duration::from_secs(15), 3), |(d, n)| (d, n as usize));
    Arc::new(client::Config {
        // Without it every exec costs ~48 ms instead of ~5.6 ms (Nagle + delayed ACK).
        nodelay: true,
        keepalive_interval: Some(keepalive),
        keepalive_max,
        // Each session keeps a read buffer as large as the largest packet it has read (up
        // to twice that, as it grows): 8 KiB packets keep it near 8 KiB instead of 22-64
        // KiB, ~14 MB at 1,000 hosts, for one more packet per ~20 KB sample (docs/fleet.md).
        maximum_packet_size: 8 * 1024,
        preferred: russh::Preferred {
            cipher: std::borrow::Cow::Borrowed(CIPHERS),
            host_key_certificates: if certificates {
                russh::Preferred::DEFAULT.key.clone()
            } else {
                std::borrow::Cow::Borrowed(&[])
            },
            ..russh::Preferred::DEFAULT
        },
        ..client::Config::default()
    })
}

fn io_message(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        std::io::ErrorKind::TimedOut => "connection timed out".to_string(),
        _ => e.to_string(),
    }
}

/// Connects and authenticates to one endpoint, over `stream` when given (a channel of the
/// jump host) or over TCP.
async fn open(endpoint: &Endpoint, via: Option<&Session>, auth: &Auth) -> Result<Session, ConnectError> {
    let _ = auth;
    let refusal = Arc::new(Mutex::new(None));
    let name = endpoint
        .host_key_alias
        .clone()
        .unwrap_or_else(|| known_hosts::lookup_name(&endpoint.host, endpoint.port));
    let files: Vec<PathBuf> = endpoint
        .known_hosts
        .iter()
        .chain(&endpoint.global_known_hosts)
        .cloned()
        .collect();
    let certificates = known_hosts::has_authority(&name, &files);
    let handler = Client {
        principal: endpoint
            .host_key_alias
            .clone()
            .unwrap_or_else(|| endpoint.host.clone()),
        name,
        files,
        learn_to: endpoint.known_hosts.first().cloned(),
        policy: endpoint.policy,
        refusal: refusal.clone(),
    };
    let config = russh_config(endpoint, certificates);
    let mut proxy_stderr = None;
    let connected = match via {
        None if endpoint.proxy_command.is_some() => {
            let command = endpoint.proxy_command.as_deref().unwrap_or_default();
            let (stream, stderr) = proxy::spawn(command).map_err(|e| {
                ConnectError::new(
                    HostStatus::Unreachable,
                    format!("cannot run ProxyCommand `{command}`: {e}"),
                )
            })?;
            proxy_stderr = Some(stderr);
            client::connect_stream(config, stream, handler).await
        }
        None => {
            let tcp = tokio::net::TcpStream::connect((endpoint.host.as_str(), endpoint.port))
                .await
                .map_err(|e| ConnectError::new(HostStatus::Unreachable, io_message(&e)))?;
            let _ = tcp.set_nodelay(true);
            client::connect_stream(config, tcp, handler).await
        }
        Some(jump) => {
            let channel = jump
                .channel_open_direct_tcpip(endpoint.host.clone(), u32::from(endpoint.port), "127.0.0.1", 0)
                .await
                .map_err(|e| {
                    ConnectError::new(
                        HostStatus::Unreachable,
                        format!("the jump host cannot reach {}: {e}", endpoint.host_port()),
                    )
                })?;
            client::connect_stream(config, channel.into_stream(), handler).await
        }
    };
    let mut session = match connected {
        Ok(s) => s,
        Err(e) => {
            let refused = refusal.lock().ok().and_then(|mut r| r.take());
            return Err(match refused {
                Some(why) => ConnectError::new(HostStatus::HostKeyMismatch, why),
                None => {
                    let said = proxy_stderr.map(|s| s.text()).filter(|t| !t.is_empty());
                    let mut m = format!("ssh handshake failed: {e}");
                    if let Some(said) = said {
                        m = format!("ProxyCommand failed: {said} ({m})");
                    }
                    ConnectError::new(HostStatus::Unreachable, m)
                }
            });
        }
    };
    authenticate(&mut session, endpoint, auth).await?;
    Ok(session)
}

/// Agent first (certificates it holds, then keys), then identity files (each with its
/// certificate, if one is configured or lies beside it as `-cert.pub`, before the bare key).
/// Never asks for a passphrase.
async fn authenticate(session: &mut Session, endpoint: &Endpoint, auth: &Auth) -> Result<(), ConnectError> {
    let user = endpoint.user.as_str();
    let mut tried = Vec::new();
    let mut agent_keys = Vec::new();
    let files = if endpoint.identity_files.is_empty() {
        &auth.identity_files
    } else {
        &endpoint.identity_files
    };
    // IdentitiesOnly: agent keys only where an identity file's public half is one of them.
    let allowed: Option<Vec<ssh_key::public::KeyData>> = endpoint.identities_only.then(|| {
        files
            .iter()
            .filter_map(|f| public_of(f))
            .map(|k| k.key_data().clone())
            .collect()
    });
    let agent = match &endpoint.agent {
        Agent::Off => None,
        Agent::Env if std::env::var_os("SSH_AUTH_SOCK").is_none() => None,
        Agent::Env => Some(
            keys::agent::client::AgentClient::connect_env()
                .await
                .map(|a| a.dynamic()),
        ),
        Agent::Socket(path) => Some(
            keys::agent::client::AgentClient::connect_uds(path)
                .await
                .map(|a| a.dynamic()),
        ),
    };
    match agent {
        None => {}
        Some(Err(e)) => tried.push(format!("no agent ({e})")),
        Some(Ok(mut agent)) => {
            let identities = agent.request_identities().await.unwrap_or_default();
            tried.push(format!("{} agent key(s)", identities.len()));
            for id in identities {
                let key = id.public_key().into_owned();
                if allowed.as_ref().is_some_and(|a| !a.contains(key.key_data())) {
                    continue;
                }
                agent_keys.push(key.clone());
                let hash = rsa_hash(session, &key).await;
                let result = match id {
                    keys::agent::AgentIdentity::Certificate { certificate, .. } => {
                        session
                            .authenticate_certificate_with(user, certificate, hash, &mut agent)
                            .await
                    }
                    keys::agent::AgentIdentity::PublicKey { .. } => {
                        session
                            .authenticate_publickey_with(user, key, hash, &mut agent)
                            .await
                    }
                };
                match result {
                    Ok(r) if r.success() => return Ok(()),
                    Ok(_) => {}
                    Err(e) => log::debug!("agent key refused by the agent: {e}"),
                }
            }
        }
    }
    let mut encrypted = Vec::new();
    for path in files {
        if !path.exists() {
            continue;
        }
        let key = match keys::load_secret_key(path, None) {
            Ok(k) => k,
            Err(keys::Error::KeyIsEncrypted) => {
                encrypted.push(path.display().to_string());
                continue;
            }
            Err(e) => {
                tried.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        let key = Arc::new(key);
        for cert_path in certificates_for(&key, path, &endpoint.certificate_files) {
            let Ok(cert) = keys::Certificate::read_file(&cert_path) else {
                continue;
            };
            tried.push(cert_path.display().to_string());
            match session.authenticate_openssh_cert(user, key.clone(), cert).await {
                Ok(r) if r.success() => return Ok(()),
                Ok(_) => {}
                Err(e) => {
                    return Err(ConnectError::new(
                        HostStatus::Unreachable,
                        format!("connection lost during authentication: {e}"),
                    ));
                }
            }
        }
        // The agent already offered this one.
        if agent_keys
            .iter()
            .any(|k| k.key_data() == key.public_key().key_data())
        {
            continue;
        }
        tried.push(path.display().to_string());
        let hash = rsa_hash(session, key.public_key()).await;
        match session
            .authenticate_publickey(user, PrivateKeyWithHashAlg::new(key, hash))
            .await
        {
            Ok(r) if r.success() => return Ok(()),
            Ok(_) => {}
            Err(e) => {
                return Err(ConnectError::new(
                    HostStatus::Unreachable,
                    format!("connection lost during authentication: {e}"),
                ));
            }
        }
    }
    let mut message = format!("no key accepted for {user}@{}", endpoint.host_port());
    if !tried.is_empty() {
        message.push_str(&format!(" (tried {})", tried.join(", ")));
    }
    if !encrypted.is_empty() {
        message.push_str(&format!(
            "; {} is passphrase-protected: add it to your ssh-agent (ssh-add {})",
            encrypted.join(", "),
            encrypted.join(" ")
        ));
    }
    Err(ConnectError::new(HostStatus::AuthFailed, message))
}

/// The public half of an identity file (`FILE.pub`, else the private key itself).
fn public_of(path: &std::path::Path) -> Option<PublicKey> {
    let mut pub_path = path.as_os_str().to_owned();
    pub_path.push(".pub");
    if let Ok(k) = keys::load_public_key(std::path::Path::new(&pub_path)) {
        return Some(k);
    }
    keys::load_secret_key(path, None)
        .ok()
        .map(|k| k.public_key().clone())
}

/// Certificates for `key`: the configured CertificateFiles whose key is this one, then
/// `PATH-cert.pub` beside the key file (as OpenSSH looks for it).
fn certificates_for(key: &keys::PrivateKey, path: &std::path::Path, configured: &[PathBuf]) -> Vec<PathBuf> {
    let mut beside = path.as_os_str().to_owned();
    beside.push("-cert.pub");
    let mut out: Vec<PathBuf> = configured
        .iter()
        .filter(|c| {
            keys::Certificate::read_file(c).is_ok_and(|cert| cert.public_key() == key.public_key().key_data())
        })
        .cloned()
        .collect();
    let beside = PathBuf::from(beside);
    if beside.exists() && !out.contains(&beside) {
        out.push(beside);
    }
    out
}

async fn rsa_hash(session: &Session, key: &PublicKey) -> Option<HashAlg> {
    if key.algorithm().is_rsa() {
        session
            .best_supported_rsa_hash()
            .await
            .ok()
            .flatten()
            .flatten()
            .or(Some(HashAlg::Sha256))
    } else {
        None
    }
}

/// The connection to one jump chain, opened by whichever host needs it first.
type JumpSlot = Arc<tokio::sync::Mutex<Option<Arc<Session>>>>;

/// Shared jump connections: one per jump chain, opened on first use, re-opened when closed.
#[derive(Default)]
pub struct JumpPool {
    chains: Mutex<HashMap<String, JumpSlot>>,
}

impl JumpPool {
    /// The session of the last hop of `jumps`, connecting the chain if needed.
    async fn get(&self, jumps: &[Endpoint], auth: &Auth) -> Result<Arc<Session>, ConnectError> {
        let key = jumps
            .iter()
            .map(|j| format!("{}@{}", j.user, j.host_port()))
            .collect::<Vec<_>>()
            .join(",");
        let slot = {
            let mut chains = self
                .chains
                .lock()
                .map_err(|_| ConnectError::new(HostStatus::Error, "jump pool poisoned"))?;
            chains.entry(key).or_default().clone()
        };
        let mut slot = slot.lock().await;
        if let Some(s) = slot.as_ref()
            && !s.is_closed()
        {
            return Ok(s.clone());
        }
        *slot = None;
        let mut via: Option<Arc<Session>> = None;
        for hop in jumps {
            let next = open(hop, via.as_deref(), auth).await.map_err(|e| ConnectError {
                status: match e.status {
                    HostStatus::Unreachable => HostStatus::Unreachable,
                    other => other,
                },
                message: format!("via jump host {}: {}", hop.alias, e.message),
            })?;
            via = Some(Arc::new(next));
        }
        let session = via.ok_or_else(|| ConnectError::new(HostStatus::Error, "empty jump chain"))?;
        *slot = Some(session.clone());
        Ok(session)
    }

    /// Forgets a jump connection that failed, so the next host re-opens it.
    pub async fn drop_chain(&self, jumps: &[Endpoint]) {
        let key = jumps
            .iter()
            .map(|j| format!("{}@{}", j.user, j.host_port()))
            .collect::<Vec<_>>()
            .join(",");
        let slot = self.chains.lock().ok().and_then(|c| c.get(&key).cloned());
        if let Some(slot) = slot {
            *slot.lock().await = None;
        }
    }
}

/// Opens the session of a target (through its jump chain), within the connect timeout.
pub async fn connect(target: &Target, auth: &Auth, jumps: &JumpPool) -> Result<Session, ConnectError> {
    let attempt = async {
        if target.jumps.is_empty() {
            open(&target.endpoint, None, auth).await
        } else {
            let jump = jumps.get(&target.jumps, auth).await.map_err(|e| {
                // Hosts behind a jump that is down are unreachable because of it.
                ConnectError::new(
                    if e.status == HostStatus::Timeout {
                        HostStatus::Unreachable
                    } else {
                        e.status
                    },
                    e.message,
                )
            })?;
            match open(&target.endpoint, Some(&jump), auth).await {
                Ok(s) => Ok(s),
                Err(e) => {
                    if jump.is_closed() {
                        jumps.drop_chain(&target.jumps).await;
                    }
                    Err(ConnectError {
                        status: e.status,
                        message: format!("via {}: {}", target.jump_name(), e.message),
                    })
                }
            }
        }
    };
    if let Some(e) = target.error() {
        return Err(ConnectError::new(HostStatus::Error, format!("ssh config: {e}")));
    }
    let timeout = target.endpoint.connect_timeout.unwrap_or(auth.connect_timeout);
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => {
            let via = if target.jumps.is_empty() {
                String::new()
            } else {
                format!(" via {}", target.jump_name())
            };
            Err(ConnectError::new(
                HostStatus::Timeout,
                format!(
                    "no answer from {}{via} within {}",
                    target.endpoint.host_port(),
                    humantime::format_duration(timeout)
                ),
            ))
        }
    }
}
