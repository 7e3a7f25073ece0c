//! `lookout attach HOST` and its other end: on HOST, `lookout attach --stdio` joins its
//! stdin and stdout to the server's socket (so the server sees the SSH login user as the
//! viewer); here, the same protocol runs over the SSH channel of that command, opened with
//! the collector's ssh-config, agent and known_hosts handling.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::client::Stream;
use crate::collectors::ssh::connect::{self, Auth, JumpPool, Session};
use crate::collectors::ssh::target::{Resolver, Target};
use crate::config::{Config, HostConfig, Via};

/// How to reach a server on another host.
#[derive(Clone)]
pub struct SshTarget {
    /// The ssh alias, as on the command line.
    pub host: String,
    /// The socket on HOST (its default when `None`).
    pub socket: Option<PathBuf>,
    /// The lookout program on HOST.
    pub program: String,
    pub config: Arc<Config>,
}

/// Quotes one word for the remote POSIX shell.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

impl SshTarget {
    /// The command run on HOST.
    pub fn command(&self) -> String {
        let mut cmd = format!("{} attach --stdio", quote(&self.program));
        if let Some(s) = &self.socket {
            cmd.push_str(" --socket ");
            cmd.push_str(&quote(&s.to_string_lossy()));
        }
        cmd
    }

    /// Where HOST leads, resolved exactly as a collected host is (src/collectors/ssh/):
    /// the ssh config (HostName, Port, User, IdentityFile, UserKnownHostsFile,
    /// StrictHostKeyChecking, ProxyJump, ...) under the `[ssh]` keys the user set, so the
    /// host key is checked against the same known_hosts files as for collection.
    pub fn target(&self) -> Result<Target, String> {
        let ssh = &self.config.ssh;
        let resolver = Resolver::for_settings(ssh).map_err(|e| format!("cannot read the ssh config: {e}"))?;
        let host = HostConfig {
            name: self.host.as_str().into(),
            group: None,
            via: Via::Ssh,
            ping: false,
            jump: None,
            processes: Vec::new(),
            mounts: Vec::new(),
            interfaces: Vec::new(),
        };
        Ok(resolver.target(&host, ssh))
    }

    pub(super) async fn open(&self) -> Result<Stream, String> {
        let ssh = &self.config.ssh;
        let target = self.target()?;
        let auth = Auth {
            known_hosts: ssh.known_hosts.clone(),
            policy: ssh.host_key_policy,
            identity_files: ssh.identity_files.clone(),
            connect_timeout: ssh.connect_timeout,
        };
        // The jump sessions live as long as the stream that goes through them.
        let jumps = Arc::new(JumpPool::default());
        let session = connect::connect(&target, &auth, &jumps)
            .await
            .map_err(|e| format!("{}: {}", self.host, e.message))?;
        let channel = session
            .channel_open_session()
            .await
            .map_err(|e| format!("{}: cannot open a channel: {e}", self.host))?;
        channel
            .exec(true, self.command())
            .await
            .map_err(|e| format!("{}: cannot run `{}`: {e}", self.host, self.command()))?;
        Ok(Box::pin(SshStream {
            stream: channel.into_stream(),
            _session: session,
            _jumps: jumps,
        }))
    }
}

/// The channel's stream, holding its session (and the jump sessions before it) open.
struct SshStream {
    stream: russh::ChannelStream<russh::client::Msg>,
    _session: Session,
    _jumps: Arc<JumpPool>,
}

impl AsyncRead for SshStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for SshStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// `lookout attach --stdio`: copies stdin to the socket and the socket to stdout until
/// either side closes. Bytes are not looked at: the viewer and the server speak through it.
pub async fn stdio_bridge(socket: PathBuf) -> anyhow::Result<()> {
    let mut unix = tokio::net::UnixStream::connect(&socket)
        .await
        .map_err(|e| anyhow::anyhow!("no lookout server on {}: {e}", socket.display()))?;
    let mut stdio = tokio::io::join(tokio::io::stdin(), tokio::io::stdout());
    match tokio::io::copy_bidirectional(&mut unix, &mut stdio).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_command_is_quoted() {
        let t = SshTarget {
            host: "jump".into(),
            socket: Some(PathBuf::from("/tmp/it's.sock")),
            program: "/opt/look out".into(),
            config: Arc::new(crate::config::parse("", "t.toml", None).expect("empty config")),
        };
        assert_eq!(
            t.command(),
            "'/opt/look out' attach --stdio --socket '/tmp/it'\\''s.sock'"
        );
    }

    fn target_of(config: &str, ssh_config: &str) -> (tempfile::TempDir, Target) {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("ssh_config");
        std::fs::write(&file, ssh_config).expect("ssh_config");
        let text = format!("[ssh]\nconfig_file = \"{}\"\n{config}", file.display());
        let t = SshTarget {
            host: "jumpbox".into(),
            socket: None,
            program: "lookout".into(),
            config: Arc::new(crate::config::parse(&text, "t.toml", None).expect("config")),
        };
        let target = t.target().expect("resolves");
        (dir, target)
    }

    #[test]
    fn host_keys_are_looked_up_where_collection_looks_them_up() {
        let ssh_config = "Host jumpbox\n  HostName 127.0.0.1\n  Port 2222\n  User root\n  UserKnownHostsFile /srv/kh/user_known_hosts\n";
        // `[ssh] known_hosts` set: it wins over the ssh config, as for collected hosts.
        let (_d, t) = target_of("known_hosts = \"/srv/kh/lookout_known_hosts\"\n", ssh_config);
        assert_eq!(
            (
                t.endpoint.host.as_str(),
                t.endpoint.port,
                t.endpoint.user.as_str()
            ),
            ("127.0.0.1", 2222, "root")
        );
        assert_eq!(
            t.endpoint.known_hosts,
            [PathBuf::from("/srv/kh/lookout_known_hosts")]
        );
        assert!(t.endpoint.global_known_hosts.is_empty());
        // Not set: the ssh config's UserKnownHostsFile.
        let (_d, t) = target_of("", ssh_config);
        assert_eq!(
            t.endpoint.known_hosts,
            [PathBuf::from("/srv/kh/user_known_hosts")]
        );
        assert_eq!(
            t.endpoint.global_known_hosts,
            [PathBuf::from("/etc/ssh/ssh_known_hosts")]
        );
        // Neither: lookout's default, ~/.ssh/known_hosts.
        let (_d, t) = target_of("", "Host jumpbox\n  HostName 127.0.0.1\n");
        assert_eq!(t.endpoint.known_hosts.len(), 1);
        assert!(
            t.endpoint.known_hosts[0].ends_with(".ssh/known_hosts"),
            "{:?}",
            t.endpoint.known_hosts
        );
        // `[ssh] host_key_policy` and the ssh config's StrictHostKeyChecking apply too.
        let (_d, t) = target_of(
            "",
            "Host jumpbox\n  HostName 127.0.0.1\n  StrictHostKeyChecking accept-new\n",
        );
        assert_eq!(t.endpoint.policy, crate::config::HostKeyPolicy::AcceptNew);
    }
}
