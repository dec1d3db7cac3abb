//! Dialog state (RFC 3261 section 12) for dialogs we created as UAC.

use crate::error::ParseError;
use crate::header::HeaderName;
use crate::message::{CSeq, Message, NameAddr};
use crate::method::Method;
use crate::transport::{Target, Transport};
use crate::uri::Uri;
use std::net::SocketAddr;

/// A dialog seen from our side (we sent the INVITE).
#[derive(Debug, Clone)]
pub(crate) struct Dialog {
    pub call_id: String,
    /// Our From, with our tag.
    pub local: NameAddr,
    /// Their To, with their tag.
    pub remote: NameAddr,
    pub local_seq: u32,
    pub remote_seq: Option<u32>,
    /// Route set, in the order Route headers are written.
    pub route_set: Vec<NameAddr>,
    pub remote_target: Uri,
    /// Where in-dialog requests are sent.
    pub next_hop: Target,
}

impl Dialog {
    /// Builds the dialog from a response with a To tag (1xx or 2xx) to our
    /// INVITE. `initial` is where the INVITE went.
    pub fn from_response(
        resp: &Message,
        local: &NameAddr,
        local_seq: u32,
        initial: &Target,
    ) -> Result<Dialog, ParseError> {
        let remote = resp.to()?;
        if remote.tag().is_none() {
            return Err(ParseError::Missing("To tag"));
        }
        // UAC: the route set is the Record-Route list in reverse.
        let mut route_set = resp.name_addrs(&HeaderName::RecordRoute)?;
        route_set.reverse();
        let remote_target = match resp.contact() {
            Some(c) => c?.uri,
            None => remote.uri.clone(),
        };
        let mut d = Dialog {
            call_id: resp.call_id()?.to_owned(),
            local: local.clone(),
            remote,
            local_seq,
            remote_seq: None,
            route_set,
            remote_target,
            next_hop: initial.clone(),
        };
        d.next_hop = d.compute_next_hop(initial);
        Ok(d)
    }

    /// A dialog whose answer brought no Record-Route keeps the pre-loaded route set of its INVITE
    /// (an outbound proxy, RFC 3261 §8.1.2): its requests go through the proxy as the INVITE did,
    /// with a Route header naming it. A Record-Route is the route set as the proxies asked.
    pub fn through(mut self, preloaded: &[NameAddr], initial: &Target) -> Dialog {
        if self.route_set.is_empty() && !preloaded.is_empty() {
            self.route_set = preloaded.to_vec();
            self.next_hop = self.compute_next_hop(initial);
        }
        self
    }

    /// Updates the remote target from a target refresh (2xx to re-INVITE,
    /// or an incoming re-INVITE / UPDATE with a Contact).
    pub fn refresh_target(&mut self, msg: &Message, initial: &Target) {
        if let Some(Ok(c)) = msg.contact() {
            self.remote_target = c.uri;
            self.next_hop = self.compute_next_hop(initial);
        }
    }

    /// The first Route (or the remote target) decides the next hop when its
    /// host is an IP literal; a host name keeps the initial destination,
    /// which the driver resolved already (see docs/interop.md).
    fn compute_next_hop(&self, initial: &Target) -> Target {
        let uri = self.route_set.first().map(|r| &r.uri).unwrap_or(&self.remote_target);
        let Some(sip) = uri.as_sip() else { return initial.clone() };
        let transport = match sip.transport_param() {
            Some(t) => Transport::parse(&t).unwrap_or(initial.transport),
            None if sip.secure => Transport::Tls,
            None => initial.transport,
        };
        let host =
            sip.params.value("maddr").and_then(|m| crate::uri::Host::parse(m).ok()).unwrap_or_else(|| sip.host.clone());
        match host.ip() {
            Some(ip) => Target {
                transport,
                addr: SocketAddr::new(ip, sip.port.unwrap_or(transport.default_port())),
                server_name: initial.server_name.clone(),
            },
            None => initial.clone(),
        }
    }

    /// The next local CSeq number.
    pub fn next_seq(&mut self) -> u32 {
        self.local_seq += 1;
        self.local_seq
    }

    /// A request inside the dialog with Request-URI, Route, From, To,
    /// Call-ID and CSeq set (RFC 3261 12.2.1.1, loose and strict routing).
    pub fn request(&self, method: Method, seq: u32) -> Message {
        let strict = self.route_set.first().is_some_and(|r| r.uri.as_sip().is_some_and(|u| !u.params.contains("lr")));
        let (ruri, routes): (Uri, Vec<String>) = if strict {
            let mut first = self.route_set[0].uri.clone();
            if let Uri::Sip(u) = &mut first {
                u.headers = None;
            }
            let mut routes: Vec<String> = self.route_set[1..].iter().map(ToString::to_string).collect();
            routes.push(format!("<{}>", self.remote_target));
            (first, routes)
        } else {
            (self.remote_target.clone(), self.route_set.iter().map(ToString::to_string).collect())
        };
        let mut m = Message::request(method.clone(), ruri);
        for r in routes {
            m.headers.push(HeaderName::Route, r);
        }
        m.headers.push(HeaderName::From, self.local.to_string());
        m.headers.push(HeaderName::To, self.remote.to_string());
        m.headers.push(HeaderName::CallId, self.call_id.clone());
        m.headers.push(HeaderName::CSeq, CSeq { seq, method }.to_string());
        m
    }

    /// Whether a request from the peer belongs to this dialog.
    pub fn matches_request(&self, call_id: &str, from_tag: Option<&str>, to_tag: Option<&str>) -> bool {
        call_id == self.call_id && to_tag == self.local.tag() && from_tag == self.remote.tag()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse_message, Framing, Limits};

    fn resp(rr: &str) -> Message {
        let s = format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=L\r\nTo: <sip:b@y>;tag=R\r\n\
Call-ID: c1\r\nCSeq: 1 INVITE\r\n{rr}Contact: <sip:b@192.0.2.5:5070;transport=tcp>\r\nContent-Length: 0\r\n\r\n"
        );
        parse_message(s.as_bytes(), &Limits::default(), Framing::Datagram).expect("parse")
    }

    fn initial() -> Target {
        Target::new(Transport::Udp, "198.51.100.1:5060".parse().expect("a"))
    }

    #[test]
    fn route_set_reversed_and_loose_routing() {
        let r =
            resp("Record-Route: <sip:p2.example;lr>, <sip:p1.example;lr>\r\nRecord-Route: <sip:203.0.113.9;lr>\r\n");
        let local = NameAddr::parse("<sip:a@x>;tag=L").expect("l");
        let d = Dialog::from_response(&r, &local, 1, &initial()).expect("dialog");
        let routes: Vec<String> = d.route_set.iter().map(|r| r.uri.to_string()).collect();
        assert_eq!(routes, vec!["sip:203.0.113.9;lr", "sip:p1.example;lr", "sip:p2.example;lr"]);
        assert_eq!(d.next_hop.addr, "203.0.113.9:5060".parse().expect("a"));
        let bye = d.request(Method::Bye, 2);
        assert_eq!(bye.start, crate::StartLine::Request { method: Method::Bye, uri: d.remote_target.clone() });
        assert_eq!(bye.headers.get_all(&HeaderName::Route).count(), 3);
        assert!(d.matches_request("c1", Some("R"), Some("L")));
        assert!(!d.matches_request("c1", Some("X"), Some("L")));
    }

    #[test]
    fn no_routes_uses_contact_and_strict_route() {
        let local = NameAddr::parse("<sip:a@x>;tag=L").expect("l");
        let d = Dialog::from_response(&resp(""), &local, 1, &initial()).expect("dialog");
        assert_eq!(d.next_hop, Target::new(Transport::Tcp, "192.0.2.5:5070".parse().expect("a")));
        let d =
            Dialog::from_response(&resp("Record-Route: <sip:strict.example>\r\n"), &local, 1, &initial()).expect("d");
        let bye = d.request(Method::Bye, 2);
        let crate::StartLine::Request { uri, .. } = &bye.start else { panic!() };
        assert_eq!(uri.to_string(), "sip:strict.example");
        assert_eq!(d.next_hop, initial());
        let last = bye.headers.get_all(&HeaderName::Route).last().expect("route");
        assert_eq!(last, "<sip:b@192.0.2.5:5070;transport=tcp>");
    }
}
