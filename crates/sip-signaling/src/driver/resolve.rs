//! RFC 3263 server location: transport by NAPTR, port and host by SRV,
//! addresses by A/AAAA.

use crate::error::Error;
use crate::transport::{Target, Transport};
use crate::uri::{Host, Uri};
use hickory_resolver::TokioAsyncResolver;
use std::net::SocketAddr;
use tracing::debug;

/// Resolves a URI into the ordered list of targets to try.
pub struct Resolver {
    dns: Option<TokioAsyncResolver>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver").field("dns", &self.dns.is_some()).finish()
    }
}

impl Resolver {
    /// Uses the system's resolver configuration (`/etc/resolv.conf`); a
    /// machine without one can still call IP addresses.
    pub fn from_system() -> Resolver {
        Resolver { dns: TokioAsyncResolver::tokio_from_system_conf().ok() }
    }

    /// Uses one DNS server (UDP and TCP on `server`), ignoring the system
    /// configuration.
    pub fn with_nameserver(server: SocketAddr) -> Resolver {
        use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
        let group = NameServerConfigGroup::from_ips_clear(&[server.ip()], server.port(), true);
        let config = ResolverConfig::from_parts(None, vec![], group);
        let mut opts = ResolverOpts::default();
        opts.timeout = std::time::Duration::from_secs(2);
        opts.attempts = 2;
        Resolver { dns: Some(TokioAsyncResolver::tokio(config, opts)) }
    }

    /// Resolves `uri`. IP literals skip DNS; a host with a port or an
    /// explicit transport skips NAPTR (RFC 3263 section 4.1 and 4.2).
    pub async fn resolve(&self, uri: &Uri) -> Result<Vec<Target>, Error> {
        let sip = match uri {
            Uri::Sip(s) => s,
            _ => {
                return Err(Error::InvalidArgument("only sip: and sips: URIs can be routed; tel: needs a proxy".into()))
            }
        };
        let host = match sip.params.value("maddr") {
            Some(m) => Host::parse(m).map_err(|e| Error::InvalidArgument(format!("maddr: {e}")))?,
            None => sip.host.clone(),
        };
        let explicit = match sip.transport_param() {
            Some(t) => {
                Some(Transport::parse(&t).ok_or_else(|| Error::InvalidArgument(format!("unsupported transport {t}")))?)
            }
            None => None,
        };
        if sip.secure && explicit == Some(Transport::Udp) {
            return Err(Error::InvalidArgument("sips: URIs cannot use UDP".into()));
        }
        let default_transport = if sip.secure { Transport::Tls } else { Transport::Udp };
        let server_name = match &host {
            Host::Domain(d) => Some(d.clone()),
            _ => None,
        };
        if let Some(ip) = host.ip() {
            let t = explicit.unwrap_or(default_transport);
            return Ok(vec![Target {
                transport: t,
                addr: SocketAddr::new(ip, sip.port.unwrap_or(t.default_port())),
                server_name,
            }]);
        }
        let Host::Domain(name) = &host else { return Err(Error::InvalidArgument("bad host".into())) };
        let dns = self
            .dns
            .as_ref()
            .ok_or_else(|| Error::Resolve { host: name.clone(), reason: "no DNS configuration".into() })?;
        if let Some(port) = sip.port {
            let t = explicit.unwrap_or(default_transport);
            return self.addresses(dns, name, port, t, server_name.clone()).await;
        }
        // NAPTR (section 4.1) when the transport is not given.
        let mut candidates: Vec<(Transport, String)> = Vec::new();
        if explicit.is_none() {
            if let Ok(naptr) = dns.lookup(name.as_str(), hickory_resolver::proto::rr::RecordType::NAPTR).await {
                let mut recs: Vec<_> =
                    naptr.record_iter().filter_map(|r| r.data().and_then(|d| d.as_naptr()).cloned()).collect();
                recs.sort_by_key(|n| (n.order(), n.preference()));
                for n in recs {
                    let service = String::from_utf8_lossy(n.services()).to_ascii_uppercase();
                    let t = match service.as_str() {
                        "SIP+D2U" if !sip.secure => Transport::Udp,
                        "SIP+D2T" if !sip.secure => Transport::Tcp,
                        "SIPS+D2T" => Transport::Tls,
                        _ => continue,
                    };
                    candidates.push((t, n.replacement().to_utf8()));
                }
                debug!(host = %name, ?candidates, "NAPTR");
            }
        }
        if candidates.is_empty() {
            let order: Vec<Transport> = match explicit {
                Some(t) => vec![t],
                None if sip.secure => vec![Transport::Tls],
                None => vec![Transport::Udp, Transport::Tcp, Transport::Tls],
            };
            for t in order {
                let prefix = match t {
                    Transport::Udp => "_sip._udp.",
                    Transport::Tcp => "_sip._tcp.",
                    Transport::Tls => "_sips._tcp.",
                };
                candidates.push((t, format!("{prefix}{name}")));
            }
        }
        let mut out = Vec::new();
        for (t, srv_name) in &candidates {
            if let Ok(srv) = dns.srv_lookup(srv_name.as_str()).await {
                let recs: Vec<_> = srv.iter().map(|r| (r.priority(), r.weight(), r.clone())).collect();
                let ordered = srv_order(recs, &mut rand::thread_rng());
                for r in ordered {
                    let target = r.target().to_utf8();
                    if let Ok(mut addrs) =
                        self.addresses(dns, target.trim_end_matches('.'), r.port(), *t, server_name.clone()).await
                    {
                        out.append(&mut addrs);
                    }
                }
                if !out.is_empty() && explicit.is_none() {
                    break;
                }
            }
        }
        if out.is_empty() {
            // Section 4.2: no SRV records: A/AAAA on the host itself.
            let t = explicit.unwrap_or(default_transport);
            out = self.addresses(dns, name, t.default_port(), t, server_name).await?;
        }
        Ok(out)
    }

    async fn addresses(
        &self,
        dns: &TokioAsyncResolver,
        name: &str,
        port: u16,
        t: Transport,
        server_name: Option<String>,
    ) -> Result<Vec<Target>, Error> {
        let ips =
            dns.lookup_ip(name).await.map_err(|e| Error::Resolve { host: name.to_owned(), reason: e.to_string() })?;
        let out: Vec<Target> = ips
            .iter()
            .map(|ip| Target { transport: t, addr: SocketAddr::new(ip, port), server_name: server_name.clone() })
            .collect();
        if out.is_empty() {
            return Err(Error::Resolve { host: name.to_owned(), reason: "no addresses".into() });
        }
        Ok(out)
    }
}

/// RFC 2782's order of SRV records: by priority, lowest first; within a priority, each next one
/// drawn at random with a chance proportional to its weight (weight 0: a small chance, drawn
/// after the weighted ones most of the time), so the load spreads over the servers as their
/// weights say instead of every call going to the heaviest.
fn srv_order<T>(records: Vec<(u16, u16, T)>, rng: &mut impl rand::Rng) -> Vec<T> {
    let mut records = records;
    records.sort_by_key(|(priority, _, _)| *priority);
    let mut out = Vec::with_capacity(records.len());
    while !records.is_empty() {
        let priority = records[0].0;
        let same = records.iter().take_while(|(p, _, _)| *p == priority).count();
        let mut group: Vec<(u16, u16, T)> = records.drain(..same).collect();
        // Weight 0 first in the list (RFC 2782), so that it is drawn only when the draw is 0.
        group.sort_by_key(|(_, weight, _)| *weight != 0);
        while !group.is_empty() {
            let total: u32 = group.iter().map(|(_, w, _)| u32::from(*w)).sum();
            let draw = rng.gen_range(0..=total);
            let mut running = 0u32;
            let pick = group
                .iter()
                .position(|(_, w, _)| {
                    running += u32::from(*w);
                    running >= draw
                })
                .unwrap_or(0);
            out.push(group.remove(pick).2);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ip_literals_skip_dns() {
        let r = Resolver { dns: None };
        let t = r.resolve(&Uri::parse("sip:bob@127.0.0.1").expect("u")).await.expect("r");
        assert_eq!(t, vec![Target::new(Transport::Udp, "127.0.0.1:5060".parse().expect("a"))]);
        let t = r.resolve(&Uri::parse("sip:bob@[::1]:5070;transport=TCP").expect("u")).await.expect("r");
        assert_eq!(t, vec![Target::new(Transport::Tcp, "[::1]:5070".parse().expect("a"))]);
        let t = r.resolve(&Uri::parse("sips:bob@127.0.0.1").expect("u")).await.expect("r");
        assert_eq!(t[0].transport, Transport::Tls);
        assert_eq!(t[0].addr.port(), 5061);
        assert!(r.resolve(&Uri::parse("sips:bob@127.0.0.1;transport=udp").expect("u")).await.is_err());
        assert!(r.resolve(&Uri::parse("sip:bob@127.0.0.1;transport=sctp").expect("u")).await.is_err());
        assert!(r.resolve(&Uri::parse("sip:bob@example.invalid").expect("u")).await.is_err());
    }

    /// RFC 2782: priorities in order, and within one the first pick spread by weight (90 to 10
    /// here: about nine in ten; weight 0 first only when nothing else weighs), every record once.
    #[test]
    fn srv_records_are_ordered_by_priority_then_drawn_by_weight() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let records = || vec![(20, 0, "backup"), (10, 10, "light"), (10, 90, "heavy"), (10, 0, "zero")];
        let mut first = std::collections::HashMap::new();
        for _ in 0..2000 {
            let order = srv_order(records(), &mut rng);
            assert_eq!(order.len(), 4);
            assert_eq!(order[3], "backup", "the higher priority number last");
            *first.entry(order[0]).or_insert(0) += 1;
        }
        let share = |name| f64::from(*first.get(name).unwrap_or(&0)) / 2000.0;
        assert!((0.85..0.95).contains(&share("heavy")), "{first:?}");
        assert!((0.06..0.14).contains(&share("light")), "{first:?}");
        assert!(share("zero") < 0.02, "{first:?}");
    }
}
