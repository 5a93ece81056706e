//! Found without an address, as Python's name server is: `Pyro4.locateNS()`
//! with no host (what the chapter's programs call) first tries the local
//! machine, then sends the datagram `GET_NSURI` to the broadcast address
//! on UDP port 9091 and takes the first answer, the name server's URI. So a
//! classroom runs the name server on one machine and the unmodified Python
//! programs on the others find it.
//!
//! The answer is the URI of `Pyro.NameServer`; a name server listening on
//! every interface (0.0.0.0) answers with the address of the interface that
//! faces the asker, as Python's does. Anything but `GET_NSURI` goes
//! unanswered. One datagram is handled at a time, so nothing piles up.
//!
//! ```
//! use rpc_naming::broadcast::answer;
//! let ns = "127.0.0.1:9090".parse().unwrap();
//! let asker = "127.0.0.1:40000".parse().unwrap();
//! assert_eq!(answer(b"GET_NSURI", ns, asker).as_deref(), Some("PYRO:Pyro.NameServer@127.0.0.1:9090"));
//! assert_eq!(answer(b"hello", ns, asker), None);
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tokio::net::UdpSocket;

use crate::NAME_SERVER_ID;

/// Pyro4's broadcast port (`NS_BCPORT`).
pub const DEFAULT_PORT: u16 = 9091;
/// What an asker sends.
pub const REQUEST: &[u8] = b"GET_NSURI";

/// The answer to `datagram` from `asker` for a name server at `ns`, if it
/// is a request.
pub fn answer(datagram: &[u8], ns: SocketAddr, asker: SocketAddr) -> Option<String> {
    if datagram != REQUEST {
        return None;
    }
    let host = match ns.ip() {
        ip if ip.is_unspecified() => facing(asker).unwrap_or(ip),
        ip => ip,
    };
    Some(format!(
        "PYRO:{NAME_SERVER_ID}@{}",
        SocketAddr::new(host, ns.port())
    ))
}

/// The address of this machine's interface that reaches `asker` (a UDP
/// "connect" only picks the route; nothing is sent).
fn facing(asker: SocketAddr) -> Option<IpAddr> {
    let probe = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    probe.connect(asker).ok()?;
    probe.local_addr().ok().map(|addr| addr.ip())
}

/// Where the responder listens for a name server at `ns`: the loopback
/// address itself for a name server on loopback (nothing else can reach
/// it), otherwise every interface (broadcasts only reach a socket bound to
/// the unspecified address).
pub fn bind_addr(ns: SocketAddr, port: u16) -> SocketAddr {
    let ip = match ns.ip() {
        ip if ip.is_loopback() => ip,
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, port)
}

/// Answers `GET_NSURI` datagrams on `socket` for the name server at `ns`,
/// for as long as it runs.
pub async fn respond(socket: UdpSocket, ns: SocketAddr) {
    let mut datagram = [0; 100];
    loop {
        let (len, asker) = match socket.recv_from(&mut datagram).await {
            Ok(received) => received,
            Err(err) => {
                // An ICMP error from an earlier answer, say: keep serving.
                tracing::debug!(%err, "broadcast socket error");
                continue;
            }
        };
        if let Some(uri) = answer(&datagram[..len], ns, asker) {
            tracing::debug!(%asker, %uri, "answered a broadcast lookup");
            if let Err(err) = socket.send_to(uri.as_bytes(), asker).await {
                tracing::debug!(%asker, %err, "could not answer a broadcast lookup");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_interface_is_answered_with_the_one_facing_the_asker() {
        let ns = "0.0.0.0:9090".parse().unwrap();
        let asker = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(
            answer(REQUEST, ns, asker).unwrap(),
            "PYRO:Pyro.NameServer@127.0.0.1:9090"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5_000))]
        /// Whatever arrives, only the exact request is answered.
        #[test]
        fn only_the_request_is_answered(datagram in proptest::collection::vec(any::<u8>(), 0..100)) {
            let ns = "127.0.0.1:9090".parse().unwrap();
            let asker = "127.0.0.1:5000".parse().unwrap();
            prop_assert_eq!(answer(&datagram, ns, asker).is_some(), datagram == REQUEST);
        }
    }
}
