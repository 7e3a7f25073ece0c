//! ICMP sockets: which kind this process may open (raw, else unprivileged datagram), the
//! shared surge-ping client per address family, and its enlarged receive buffer.
//!
//! A process that may open neither kind gets a [`PingUnavailable`] whose message names the
//! fix (the capability or the sysctl); lookout keeps running without ping.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::os::fd::RawFd;

use socket2::{Domain, Protocol, Socket, Type};
use surge_ping::{Client, ICMP};

/// Receive buffer asked for on the shared socket. With the default (~208 KiB) a raw socket
/// pinging 1,000 loopback targets drops most replies; 4 MiB held 10,000 replies a second.
pub const RECEIVE_BUFFER_BYTES: usize = 4 << 20;

/// An address family, with one shared client each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    fn domain(self) -> Domain {
        match self {
            Family::V4 => Domain::IPV4,
            Family::V6 => Domain::IPV6,
        }
    }

    fn protocol(self) -> Protocol {
        match self {
            Family::V4 => Protocol::ICMPV4,
            Family::V6 => Protocol::ICMPV6,
        }
    }

    fn icmp(self) -> ICMP {
        match self {
            Family::V4 => ICMP::V4,
            Family::V6 => ICMP::V6,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// Which ICMP socket the process uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketKind {
    /// `SOCK_RAW`: needs root or CAP_NET_RAW; sees every ICMP packet of the host.
    Raw,
    /// `SOCK_DGRAM` + `IPPROTO_ICMP[V6]`: unprivileged, allowed to the groups in
    /// `net.ipv4.ping_group_range` (which governs IPv6 as well).
    Datagram,
}

impl SocketKind {
    fn socket_type(self) -> Type {
        match self {
            SocketKind::Raw => Type::RAW,
            SocketKind::Datagram => Type::DGRAM,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SocketKind::Raw => "raw",
            SocketKind::Datagram => "datagram",
        }
    }
}

/// Why ping cannot work in this process; the message is what a ping-only host shows.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PingUnavailable {
    /// Neither socket kind is permitted.
    Permission {
        family: Family,
        raw: String,
        datagram: String,
    },
    /// Some other failure (the family is disabled in the kernel, no memory, ...).
    Socket { family: Family, error: String },
}

impl fmt::Display for PingUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PingUnavailable::Permission {
                family,
                raw,
                datagram,
            } => write!(
                f,
                "ping unavailable: this process may not open an {} ICMP socket (raw: {raw}; \
                 datagram: {datagram}). Fix: give lookout the capability CAP_NET_RAW \
                 (`setcap cap_net_raw+ep $(command -v lookout)`), or let your group use \
                 unprivileged ping with the sysctl net.ipv4.ping_group_range \
                 (`sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"`)",
                family.name()
            ),
            PingUnavailable::Socket { family, error } => {
                write!(
                    f,
                    "ping unavailable: cannot open an {} ICMP socket: {error}",
                    family.name()
                )
            }
        }
    }
}

fn is_permission(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::PermissionDenied
        || matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES))
}

/// The socket kind this process may use for `family`: raw when permitted, else datagram.
/// Opens (and closes) a probe socket of each kind tried.
pub fn select_socket_kind(family: Family) -> Result<SocketKind, PingUnavailable> {
    let raw_err = match Socket::new(family.domain(), Type::RAW, Some(family.protocol())) {
        Ok(_) => return Ok(SocketKind::Raw),
        Err(e) => e,
    };
    let dgram_err = match Socket::new(family.domain(), Type::DGRAM, Some(family.protocol())) {
        Ok(_) => return Ok(SocketKind::Datagram),
        Err(e) => e,
    };
    if is_permission(&raw_err) || is_permission(&dgram_err) {
        Err(PingUnavailable::Permission {
            family,
            raw: raw_err.to_string(),
            datagram: dgram_err.to_string(),
        })
    } else {
        Err(PingUnavailable::Socket {
            family,
            error: raw_err.to_string(),
        })
    }
}

/// One shared client of a family and what it is built on.
#[derive(Clone)]
pub struct OpenClient {
    pub client: Client,
    pub kind: SocketKind,
    /// The receive buffer the kernel granted (it reports twice the size asked for).
    pub receive_buffer: usize,
}

/// Opens the shared client for `family`. Must run inside a tokio runtime (the client spawns
/// its receiving task).
pub fn open_client(family: Family) -> Result<OpenClient, PingUnavailable> {
    let kind = select_socket_kind(family)?;
    let config = surge_ping::Config::builder()
        .kind(family.icmp())
        .sock_type_hint(kind.socket_type())
        .build();
    let client = Client::new(&config).map_err(|e| PingUnavailable::Socket {
        family,
        error: e.to_string(),
    })?;
    let socket = client.get_socket();
    // surge-ping falls back to the other kind by itself; report what it really opened.
    let kind = if socket.get_type() == Type::RAW {
        SocketKind::Raw
    } else {
        SocketKind::Datagram
    };
    let receive_buffer = match enlarge_receive_buffer(socket.get_native_sock(), RECEIVE_BUFFER_BYTES) {
        Ok(n) => n,
        Err(e) => {
            log::warn!(
                "ping: cannot enlarge the {} ICMP receive buffer: {e}",
                family.name()
            );
            0
        }
    };
    log::info!(
        "ping: {} {} ICMP socket, receive buffer {} bytes",
        family.name(),
        kind.name(),
        receive_buffer
    );
    Ok(OpenClient {
        client,
        kind,
        receive_buffer,
    })
}

/// Asks for a `bytes` receive buffer: `SO_RCVBUFFORCE` first (root or CAP_NET_ADMIN may
/// exceed `net.core.rmem_max`), else `SO_RCVBUF` (capped by it). Returns what was granted.
#[allow(unsafe_code)]
fn enlarge_receive_buffer(fd: RawFd, bytes: usize) -> io::Result<usize> {
    let want = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    let set = |option: libc::c_int| {
        // SAFETY: `fd` is the open socket of a client the caller holds, and the option
        // value is a live c_int of the length passed.
        let rc = unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, option, (&raw const want).cast(), len) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    if set(libc::SO_RCVBUFFORCE).is_err() {
        set(libc::SO_RCVBUF)?;
    }
    let mut got: libc::c_int = 0;
    let mut got_len = len;
    // SAFETY: as above; `got` and `got_len` are live and sized for the option.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&raw mut got).cast(),
            &raw mut got_len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(got).unwrap_or(0))
}

/// Whether this process runs with effective uid 0 (tests use it to decide what they can
/// check), read from `/proc/self/status`.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_message_names_the_fixes() {
        let e = PingUnavailable::Permission {
            family: Family::V4,
            raw: "Operation not permitted".into(),
            datagram: "Permission denied".into(),
        };
        let m = e.to_string();
        assert!(m.contains("net.ipv4.ping_group_range"), "{m}");
        assert!(m.contains("CAP_NET_RAW"), "{m}");
    }

    #[tokio::test]
    async fn root_gets_a_raw_socket_with_a_large_buffer() {
        if !is_root() {
            eprintln!("skipped: not root, so a raw ICMP socket is not permitted");
            return;
        }
        assert_eq!(select_socket_kind(Family::V4), Ok(SocketKind::Raw));
        let c = open_client(Family::V4).expect("open");
        assert_eq!(c.kind, SocketKind::Raw);
        assert!(c.receive_buffer >= RECEIVE_BUFFER_BYTES, "{}", c.receive_buffer);
    }
}
