//! Opening an authenticated russh session: host key verification against known_hosts,
//! agent-then-key-file authentication, and jump hosts whose one connection is shared by
//! every host behind them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{self, HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};

use super::target::{Endpoint, Target};
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
    host: String,
    port: u16,
    known_hosts: PathBuf,
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
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(&mut self, server: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let key: PublicKey = match server {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(c) => PublicKey::new(c.public_key().clone(), ""),
        };
        let fingerprint = key.fingerprint(HashAlg::Sha256);
        let who = if self.port == 22 {
            self.host.clone()
        } else {
            format!("[{}]:{}", self.host, self.port)
        };
        let file = self.known_hosts.display();
        match keys::check_known_hosts_path(&self.host, self.port, &key, &self.known_hosts) {
            Ok(true) => Ok(true),
            Ok(false) => {
                // A key of another type on record counts as a change, not as a new host.
                let known = keys::known_hosts::known_host_keys_path(&self.host, self.port, &self.known_hosts)
                    .map(|k| !k.is_empty())
                    .unwrap_or(false);
                if known {
                    return self.refuse(format!(
                        "host key for {who} differs from the one in {file} (offered {} {fingerprint})",
                        key.algorithm()
                    ));
                }
                match self.policy {
                    HostKeyPolicy::AcceptNew => {
                        match keys::known_hosts::learn_known_hosts_path(&self.host, self.port, &key, &self.known_hosts) {
                            Ok(()) => {
                                log::info!("recorded new host key for {who} in {file}: {fingerprint}");
                                Ok(true)
                            }
                            Err(e) => self.refuse(format!("cannot record the host key of {who} in {file}: {e}")),
                        }
                    }
                    HostKeyPolicy::Strict => self.refuse(format!(
                        "unknown host key for {who}: {} {fingerprint} is not in {file} (host_key_policy = \"strict\")",
                        key.algorithm()
                    )),
                }
            }
            Err(keys::Error::KeyChanged { line }) => self.refuse(format!(
                "HOST KEY CHANGED for {who}: offered {} {fingerprint} differs from {file} line {line}",
                key.algorithm()
            )),
            Err(e) => self.refuse(format!("cannot check {who} against {file}: {e}")),
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

fn russh_config() -> Arc<client::Config> {
    Arc::new(client::Config {
        // Without it every exec costs ~48 ms instead of ~5.6 ms (Nagle + delayed ACK).
        nodelay: true,
        keepalive_interval: Some(Duration::from_secs(15)),
        keepalive_max: 3,
        // Each session keeps a read buffer as large as the largest packet it has read (up
        // to twice that, as it grows): 8 KiB packets keep it near 8 KiB instead of 22-64
        // KiB, ~14 MB at 1,000 hosts, for one more packet per ~20 KB sample (docs/fleet.md).
        maximum_packet_size: 8 * 1024,
        preferred: russh::Preferred {
            cipher: std::borrow::Cow::Borrowed(CIPHERS),
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
    let refusal = Arc::new(Mutex::new(None));
    let handler = Client {
        host: endpoint.host.clone(),
        port: endpoint.port,
        known_hosts: auth.known_hosts.clone(),
        policy: auth.policy,
        refusal: refusal.clone(),
    };
    let config = russh_config();
    let connected = match via {
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
                None => ConnectError::new(HostStatus::Unreachable, format!("ssh handshake failed: {e}")),
            });
        }
    };
    authenticate(&mut session, endpoint, auth).await?;
    Ok(session)
}

/// Agent first, then identity files. Never asks for a passphrase.
async fn authenticate(session: &mut Session, endpoint: &Endpoint, auth: &Auth) -> Result<(), ConnectError> {
    let user = endpoint.user.as_str();
    let mut tried = Vec::new();
    let mut agent_keys = Vec::new();
    if std::env::var_os("SSH_AUTH_SOCK").is_some() {
        match keys::agent::client::AgentClient::connect_env().await {
            Ok(mut agent) => {
                let identities = agent.request_identities().await.unwrap_or_default();
                tried.push(format!("{} agent key(s)", identities.len()));
                for id in identities {
                    let key = id.public_key().into_owned();
                    agent_keys.push(key.clone());
                    let hash = rsa_hash(session, &key).await;
                    match session
                        .authenticate_publickey_with(user, key, hash, &mut agent)
                        .await
                    {
                        Ok(r) if r.success() => return Ok(()),
                        Ok(_) => {}
                        Err(e) => log::debug!("agent key refused by the agent: {e}"),
                    }
                }
            }
            Err(e) => tried.push(format!("no agent ({e})")),
        }
    }
    let files = if endpoint.identity_files.is_empty() {
        &auth.identity_files
    } else {
        &endpoint.identity_files
    };
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
            .authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
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
    match tokio::time::timeout(auth.connect_timeout, attempt).await {
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
                    humantime::format_duration(auth.connect_timeout)
                ),
            ))
        }
    }
}
