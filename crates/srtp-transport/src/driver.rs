//! A tokio driver for one [`MediaLeg`]: its RTP (and RTCP) sockets taken
//! from a port range, a receive loop that unprotects and demultiplexes, and
//! a clean shutdown that returns the ports.

use crate::error::Error;
use crate::leg::{Activity, MediaLeg, Received};
use crate::srtp::Context;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

/// Hands out RTP ports (even) and RTCP ports (the odd one above) from an
/// inclusive range, round-robin, skipping ports in use.
#[derive(Debug)]
pub struct PortAllocator {
    ip: IpAddr,
    first: u16,
    last: u16,
    next: AtomicU16,
}

/// The sockets of one leg.
#[derive(Debug)]
pub struct MediaSockets {
    /// RTP (and muxed RTCP).
    pub rtp: UdpSocket,
    /// RTCP on its own port, without rtcp-mux.
    pub rtcp: Option<UdpSocket>,
}

impl MediaSockets {
    /// The local RTP address.
    pub fn rtp_addr(&self) -> Result<SocketAddr, Error> {
        self.rtp.local_addr().map_err(|e| Error::Io(e.to_string()))
    }
}

impl PortAllocator {
    /// Ports `first..=last` on `ip` (RTP takes the even ones).
    pub fn new(ip: IpAddr, first: u16, last: u16) -> Result<PortAllocator, Error> {
        let Some(first) = first.checked_add(first % 2) else {
            return Err(Error::Io(format!("empty port range {first}..={last}")));
        };
        if first >= last {
            return Err(Error::Io(format!("empty port range {first}..={last}")));
        }
        Ok(PortAllocator { ip, first, last, next: AtomicU16::new(first) })
    }

    /// Binds the next free RTP port (and RTCP port unless `rtcp_mux`).
    pub async fn bind(&self, rtcp_mux: bool) -> Result<MediaSockets, Error> {
        let slots = (self.last - self.first) / 2 + 1;
        for _ in 0..slots {
            let mut port = self.next.fetch_add(2, Ordering::Relaxed);
            if port < self.first || port > self.last || port.checked_add(1).is_none_or(|p| p > self.last) && !rtcp_mux {
                self.next.store(self.first.wrapping_add(2), Ordering::Relaxed);
                port = self.first;
            }
            let Ok(rtp) = UdpSocket::bind(SocketAddr::new(self.ip, port)).await else { continue };
            if rtcp_mux {
                return Ok(MediaSockets { rtp, rtcp: None });
            }
            if let Ok(rtcp) = UdpSocket::bind(SocketAddr::new(self.ip, port + 1)).await {
                return Ok(MediaSockets { rtp, rtcp: Some(rtcp) });
            }
        }
        Err(Error::Io(format!("no free media port in {}..={}", self.first, self.last)))
    }
}

/// What the leg received, unprotected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A clear RTP packet.
    Rtp(Vec<u8>),
    /// A clear RTCP packet.
    Rtcp(Vec<u8>),
    /// A DTLS record, for the handshake.
    Dtls(Vec<u8>),
}

enum Command {
    SendRtp(Vec<u8>),
    SendRtcp(Vec<u8>),
    SendRaw(Vec<u8>),
    SetSrtp(Box<(Context, Context)>),
    SetInboundSrtp(Box<Context>),
    SetRemote(Option<SocketAddr>, Option<SocketAddr>),
    Stats(oneshot::Sender<LegStats>),
    Shutdown(oneshot::Sender<LegStats>),
}

/// The largest datagram a leg takes, bytes (media packets fit an Ethernet MTU; larger ones are
/// dropped, not truncated).
pub const MAX_DATAGRAM: usize = 2048;

/// Counters of a running leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegStats {
    /// RTP received.
    pub received: Activity,
    /// RTP sent.
    pub sent: Activity,
    /// Datagrams refused (authentication, parsing).
    pub rejected: u64,
    /// Where RTP goes now (after symmetric latching).
    pub destination: Option<SocketAddr>,
}

/// Controls a running leg.
#[derive(Debug, Clone)]
pub struct LegHandle {
    cmd: mpsc::UnboundedSender<Command>,
    local: SocketAddr,
}

impl LegHandle {
    /// The local RTP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Sends a clear RTP packet (protected on the way out).
    pub fn send_rtp(&self, pkt: Vec<u8>) -> Result<(), Error> {
        self.cmd.send(Command::SendRtp(pkt)).map_err(|_| Error::Io("leg stopped".into()))
    }

    /// Sends a clear RTCP packet.
    pub fn send_rtcp(&self, pkt: Vec<u8>) -> Result<(), Error> {
        self.cmd.send(Command::SendRtcp(pkt)).map_err(|_| Error::Io("leg stopped".into()))
    }

    /// Sends a datagram as it is (DTLS records) to the RTP destination.
    pub fn send_raw(&self, pkt: Vec<u8>) -> Result<(), Error> {
        self.cmd.send(Command::SendRaw(pkt)).map_err(|_| Error::Io("leg stopped".into()))
    }

    /// Installs or replaces the SRTP contexts (re-keying).
    pub fn set_srtp(&self, inbound: Context, outbound: Context) -> Result<(), Error> {
        self.cmd.send(Command::SetSrtp(Box::new((inbound, outbound)))).map_err(|_| Error::Io("leg stopped".into()))
    }

    /// A new context for the far end's packets only (see [`MediaLeg::set_inbound_srtp`]).
    pub fn set_inbound_srtp(&self, inbound: Context) -> Result<(), Error> {
        self.cmd.send(Command::SetInboundSrtp(Box::new(inbound))).map_err(|_| Error::Io("leg stopped".into()))
    }

    /// New remote addresses (a re-offer).
    pub fn set_remote(&self, rtp: Option<SocketAddr>, rtcp: Option<SocketAddr>) -> Result<(), Error> {
        self.cmd.send(Command::SetRemote(rtp, rtcp)).map_err(|_| Error::Io("leg stopped".into()))
    }

    /// Current counters.
    pub async fn stats(&self) -> Result<LegStats, Error> {
        let (tx, rx) = oneshot::channel();
        self.cmd.send(Command::Stats(tx)).map_err(|_| Error::Io("leg stopped".into()))?;
        rx.await.map_err(|_| Error::Io("leg stopped".into()))
    }

    /// Stops the leg, closes its sockets and returns the final counters.
    pub async fn shutdown(&self) -> Result<LegStats, Error> {
        let (tx, rx) = oneshot::channel();
        self.cmd.send(Command::Shutdown(tx)).map_err(|_| Error::Io("leg stopped".into()))?;
        rx.await.map_err(|_| Error::Io("leg stopped".into()))
    }
}

fn stats(leg: &MediaLeg) -> LegStats {
    LegStats {
        received: leg.received(),
        sent: leg.sent(),
        rejected: leg.rejected(),
        destination: leg.rtp_destination(),
    }
}

/// Runs `leg` on `sockets`; received packets come out of the returned
/// channel. The task ends on shutdown or when the handle is dropped.
pub fn spawn(mut leg: MediaLeg, sockets: MediaSockets) -> Result<(LegHandle, mpsc::Receiver<Inbound>), Error> {
    let local = sockets.rtp_addr()?;
    let (cmd_tx, mut cmd_rx) = mpsc::unbounded_channel();
    let (in_tx, in_rx) = mpsc::channel(1024);
    let rtp = Arc::new(sockets.rtp);
    let rtcp = sockets.rtcp.map(Arc::new);
    tokio::spawn(async move {
        // One byte more than the largest datagram taken: a longer one fills it, and is dropped
        // rather than passed on cut short (corrupt media, a broken DTLS record).
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        let mut buf2 = vec![0u8; MAX_DATAGRAM + 1];
        loop {
            let rtcp_recv = async {
                match &rtcp {
                    Some(s) => s.recv_from(&mut buf2).await,
                    None => std::future::pending().await,
                }
            };
            let received = tokio::select! {
                c = cmd_rx.recv() => {
                    match c {
                        None => return,
                        Some(Command::Shutdown(done)) => {
                            let _ = done.send(stats(&leg));
                            return;
                        }
                        Some(Command::Stats(reply)) => { let _ = reply.send(stats(&leg)); }
                        Some(Command::SendRtp(p)) => {
                            if let Ok(Some((to, bytes))) = leg.send_rtp(Instant::now(), p) {
                                let _ = rtp.send_to(&bytes, to).await;
                            }
                        }
                        Some(Command::SendRtcp(p)) => {
                            if let Ok(Some((to, bytes))) = leg.send_rtcp(p) {
                                let sock = if to == leg.rtp_destination().unwrap_or(to) { &rtp } else { rtcp.as_ref().unwrap_or(&rtp) };
                                let _ = sock.send_to(&bytes, to).await;
                            }
                        }
                        Some(Command::SendRaw(p)) => {
                            if let Some(to) = leg.rtp_destination() {
                                let _ = rtp.send_to(&p, to).await;
                            }
                        }
                        Some(Command::SetSrtp(ctx)) => { let (i, o) = *ctx; leg.set_srtp(i, o); }
                        Some(Command::SetInboundSrtp(ctx)) => leg.set_inbound_srtp(*ctx),
                        Some(Command::SetRemote(a, b)) => leg.set_remote(Instant::now(), a, b),
                    }
                    None
                }
                r = rtp.recv_from(&mut buf) => r.ok().filter(|(n, _)| *n <= MAX_DATAGRAM).map(|(n, from)| (buf[..n].to_vec(), from, false)),
                r = rtcp_recv => r.ok().filter(|(n, _)| *n <= MAX_DATAGRAM).map(|(n, from)| (buf2[..n].to_vec(), from, true)),
            };
            if let Some((data, from, on_rtcp_port)) = received {
                let handled = if on_rtcp_port {
                    leg.handle_rtcp_datagram(Instant::now(), from, data)
                } else {
                    leg.handle_datagram(Instant::now(), from, data)
                };
                let out = match handled {
                    Ok(Received::Rtp(p)) => Some(Inbound::Rtp(p)),
                    Ok(Received::Rtcp(p)) => Some(Inbound::Rtcp(p)),
                    // One DTLS association, with the peer's RTP address: a peer that starts a
                    // second one for RTCP (RFC 5764 without rtcp-mux; baresip aims it at our RTP
                    // port when we offered rtcp-mux) is left unanswered, so its records never mix
                    // into the handshake of the first (docs/interop.md).
                    Ok(Received::Dtls(_)) if on_rtcp_port || leg.rtp_destination().is_some_and(|d| d != from) => None,
                    Ok(Received::Dtls(p)) => Some(Inbound::Dtls(p)),
                    _ => None,
                };
                if let Some(o) = out {
                    // A slow consumer loses packets rather than stalling the socket.
                    let _ = in_tx.try_send(o);
                }
            }
        }
    });
    Ok((LegHandle { cmd: cmd_tx, local }, in_rx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leg::LegConfig;
    use crate::srtp::{MasterKey, Options, Suite};
    use std::time::Duration;

    fn ctx(k: u8) -> Context {
        let mk = MasterKey { key: vec![k; 16], salt: vec![k; 14], mki: None, lifetime: None };
        Context::new(Suite::AesCm128HmacSha1_80, &mk, Options::default()).expect("ctx")
    }

    /// Port ranges at the top of the port space: no overflow, no port outside the range.
    #[test]
    fn port_ranges_at_the_top() {
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        assert!(PortAllocator::new(ip, 65535, 65535).is_err());
        let top = PortAllocator::new(ip, 65534, 65535).expect("the top pair");
        // Binding twice goes round the range without overflowing (the port may be taken here).
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let first = top.bind(false).await;
            drop(first);
            let _ = top.bind(false).await;
        });
    }

    #[tokio::test]
    async fn two_legs_exchange_srtp_and_free_their_ports() {
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        let base = 42_000 + (std::process::id() % 500) as u16 * 8;
        let ports = PortAllocator::new(ip, base, base + 7).expect("range");
        let a_sock = ports.bind(false).await.expect("a");
        let b_sock = ports.bind(true).await.expect("b");
        let (a_addr, b_addr) = (a_sock.rtp_addr().expect("a"), b_sock.rtp_addr().expect("b"));
        assert_eq!(a_addr.port() % 2, 0);
        assert!(a_sock.rtcp.is_some() && b_sock.rtcp.is_none());
        let mut a_leg = MediaLeg::new(LegConfig { symmetric_rtp: true, rtcp_mux: true }, Some(b_addr), None);
        let mut b_leg = MediaLeg::new(LegConfig::default(), Some(a_addr), None);
        a_leg.set_srtp(ctx(2), ctx(1));
        b_leg.set_srtp(ctx(1), ctx(2));
        let (a, mut a_in) = spawn(a_leg, a_sock).expect("spawn a");
        let (b, mut b_in) = spawn(b_leg, b_sock).expect("spawn b");
        for seq in 0..20u16 {
            let mut p = Vec::new();
            crate::rtp::RtpHeader { seq, ssrc: 5, ..Default::default() }
                .write(&[seq as u8; 40], 0, &mut p)
                .expect("rtp");
            a.send_rtp(p).expect("send");
        }
        let mut got = 0;
        while got < 20 {
            match tokio::time::timeout(Duration::from_secs(5), b_in.recv()).await.expect("in time") {
                Some(Inbound::Rtp(p)) => {
                    assert_eq!(crate::rtp::RtpPacket::parse(&p).expect("clear").payload().len(), 40);
                    got += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(a_in.try_recv().is_err());
        let sb = b.shutdown().await.expect("b stats");
        assert_eq!((sb.received.packets, sb.rejected), (20, 0));
        let sa = a.shutdown().await.expect("a stats");
        assert_eq!(sa.sent.packets, 20);
        // The ports are free again.
        UdpSocket::bind(a_addr).await.expect("a's port released");
        UdpSocket::bind(b_addr).await.expect("b's port released");
        // An exhausted range is an error, not a hang.
        let small = PortAllocator::new(ip, base, base + 1).expect("range");
        let _held = small.bind(false).await.expect("first");
        assert!(small.bind(false).await.is_err());
    }
}
