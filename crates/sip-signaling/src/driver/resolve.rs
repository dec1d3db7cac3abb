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
                let mut recs: Vec<_> = srv.iter().cloned().collect();
                // Priority ascending, then weight descending (a deterministic
                // approximation of RFC 2782's weighted choice).
                recs.sort_by_key(|r| (r.priority(), std::cmp::Reverse(r.weight())));
                for r in recs {
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
}
