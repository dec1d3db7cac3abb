//! RFC 3264 offer/answer for the SIP leg, seen from the gateway.

use crate::codec::{fmtp_param, Codec};
use crate::error::NegotiationError;
use crate::sdp::{Attribute, Connection, Direction, Media, Origin, Sdp};
use std::net::{IpAddr, SocketAddr};

/// The DTLS role attribute (RFC 4145 / RFC 5763).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// `actpass` (offers).
    ActPass,
    /// `active`: the DTLS client.
    Active,
    /// `passive`: the DTLS server.
    Passive,
}

impl Setup {
    fn parse(s: &str) -> Option<Setup> {
        match s.trim().to_ascii_lowercase().as_str() {
            "actpass" => Some(Setup::ActPass),
            "active" => Some(Setup::Active),
            "passive" => Some(Setup::Passive),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Setup::ActPass => "actpass",
            Setup::Active => "active",
            Setup::Passive => "passive",
        }
    }
}

/// One SDES key we can offer or answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdesKey {
    /// Suite name (`AES_CM_128_HMAC_SHA1_80`...).
    pub suite: String,
    /// Key parameters (`inline:...`). Never logged.
    pub key_params: String,
}

/// Media security of the leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaSecurity {
    /// RTP/AVP, never SRTP.
    None,
    /// RTP/SAVP with `a=crypto`, keys in preference order.
    Sdes(Vec<SdesKey>),
    /// UDP/TLS/RTP/SAVP with our certificate fingerprint (`sha-256 AB:CD:...`).
    Dtls {
        /// Our fingerprint attribute value.
        fingerprint: String,
    },
}

/// What the gateway offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferOptions {
    /// Address in `o=` and `c=`.
    pub address: IpAddr,
    /// Local audio RTP port.
    pub audio_port: u16,
    /// Audio codecs in preference order.
    pub audio_codecs: Vec<Codec>,
    /// Video: local port and codecs in preference order.
    pub video: Option<(u16, Vec<Codec>)>,
    /// Offer telephone-event at each audio clock rate.
    pub telephone_event: bool,
    /// `a=ptime`.
    pub ptime: Option<u32>,
    /// Offer `a=rtcp-mux` (we still accept a separate RTCP port).
    pub rtcp_mux: bool,
    /// Media security.
    pub security: MediaSecurity,
    /// The most video bitrate we want to receive, bit/s (RFC 3264 §5: `b=` in an offer or an
    /// answer is what its author receives): written on the video m-line as `b=TIAS` (RFC 3890)
    /// and, for peers that read only that, `b=AS` (kbit/s, 5% added for packet headers).
    pub video_receive_bitrate: Option<u64>,
    /// Whether an `a=crypto` key of a peer's offer is usable (its suite name and key
    /// parameters): of several lines with a suite we support, the first usable one is taken (RFC
    /// 4568 §7.1.2: the answerer picks one it can use). The negotiation does no cryptography;
    /// without a check, the first line with a suite we support is taken.
    pub sdes_key_check: Option<SdesKeyCheck>,
}

/// A check of a peer's SDES key (see [`OfferOptions::sdes_key_check`]): suite name and key
/// parameters in, usable or not out.
#[derive(Clone, Copy)]
pub struct SdesKeyCheck(pub fn(&str, &str) -> bool);

impl std::fmt::Debug for SdesKeyCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SdesKeyCheck")
    }
}

/// Checks compare equal: options differ by what they offer, not by how keys are checked.
impl PartialEq for SdesKeyCheck {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for SdesKeyCheck {}

impl Default for OfferOptions {
    fn default() -> Self {
        OfferOptions {
            address: IpAddr::from([127, 0, 0, 1]),
            audio_port: 40000,
            audio_codecs: vec![Codec::Opus, Codec::G722, Codec::Pcmu, Codec::Pcma],
            video: None,
            telephone_event: true,
            ptime: Some(20),
            rtcp_mux: true,
            security: MediaSecurity::None,
            video_receive_bitrate: None,
            sdes_key_check: None,
        }
    }
}

/// The SRTP keys agreed by SDES.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdesAgreement {
    /// The crypto tag.
    pub tag: u32,
    /// The suite.
    pub suite: String,
    /// Our key parameters (we protect with these).
    pub local_key_params: String,
    /// The peer's key parameters (we unprotect with these).
    pub remote_key_params: String,
}

/// The DTLS-SRTP parameters agreed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DtlsAgreement {
    /// The peer's certificate fingerprint (`sha-256 AB:...`).
    pub remote_fingerprint: String,
    /// Our role: `Active` = DTLS client.
    pub local_setup: Setup,
}

/// The outcome for one media stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaAgreement {
    /// Index of the m-line.
    pub index: usize,
    /// The codec we send, with the peer's payload type for it.
    pub codec: Codec,
    /// The payload type to send `codec` with.
    pub payload_type: u8,
    /// The peer's fmtp for that codec.
    pub fmtp: Option<String>,
    /// Every common codec with the peer's payload type (we accept all).
    pub codecs: Vec<(Codec, u8)>,
    /// telephone-event payload type and clock, when agreed.
    pub telephone_event: Option<(u8, u32)>,
    /// Where to send RTP (None while the peer is on hold by address, or
    /// when its address is a host name: see `remote_host`).
    pub remote_rtp: Option<SocketAddr>,
    /// Where to send RTCP (absent with rtcp-mux: use `remote_rtp`).
    pub remote_rtcp: Option<SocketAddr>,
    /// The peer's connection address as written (may be a host name).
    pub remote_host: String,
    /// The port RTP goes to, whatever the address (for a host name the caller resolves).
    pub remote_port: u16,
    /// The port RTCP goes to (`a=rtcp`'s, or the one after RTP's), whatever the address; `None`
    /// with rtcp-mux, or after port 65535.
    pub remote_rtcp_port: Option<u16>,
    /// RTCP multiplexed on the RTP port.
    pub rtcp_mux: bool,
    /// The direction we use.
    pub local_direction: Direction,
    /// The direction the peer declared.
    pub remote_direction: Direction,
    /// The peer put the call on hold (sendonly, inactive, or c=0.0.0.0).
    pub remote_hold: bool,
    /// Packetisation time the peer asked for.
    pub ptime: Option<u32>,
    /// SDES keys, when SRTP by SDES.
    pub sdes: Option<SdesAgreement>,
    /// DTLS parameters, when DTLS-SRTP.
    pub dtls: Option<DtlsAgreement>,
    /// The largest picture the peer receives with `payload_type` (RFC 6236 `a=imageattr`), when
    /// it says (video).
    pub recv_max_picture: Option<(u32, u32)>,
    /// The bandwidth the peer says it receives on this stream (`b=TIAS` or `b=AS`, media or
    /// session level).
    pub remote_bandwidth: Option<crate::sdp::Bandwidth>,
    /// The RTCP feedback the peer takes for `payload_type` (RFC 4585 `a=rtcp-fb`, its own or the
    /// wildcard's), lower-cased: `nack`, `nack pli`, `ccm fir`, `ccm tmmbr`, `goog-remb`...
    pub remote_feedback: Vec<String>,
    /// The numbers our own description (offer or answer) gave the agreed codecs, where the
    /// peer's numbered them otherwise. A description's numbers are what its author receives with
    /// (RFC 3264 §5.1, §6.1), so the peer's packets carry these (see
    /// [`received_codec`](Self::received_codec)): an answer that renumbered our offer, or our
    /// answer that could not reuse an offer's number without changing what it meant for us
    /// (§8.3.2).
    pub local_payload_types: Vec<(Codec, u8)>,
    /// Likewise for telephone-event: our number at its clock, where the peer's differs.
    pub local_telephone_event: Option<u8>,
}

impl MediaAgreement {
    /// The codec of a packet of the peer's with payload type `pt`: by the peer's numbers (some
    /// peers send with their own), then by ours (what RFC 3264 has them send with).
    pub fn received_codec(&self, pt: u8) -> Option<Codec> {
        if let Some((c, _)) = self.codecs.iter().find(|(_, p)| *p == pt) {
            return Some(*c);
        }
        if self.is_telephone_event(pt) {
            return None;
        }
        self.local_payload_types.iter().find(|(_, p)| *p == pt).map(|(c, _)| *c)
    }

    /// Whether the peer's packets with payload type `pt` are telephone-events (by the peer's
    /// number, or by ours where the peer gave that number to nothing else).
    pub fn is_telephone_event(&self, pt: u8) -> bool {
        self.telephone_event.is_some_and(|(te, _)| te == pt)
            || (self.local_telephone_event == Some(pt) && !self.codecs.iter().any(|(_, p)| *p == pt))
    }

    /// Whether the peer takes the feedback `fb` (such as `nack` or `ccm tmmbr`).
    pub fn takes_feedback(&self, fb: &str) -> bool {
        self.remote_feedback.iter().any(|f| f.eq_ignore_ascii_case(fb))
    }
}

/// The outcome of an offer/answer exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreement {
    /// Audio, unless rejected or disabled.
    pub audio: Option<MediaAgreement>,
    /// Video, when offered and accepted.
    pub video: Option<MediaAgreement>,
}

/// One m-line of ours: what we offer and which payload types we gave.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LocalMedia {
    kind: &'static str,
    port: u16,
    codecs: Vec<(Codec, u8)>,
    events: Vec<(u8, u32)>,
}

/// The gateway's side of the session: builds offers, reads answers and
/// answers re-offers, keeping `o=` versions and m-line order right.
#[derive(Debug, Clone)]
pub struct LocalSession {
    options: OfferOptions,
    session_id: u64,
    version: u64,
    last_body: Option<String>,
    media: Vec<LocalMedia>,
    /// m-lines of the last offer/answer, to keep their number and order.
    layout: Vec<String>,
    /// The m-lines of the last description we produced (offer or answer).
    described: Vec<Media>,
    /// Every payload number our descriptions gave, by m-line, with its first meaning: a number
    /// keeps it for the whole session (RFC 3264 §8.3.2).
    numbers: Vec<Vec<Numbered>>,
    agreement: Option<Agreement>,
    local_hold: bool,
}

fn proto_for(sec: &MediaSecurity) -> &'static str {
    match sec {
        MediaSecurity::None => "RTP/AVP",
        MediaSecurity::Sdes(_) => "RTP/SAVP",
        MediaSecurity::Dtls { .. } => "UDP/TLS/RTP/SAVP",
    }
}

/// Allocates payload types for our codecs without collisions within one
/// m-line: static ones keep theirs, dynamic ones get their preferred
/// number or the next free one in 96..=127.
/// Codecs with their payload types.
type CodecPts = Vec<(Codec, u8)>;
/// telephone-event payload types with their clock rates.
type EventPts = Vec<(u8, u32)>;

fn allocate(codecs: &[Codec], te: bool) -> (CodecPts, EventPts) {
    // A codec listed twice is offered once.
    let mut unique: Vec<Codec> = Vec::new();
    for c in codecs {
        if !unique.contains(c) {
            unique.push(*c);
        }
    }
    let codecs = &unique[..];
    let mut used: Vec<u8> = codecs.iter().filter_map(|c| c.static_pt()).collect();
    let take = |preferred: u8, used: &mut Vec<u8>| -> Option<u8> {
        let pt = if !used.contains(&preferred) { Some(preferred) } else { (96..=127).find(|p| !used.contains(p)) };
        if let Some(p) = pt {
            used.push(p);
        }
        pt
    };
    let mut out = Vec::new();
    for c in codecs {
        match c.static_pt() {
            Some(p) => out.push((*c, p)),
            None => {
                if let Some(p) = take(c.preferred_dynamic_pt(), &mut used) {
                    out.push((*c, p));
                }
            }
        }
    }
    let mut events = Vec::new();
    if te {
        let mut clocks: Vec<u32> = codecs.iter().filter(|c| c.is_audio()).map(|c| c.clock_rate()).collect();
        clocks.dedup();
        let mut seen = Vec::new();
        for clock in clocks {
            if seen.contains(&clock) {
                continue;
            }
            seen.push(clock);
            let preferred = if clock == 8000 { 101 } else { 110 };
            if let Some(p) = take(preferred, &mut used) {
                events.push((p, clock));
            }
        }
    }
    (out, events)
}

impl LocalSession {
    /// A session with these options; `session_id` goes into `o=`.
    pub fn new(options: OfferOptions, session_id: u64) -> LocalSession {
        let mut media = Vec::new();
        let (codecs, events) = allocate(&options.audio_codecs, options.telephone_event);
        media.push(LocalMedia { kind: "audio", port: options.audio_port, codecs, events });
        if let Some((port, v)) = &options.video {
            let (codecs, _) = allocate(v, false);
            media.push(LocalMedia { kind: "video", port: *port, codecs, events: Vec::new() });
        }
        LocalSession {
            options,
            session_id,
            version: 0,
            last_body: None,
            media,
            layout: Vec::new(),
            described: Vec::new(),
            numbers: Vec::new(),
            agreement: None,
            local_hold: false,
        }
    }

    /// Which of our media each m-line of `kinds` is: the first of ours of its kind that an earlier
    /// m-line did not take (`None`: a kind we do not carry, or one more of a kind).
    fn slots(&self, kinds: &[String]) -> Vec<Option<usize>> {
        let mut taken = vec![false; self.media.len()];
        kinds
            .iter()
            .map(|k| {
                let j = (0..self.media.len()).find(|&j| !taken[j] && self.media[j].kind == k.as_str())?;
                taken[j] = true;
                Some(j)
            })
            .collect()
    }

    /// The current agreement, after an exchange completed.
    pub fn agreement(&self) -> Option<&Agreement> {
        self.agreement.as_ref()
    }

    /// The `o=` version of the last description we produced.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// We no longer carry media of `kind` (`"video"`: the far end declined it, or its port could
    /// not be opened): from now on an m-line of that kind is answered rejected (port 0), in our
    /// re-offers as in our answers, instead of naming a port nothing listens on.
    pub fn stop_carrying(&mut self, kind: &str) {
        self.media.retain(|m| m.kind != kind);
    }

    /// Puts the peer on hold from our side (our next offer is sendonly).
    pub fn set_local_hold(&mut self, hold: bool) {
        self.local_hold = hold;
    }

    fn wanted_direction(&self) -> Direction {
        if self.local_hold {
            Direction::SendOnly
        } else {
            Direction::SendRecv
        }
    }

    /// Builds our offer: the initial one, or a re-offer (RFC 3264 §8) with the m-lines of the last
    /// exchange in their order (ours where they were, the agreed codec first and every payload
    /// number meaning what it meant in our last description; a line of a kind we do not carry
    /// stays rejected, port 0) and any of ours not among them added after.
    pub fn create_offer(&mut self) -> Sdp {
        let kinds: Vec<String> = if self.layout.is_empty() {
            self.media.iter().map(|lm| lm.kind.to_owned()).collect()
        } else {
            self.layout.clone()
        };
        let slots = self.slots(&kinds);
        let mut media: Vec<Media> = kinds
            .iter()
            .enumerate()
            .map(|(i, kind)| match slots[i] {
                Some(j) => self.offer_section(i, j),
                None => self.rejected_section(i, kind),
            })
            .collect();
        for j in 0..self.media.len() {
            if !slots.contains(&Some(j)) {
                let section = self.offer_section(media.len(), j);
                media.push(section);
            }
        }
        self.layout = media.iter().map(|m| m.kind.clone()).collect();
        self.finish(media)
    }

    /// Our media `j` offered as m-line `i`.
    fn offer_section(&self, i: usize, j: usize) -> Media {
        let lm = &self.media[j];
        let agreed = self.agreement.as_ref().and_then(|a| agreement_at(a, i)).map(|a| a.codec);
        let (codecs, events) = stable_numbers(lm, self.numbered(i), agreed);
        self.media_section(lm, &codecs, &events, self.wanted_direction(), None)
    }

    /// m-line `i` of a kind we do not carry, offered rejected (port 0) as it was.
    fn rejected_section(&self, i: usize, kind: &str) -> Media {
        let before = self.described.get(i);
        Media {
            kind: kind.to_owned(),
            port: 0,
            port_count: None,
            proto: before.map_or_else(|| proto_for(&self.options.security).to_owned(), |m| m.proto.clone()),
            formats: vec![before.and_then(|m| m.formats.first().cloned()).unwrap_or_else(|| "0".to_owned())],
            connection: None,
            lines: Vec::new(),
            attributes: Vec::new(),
        }
    }

    fn media_section(
        &self,
        lm: &LocalMedia,
        codecs: &[(Codec, u8)],
        events: &[(u8, u32)],
        dir: Direction,
        crypto_answer: Option<(u32, &SdesKey)>,
    ) -> Media {
        let mut formats: Vec<String> = codecs.iter().map(|(_, p)| p.to_string()).collect();
        formats.extend(events.iter().map(|(p, _)| p.to_string()));
        let mut attributes = Vec::new();
        for (c, p) in codecs {
            let map = match c.channels() {
                Some(ch) => format!("{p} {}/{}/{ch}", c.encoding(), c.clock_rate()),
                None => format!("{p} {}/{}", c.encoding(), c.clock_rate()),
            };
            attributes.push(Attribute::new("rtpmap", Some(map)));
            if let Some(f) = c.fmtp() {
                attributes.push(Attribute::new("fmtp", Some(format!("{p} {f}"))));
            }
            if lm.kind == "video" {
                for fb in ["nack", "nack pli", "ccm fir", "ccm tmmbr"] {
                    attributes.push(Attribute::new("rtcp-fb", Some(format!("{p} {fb}"))));
                }
            }
        }
        for (p, clock) in events {
            attributes.push(Attribute::new("rtpmap", Some(format!("{p} telephone-event/{clock}"))));
            attributes.push(Attribute::new("fmtp", Some(format!("{p} 0-16"))));
        }
        if lm.kind == "audio" {
            if let Some(pt) = self.options.ptime {
                attributes.push(Attribute::new("ptime", Some(pt.to_string())));
            }
        }
        if self.options.rtcp_mux {
            attributes.push(Attribute::new("rtcp-mux", None));
        }
        attributes.push(Attribute::new(
            "rtcp",
            Some(format!("{}", if self.options.rtcp_mux { lm.port } else { lm.port.wrapping_add(1) })),
        ));
        match (&self.options.security, crypto_answer) {
            (MediaSecurity::Sdes(keys), None) => {
                for (i, k) in keys.iter().enumerate() {
                    attributes.push(Attribute::new("crypto", Some(format!("{} {} {}", i + 1, k.suite, k.key_params))));
                }
            }
            (MediaSecurity::Sdes(_), Some((tag, k))) => {
                attributes.push(Attribute::new("crypto", Some(format!("{tag} {} {}", k.suite, k.key_params))));
            }
            (MediaSecurity::Dtls { fingerprint }, _) => {
                attributes.push(Attribute::new("fingerprint", Some(fingerprint.clone())));
                let setup = match self.agreement.as_ref().and_then(|a| a.audio.as_ref()).and_then(|m| m.dtls.as_ref()) {
                    Some(d) => d.local_setup,
                    None => Setup::ActPass,
                };
                attributes.push(Attribute::new("setup", Some(setup.as_str().into())));
            }
            (MediaSecurity::None, _) => {}
        }
        attributes.push(Attribute::new(dir.as_str(), None));
        Media {
            kind: lm.kind.to_owned(),
            port: lm.port,
            port_count: None,
            proto: proto_for(&self.options.security).to_owned(),
            formats,
            connection: None,
            lines: match (lm.kind, self.options.video_receive_bitrate) {
                ("video", Some(bps)) => {
                    vec![
                        ('b', format!("AS:{}", bps.saturating_mul(105).div_ceil(100_000))),
                        ('b', format!("TIAS:{bps}")),
                    ]
                }
                _ => Vec::new(),
            },
            attributes,
        }
    }

    /// Stamps `o=` with a version that increases exactly when the
    /// description changed (RFC 3264 section 8).
    fn finish(&mut self, media: Vec<Media>) -> Sdp {
        let mut sdp = Sdp {
            origin: Origin {
                username: "-".into(),
                session_id: self.session_id.to_string(),
                session_version: self.version,
                net_type: "IN".into(),
                addr_type: if self.options.address.is_ipv4() { "IP4" } else { "IP6" }.into(),
                address: self.options.address.to_string(),
            },
            session_name: "sip-interconnect".into(),
            connection: Some(Connection::ip(self.options.address)),
            lines: vec![('t', "0 0".into())],
            attributes: Vec::new(),
            media,
        };
        self.described.clone_from(&sdp.media);
        for (i, m) in sdp.media.iter().enumerate() {
            if self.numbers.len() <= i {
                self.numbers.push(Vec::new());
            }
            if m.port == 0 {
                continue;
            }
            for pt in m.payload_types() {
                if !self.numbers[i].iter().any(|n| n.pt == pt) {
                    self.numbers[i].push(Numbered { pt, map: m.rtpmap(pt), fmtp: m.fmtp(pt).map(str::to_owned) });
                }
            }
        }
        let body = sdp.to_string();
        let without_origin: String = body.lines().filter(|l| !l.starts_with("o=")).collect::<Vec<_>>().join("\n");
        if self.last_body.as_deref() != Some(without_origin.as_str()) {
            if self.last_body.is_some() || self.version == 0 {
                self.version += 1;
            }
            self.last_body = Some(without_origin);
        }
        sdp.origin.session_version = self.version;
        sdp
    }

    /// Reads the answer to our offer.
    pub fn process_answer(&mut self, answer: &[u8]) -> Result<Agreement, NegotiationError> {
        let answer = Sdp::parse(answer)?;
        if answer.media.len() != self.layout.len() {
            return Err(NegotiationError::MediaCount { offer: self.layout.len(), answer: answer.media.len() });
        }
        let mut agreement = Agreement { audio: None, video: None };
        let slots = self.slots(&self.layout);
        for (i, m) in answer.media.iter().enumerate() {
            if m.kind != self.layout[i] {
                return Err(NegotiationError::Invalid("answer m-line kinds differ from the offer"));
            }
            if m.port == 0 {
                continue;
            }
            let Some(lm) = slots[i].map(|j| self.media[j].clone()) else { continue };
            let mut codecs = Vec::new();
            let mut te = None;
            // RFC 3264 section 6.1: the answer MAY list formats that were not
            // offered; they are ignored, as long as one offered format remains.
            let mut not_offered = None;
            for pt in m.payload_types() {
                let map = m.rtpmap(pt);
                if map.as_ref().is_some_and(|(e, _, _)| e.eq_ignore_ascii_case("telephone-event")) {
                    let clock = map.as_ref().map_or(8000, |x| x.1);
                    if lm.events.iter().any(|(_, c)| *c == clock) {
                        te.get_or_insert((pt, clock));
                    }
                    continue;
                }
                if matches!(
                    map.as_ref().map(|x| x.0.to_ascii_lowercase()).as_deref(),
                    Some("cn" | "red" | "ulpfec" | "rtx")
                ) {
                    continue;
                }
                match Codec::identify(pt, map.as_ref().map(|(e, c, ch)| (e.as_str(), *c, *ch)), m.fmtp(pt)) {
                    Some(codec) if lm.codecs.iter().any(|(c, _)| *c == codec) => codecs.push((codec, pt)),
                    Some(codec) => {
                        not_offered.get_or_insert_with(|| NegotiationError::NotOffered(codec.encoding().to_owned()));
                    }
                    None => {
                        not_offered.get_or_insert_with(|| NegotiationError::NotOffered(format!("payload type {pt}")));
                    }
                }
            }
            let Some(&(codec, pt)) = codecs.first() else {
                return Err(not_offered.unwrap_or(NegotiationError::NoCommonCodec(if lm.kind == "audio" {
                    "audio"
                } else {
                    "video"
                })));
            };
            // Telephone-event must share the chosen codec's clock.
            let te = te.filter(|(_, clock)| *clock == codec.clock_rate()).or_else(|| {
                m.payload_types().into_iter().find_map(|p| {
                    let (e, c, _) = m.rtpmap(p)?;
                    (e.eq_ignore_ascii_case("telephone-event")
                        && c == codec.clock_rate()
                        && lm.events.iter().any(|(_, offered)| *offered == c))
                    .then_some((p, c))
                })
            });
            let remote_dir = answer.direction(i);
            let (sdes, dtls) = self.security_from_answer(&answer, i, m)?;
            // Our numbers for what the answer renumbered: the peer sends with them.
            let local_payload_types = codecs
                .iter()
                .filter_map(|(c, answered)| {
                    let ours = lm.codecs.iter().find(|(o, _)| o == c)?.1;
                    (ours != *answered).then_some((*c, ours))
                })
                .collect();
            let local_telephone_event = te.and_then(|(answered, clock)| {
                let ours = lm.events.iter().find(|(_, c)| *c == clock)?.0;
                (ours != answered).then_some(ours)
            });
            let mut ag = self.media_agreement(
                &answer,
                i,
                codec,
                pt,
                codecs,
                te,
                remote_dir,
                // What we offered, narrowed by the answer: we send only if
                // the peer receives, receive only if it sends (section 6.1).
                remote_dir.answer_to(self.wanted_direction()),
                sdes,
                dtls,
            );
            ag.local_payload_types = local_payload_types;
            ag.local_telephone_event = local_telephone_event;
            match lm.kind {
                "audio" if agreement.audio.is_none() => agreement.audio = Some(ag),
                "video" if agreement.video.is_none() => agreement.video = Some(ag),
                _ => {}
            }
        }
        if agreement.audio.is_none() {
            return Err(NegotiationError::AudioRejected);
        }
        self.agreement = Some(agreement.clone());
        Ok(agreement)
    }

    fn security_from_answer(
        &self,
        answer: &Sdp,
        i: usize,
        m: &Media,
    ) -> Result<(Option<SdesAgreement>, Option<DtlsAgreement>), NegotiationError> {
        match &self.options.security {
            MediaSecurity::None => {
                if m.proto.contains("SAVP") {
                    return Err(NegotiationError::Security("answer uses SRTP but none was offered"));
                }
                Ok((None, None))
            }
            MediaSecurity::Sdes(keys) => {
                if !m.proto.eq_ignore_ascii_case("RTP/SAVP") && !m.proto.eq_ignore_ascii_case("RTP/SAVPF") {
                    return Err(NegotiationError::Security("secure media required: answer is not RTP/SAVP"));
                }
                let crypto = m.attrs("crypto").next().ok_or(NegotiationError::Security("answer has no a=crypto"))?;
                let (tag, suite, params) =
                    parse_crypto(crypto).ok_or(NegotiationError::Security("malformed a=crypto"))?;
                let ours = keys
                    .get((tag as usize).wrapping_sub(1))
                    .filter(|k| k.suite == suite)
                    .ok_or(NegotiationError::Security("answer's a=crypto tag or suite was not offered"))?;
                Ok((
                    Some(SdesAgreement {
                        tag,
                        suite,
                        local_key_params: ours.key_params.clone(),
                        remote_key_params: params,
                    }),
                    None,
                ))
            }
            MediaSecurity::Dtls { .. } => {
                if !m.proto.to_ascii_uppercase().contains("TLS") {
                    return Err(NegotiationError::Security("secure media required: answer is not UDP/TLS/RTP/SAVP"));
                }
                let fp = pick_fingerprint(answer, i)
                    .ok_or(NegotiationError::Security("answer has no a=fingerprint with a hash we check"))?;
                // The answerer picks active or passive; actpass in an answer
                // is tolerated as passive (we connect).
                let theirs = answer.media_or_session_attr(i, "setup").and_then(Setup::parse).unwrap_or(Setup::Active);
                let local_setup = if theirs == Setup::Active { Setup::Passive } else { Setup::Active };
                Ok((None, Some(DtlsAgreement { remote_fingerprint: fp.to_owned(), local_setup })))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn media_agreement(
        &self,
        sdp: &Sdp,
        i: usize,
        codec: Codec,
        pt: u8,
        codecs: Vec<(Codec, u8)>,
        te: Option<(u8, u32)>,
        remote_dir: Direction,
        local_dir: Direction,
        sdes: Option<SdesAgreement>,
        dtls: Option<DtlsAgreement>,
    ) -> MediaAgreement {
        let m = &sdp.media[i];
        let conn = sdp.connection_of(i);
        let host = conn.map(|c| c.address.clone()).unwrap_or_default();
        let hold_addr = conn.is_some_and(Connection::is_hold_address);
        let ip = conn.and_then(Connection::ip_addr).filter(|a| !a.is_unspecified());
        let rtcp_mux = m.has_attr("rtcp-mux") && self.options.rtcp_mux;
        let remote_rtp = ip.map(|a| SocketAddr::new(a, m.port));
        let remote_rtcp = if rtcp_mux {
            None
        } else {
            match m.attr("rtcp").and_then(parse_rtcp_attr) {
                Some((port, addr)) => addr.or(ip).map(|a| SocketAddr::new(a, port)),
                // RTP on the last port leaves none for RTCP: then none is sent.
                None => ip.zip(m.port.checked_add(1)).map(|(a, port)| SocketAddr::new(a, port)),
            }
        };
        let remote_rtcp_port = if rtcp_mux {
            None
        } else {
            m.attr("rtcp").and_then(parse_rtcp_attr).map(|(port, _)| port).or_else(|| m.port.checked_add(1))
        };
        MediaAgreement {
            remote_port: m.port,
            remote_rtcp_port,
            index: i,
            codec,
            payload_type: pt,
            fmtp: m.fmtp(pt).map(str::to_owned),
            codecs,
            telephone_event: te,
            remote_rtp,
            remote_rtcp,
            remote_host: host,
            rtcp_mux,
            local_direction: local_dir,
            remote_direction: remote_dir,
            remote_hold: hold_addr || matches!(remote_dir, Direction::SendOnly | Direction::Inactive),
            ptime: m.attr("ptime").and_then(|p| p.trim().parse().ok()),
            sdes,
            dtls,
            recv_max_picture: m.imageattr_recv_max(pt),
            remote_bandwidth: sdp.bandwidth_of(i),
            remote_feedback: m.rtcp_feedback(pt),
            local_payload_types: Vec::new(),
            local_telephone_event: None,
        }
    }

    /// Answers an offer from the peer (a re-INVITE or UPDATE with SDP):
    /// hold and resume, new addresses, new keys, changed payload types.
    pub fn answer_offer(&mut self, offer: &[u8]) -> Result<(Sdp, Agreement), NegotiationError> {
        let offer = Sdp::parse(offer)?;
        if !self.layout.is_empty() && offer.media.len() < self.layout.len() {
            return Err(NegotiationError::Invalid("a re-offer may not remove m-lines (RFC 3264 section 8)"));
        }
        // Nor reorder or retype them: an m-line in use (agreed) keeps its kind; a rejected one
        // may be reused for another (§8.1).
        let in_use = |i: usize| self.agreement.as_ref().is_some_and(|a| agreement_at(a, i).is_some());
        let retyped =
            self.layout.iter().zip(&offer.media).enumerate().any(|(i, (kind, m))| *kind != m.kind && in_use(i));
        if retyped {
            return Err(NegotiationError::Invalid(
                "a re-offer may not change the kind of an m-line in use (RFC 3264 section 8)",
            ));
        }
        let mut agreement = Agreement { audio: None, video: None };
        let mut answer_media = Vec::new();
        let previous = self.agreement.clone();
        for (i, m) in offer.media.iter().enumerate() {
            let slot = self.media.iter().position(|lm| lm.kind == m.kind);
            let taken = match m.kind.as_str() {
                "audio" => agreement.audio.is_some(),
                "video" => agreement.video.is_some(),
                _ => true,
            };
            let reject = |kind: &str, proto: &str, fmt: &[String]| Media {
                kind: kind.to_owned(),
                port: 0,
                port_count: None,
                proto: proto.to_owned(),
                formats: fmt.first().cloned().into_iter().collect(),
                connection: None,
                lines: Vec::new(),
                attributes: Vec::new(),
            };
            let (Some(slot), false, true) = (slot, taken, m.port != 0) else {
                answer_media.push(reject(&m.kind, &m.proto, &m.formats));
                continue;
            };
            let lm = self.media[slot].clone();
            // Security must match ours.
            let secure_offer = m.proto.to_ascii_uppercase().contains("SAVP");
            let sec_ok = match &self.options.security {
                MediaSecurity::None => !secure_offer,
                MediaSecurity::Sdes(_) => secure_offer && !m.proto.to_ascii_uppercase().contains("TLS"),
                MediaSecurity::Dtls { .. } => m.proto.to_ascii_uppercase().contains("TLS"),
            };
            if !sec_ok {
                if lm.kind == "audio" {
                    return Err(NegotiationError::Security("the offer's media security does not match ours"));
                }
                answer_media.push(reject(&m.kind, &m.proto, &m.formats));
                continue;
            }
            // Codecs the offer has, in its order; keep the current one if possible.
            let mut common = Vec::new();
            let mut events = Vec::new();
            for pt in m.payload_types() {
                let map = m.rtpmap(pt);
                if let Some((e, clock, _)) = &map {
                    if e.eq_ignore_ascii_case("telephone-event") {
                        events.push((pt, *clock));
                        continue;
                    }
                }
                if let Some(c) = Codec::identify(pt, map.as_ref().map(|(e, c, ch)| (e.as_str(), *c, *ch)), m.fmtp(pt)) {
                    if lm.codecs.iter().any(|(x, _)| *x == c) {
                        common.push((c, pt));
                    }
                }
            }
            // Of several H.264 payloads of one mode, the Baseline family first: what we send.
            common.sort_by_key(|(c, pt)| if c.is_h264() { h264_rank(m.fmtp(*pt)) } else { 0 });
            let current = previous
                .as_ref()
                .and_then(|a| if lm.kind == "audio" { a.audio.as_ref() } else { a.video.as_ref() })
                .map(|a| a.codec);
            let chosen = current.and_then(|c| common.iter().find(|(x, _)| *x == c).copied()).or_else(|| {
                // Otherwise our preference among what they offer.
                lm.codecs.iter().find_map(|(c, _)| common.iter().find(|(x, _)| x == c).copied())
            });
            let Some((codec, pt)) = chosen else {
                if lm.kind == "audio" {
                    return Err(NegotiationError::NoCommonCodec("audio"));
                }
                answer_media.push(reject(&m.kind, &m.proto, &m.formats));
                continue;
            };
            let te =
                events.iter().copied().find(|(_, c)| *c == codec.clock_rate()).filter(|_| self.options.telephone_event);
            // Direction and hold.
            let conn = offer.connection_of(i);
            let hold_addr = conn.is_some_and(Connection::is_hold_address);
            let mut offered_dir = offer.direction(i);
            if hold_addr && offered_dir == Direction::SendRecv {
                offered_dir = Direction::SendOnly;
            }
            let local_dir = offered_dir.answer_to(self.wanted_direction());
            // Security parameters.
            let (sdes, dtls, crypto_answer) = match &self.options.security {
                MediaSecurity::Sdes(keys) => {
                    let usable =
                        |suite: &str, params: &str| self.options.sdes_key_check.is_none_or(|c| (c.0)(suite, params));
                    let picked = m.attrs("crypto").filter_map(parse_crypto).find_map(|(tag, suite, params)| {
                        keys.iter()
                            .find(|k| k.suite == suite && usable(&suite, &params))
                            .map(|k| (tag, k.clone(), params))
                    });
                    let Some((tag, key, params)) = picked else {
                        return Err(NegotiationError::Security("no a=crypto with a suite we support"));
                    };
                    (
                        Some(SdesAgreement {
                            tag,
                            suite: key.suite.clone(),
                            local_key_params: key.key_params.clone(),
                            remote_key_params: params,
                        }),
                        None,
                        Some((tag, key)),
                    )
                }
                MediaSecurity::Dtls { .. } => {
                    let fp = pick_fingerprint(&offer, i)
                        .ok_or(NegotiationError::Security("offer has no a=fingerprint with a hash we check"))?;
                    let theirs =
                        offer.media_or_session_attr(i, "setup").and_then(Setup::parse).unwrap_or(Setup::ActPass);
                    // Keep an established role; as answerer to actpass we are active.
                    let kept = previous
                        .as_ref()
                        .and_then(|a| a.audio.as_ref())
                        .and_then(|a| a.dtls.as_ref())
                        .map(|d| d.local_setup);
                    let local_setup = match theirs {
                        Setup::Active => Setup::Passive,
                        Setup::Passive => Setup::Active,
                        Setup::ActPass => kept.unwrap_or(Setup::Active),
                    };
                    (None, Some(DtlsAgreement { remote_fingerprint: fp.to_owned(), local_setup }), None)
                }
                MediaSecurity::None => (None, None, None),
            };
            let mut ag =
                self.media_agreement(&offer, i, codec, pt, common.clone(), te, offered_dir, local_dir, sdes, dtls);
            ag.remote_direction = offer.direction(i);
            // Answer with the offerer's payload numbers for what we chose (RFC 3264 §6.1), unless
            // our last description gave one another meaning (§8.3.2).
            let history = self.numbered(i);
            let offer_pts = m.payload_types();
            let our_pt = answer_number(history, &offer_pts, pt, pt_for(&lm, codec), &|n| n.codec() == Some(codec));
            let our_te = te.map(|(p, clock)| {
                let ours = lm.events.iter().find(|(_, c)| *c == clock).map_or(p, |(o, _)| *o);
                (answer_number(history, &offer_pts, p, ours, &|n| n.is_event(clock)), clock)
            });
            if our_pt != pt {
                ag.local_payload_types = vec![(codec, our_pt)];
            }
            ag.local_telephone_event = our_te.map(|(p, _)| p).filter(|p| te.is_some_and(|(t, _)| t != *p));
            let ev: Vec<(u8, u32)> = our_te.into_iter().collect();
            let mut media = self.media_section(
                &lm,
                &[(codec, our_pt)],
                &ev,
                local_dir,
                crypto_answer.as_ref().map(|(t, k)| (*t, k)),
            );
            // RFC 3264 §6: the answer's transport is the offer's (RTP/AVPF, RTP/SAVPF and
            // UDP/TLS/RTP/SAVPF included: the security matched above, and we take feedback).
            media.proto.clone_from(&m.proto);
            if let (true, Some(ours)) = (codec.is_h264(), codec.fmtp()) {
                let answered = h264_answer_fmtp(m.fmtp(pt), ours);
                for a in media.attributes.iter_mut().filter(|a| a.name == "fmtp") {
                    if a.value.as_deref().is_some_and(|v| v.split(' ').next() == Some(our_pt.to_string().as_str())) {
                        a.value = Some(format!("{our_pt} {answered}"));
                    }
                }
            }
            if !(m.has_attr("rtcp-mux") && self.options.rtcp_mux) {
                media.remove_attr("rtcp-mux");
                media.remove_attr("rtcp");
                media.attributes.insert(0, Attribute::new("rtcp", Some(lm.port.wrapping_add(1).to_string())));
            }
            if let Some(d) = &ag.dtls {
                media.remove_attr("setup");
                let dir_pos = media.attributes.len() - 1;
                media.attributes.insert(dir_pos, Attribute::new("setup", Some(d.local_setup.as_str().into())));
            }
            answer_media.push(media);
            ag.index = i;
            if lm.kind == "audio" {
                agreement.audio = Some(ag);
            } else {
                agreement.video = Some(ag);
            }
        }
        self.layout = answer_media.iter().map(|m| m.kind.clone()).collect();
        let sdp = self.finish(answer_media);
        self.agreement = Some(agreement.clone());
        Ok((sdp, agreement))
    }
}

/// The hashes a peer's certificate fingerprint is checked with, strongest first (RFC 8122 §5; the
/// DTLS layer computes each of them).
const FINGERPRINT_HASHES: [&str; 5] = ["sha-512", "sha-384", "sha-256", "sha-224", "sha-1"];

/// The peer's `a=fingerprint` for m-line `i` (media level, else session level): of several (RFC
/// 8122 §5 lets a peer give one per hash), the one with the strongest hash we check; `None` when
/// none has such a hash.
fn pick_fingerprint(sdp: &Sdp, i: usize) -> Option<&str> {
    let media: Vec<&str> = sdp.media.get(i).map(|m| m.attrs("fingerprint").collect()).unwrap_or_default();
    let all: Vec<&str> = if media.is_empty() {
        sdp.attributes
            .iter()
            .filter(|a| a.name.eq_ignore_ascii_case("fingerprint"))
            .filter_map(|a| a.value.as_deref())
            .collect()
    } else {
        media
    };
    FINGERPRINT_HASHES.iter().find_map(|hash| {
        all.iter().copied().find(|v| v.trim().split_once(' ').is_some_and(|(h, _)| h.eq_ignore_ascii_case(hash)))
    })
}

fn agreement_at(a: &Agreement, i: usize) -> Option<&MediaAgreement> {
    [a.audio.as_ref(), a.video.as_ref()].into_iter().flatten().find(|m| m.index == i)
}

/// The profile and constraint flags of an H.264 fmtp's `profile-level-id` (absent: Baseline,
/// RFC 6184 §8.1), `None` when it cannot be read.
fn h264_profile(fmtp: Option<&str>) -> Option<(u8, u8, u8)> {
    let Some(plid) = fmtp.and_then(|f| fmtp_param(f, "profile-level-id")) else {
        return Some((0x42, 0, 0x0a));
    };
    let byte = |i: usize| plid.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok());
    match (plid.len(), byte(0), byte(2), byte(4)) {
        (6, Some(p), Some(iop), Some(level)) => Some((p, iop, level)),
        _ => None,
    }
}

/// How well an offered H.264 payload fits what we send (lower is better): 0 for the Baseline
/// family and the Constrained Baseline signalled as Main or Extended (RFC 6184 table 5), 1 for
/// Main and High (whose decoders take our Constrained Baseline stream), 2 for the rest.
fn h264_rank(fmtp: Option<&str>) -> u8 {
    match h264_profile(fmtp) {
        Some((0x42, _, _)) => 0,
        Some((0x4d, iop, _)) if iop & 0x80 != 0 => 0,
        Some((0x58, iop, _)) if iop & 0xc0 == 0xc0 => 0,
        Some((0x4d | 0x58 | 0x64, _, _)) => 1,
        _ => 2,
    }
}

/// Our H.264 fmtp answering an offer's (`ours`: what we offer). RFC 6184 §8.2.2: the answer keeps
/// the offer's profile, so an offer of the Baseline, Main, Extended or High profile (`42801f`,
/// `42c01e`, `42e01f`, `4d001f`, `640c1f`...) is answered with its own profile and constraint
/// flags, at our level 3.1 when both sides allow level asymmetry (each names what it receives) and
/// at the lower of the two levels otherwise. We send Constrained Baseline whatever the profile,
/// which decoders of all four take; other profiles (intra-only, 4:4:4...) and unreadable values
/// keep ours.
fn h264_answer_fmtp(offered: Option<&str>, ours: &str) -> String {
    let Some((profile @ (0x42 | 0x4d | 0x58 | 0x64), iop, level)) =
        offered.filter(|f| fmtp_param(f, "profile-level-id").is_some()).and_then(|f| h264_profile(Some(f)))
    else {
        return ours.to_owned();
    };
    const OUR_LEVEL: u8 = 0x1f;
    let asymmetric = offered.and_then(|f| fmtp_param(f, "level-asymmetry-allowed")) == Some("1")
        && fmtp_param(ours, "level-asymmetry-allowed") == Some("1");
    let level = if asymmetric { OUR_LEVEL } else { level.min(OUR_LEVEL) };
    ours.split(';')
        .map(|kv| {
            if kv.trim().to_ascii_lowercase().starts_with("profile-level-id=") {
                format!("profile-level-id={profile:02x}{iop:02x}{level:02x}")
            } else {
                kv.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// A payload number one of our descriptions gave, with what it meant.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Numbered {
    pt: u8,
    map: Option<Rtpmap>,
    fmtp: Option<String>,
}

impl Numbered {
    fn codec(&self) -> Option<Codec> {
        Codec::identify(self.pt, self.map.as_ref().map(|(e, c, ch)| (e.as_str(), *c, *ch)), self.fmtp.as_deref())
    }

    fn is_event(&self, clock: u32) -> bool {
        self.map.as_ref().is_some_and(|(e, c, _)| e.eq_ignore_ascii_case("telephone-event") && *c == clock)
    }
}

impl LocalSession {
    /// The payload numbers our descriptions gave m-line `i` so far.
    fn numbered(&self, i: usize) -> &[Numbered] {
        self.numbers.get(i).map_or(&[], Vec::as_slice)
    }
}

/// The number our answer gives a payload the offer numbers `offered`: that one (RFC 3264 §6.1),
/// unless one of our descriptions (`history`) gave it another meaning, which may not change
/// (§8.3.2); then a number `history` gave this payload, or ours (`ours`), or a free dynamic one,
/// never one the offer uses (`offer_pts`). `is_this` tells whether a number is this payload.
fn answer_number(
    history: &[Numbered],
    offer_pts: &[u8],
    offered: u8,
    ours: u8,
    is_this: &dyn Fn(&Numbered) -> bool,
) -> u8 {
    let means_else = |p: u8| history.iter().any(|n| n.pt == p && !is_this(n));
    if !means_else(offered) {
        return offered;
    }
    if let Some(n) = history.iter().find(|n| is_this(n) && !offer_pts.contains(&n.pt)) {
        return n.pt;
    }
    if !means_else(ours) && !offer_pts.contains(&ours) {
        return ours;
    }
    (96..=127).find(|p| !offer_pts.contains(p) && !history.iter().any(|n| n.pt == *p)).unwrap_or(offered)
}

/// An `a=rtpmap` read: encoding, clock rate, channels.
type Rtpmap = (String, u32, Option<u16>);

/// The codecs and telephone-events of our media `lm` for a re-offer, `first` (the agreed codec)
/// first. RFC 3264 §8.3.2: a payload number keeps its meaning for the whole session, so each of
/// ours keeps a number our descriptions of this m-line (`history`) gave it (the peer's numbers,
/// when one was our answer to its offer); the others keep ours unless `history` gave that number
/// to something else, and then take a free one.
fn stable_numbers(lm: &LocalMedia, history: &[Numbered], first: Option<Codec>) -> (CodecPts, EventPts) {
    let mut used: Vec<u8> = history.iter().map(|n| n.pt).collect();
    let numbered_before = |wanted: &dyn Fn(&Numbered) -> bool| history.iter().find(|n| wanted(n)).map(|n| n.pt);
    let pick = |before: Option<u8>, ours: u8, used: &mut Vec<u8>| -> Option<u8> {
        // A static codec keeps its number unless a description of ours gave it another meaning;
        // then it takes a dynamic one (its rtpmap says what it is).
        let pt = before
            .or_else(|| (!used.contains(&ours)).then_some(ours))
            .or_else(|| (96..=127).find(|p| !used.contains(p)))?;
        used.push(pt);
        Some(pt)
    };
    let mut order: Vec<(Codec, u8)> = Vec::new();
    if let Some(c) = first.filter(|c| lm.codecs.iter().any(|(x, _)| x == c)) {
        order.push((c, pt_for(lm, c)));
    }
    order.extend(lm.codecs.iter().filter(|(c, _)| Some(*c) != first).copied());
    let mut codecs = Vec::new();
    for (c, ours) in order {
        let earlier = numbered_before(&|n| n.codec() == Some(c));
        if let Some(pt) = pick(earlier, ours, &mut used) {
            codecs.push((c, pt));
        }
    }
    let mut events = Vec::new();
    for &(ours, clock) in &lm.events {
        let earlier = numbered_before(&|n| n.is_event(clock));
        if let Some(pt) = pick(earlier, ours, &mut used) {
            events.push((pt, clock));
        }
    }
    (codecs, events)
}

fn pt_for(lm: &LocalMedia, c: Codec) -> u8 {
    lm.codecs.iter().find(|(x, _)| *x == c).map_or(0, |(_, p)| *p)
}

/// `a=crypto:<tag> <suite> <key-params> [session-params]`
fn parse_crypto(v: &str) -> Option<(u32, String, String)> {
    let mut it = v.split_whitespace();
    let tag = it.next()?.parse().ok()?;
    let suite = it.next()?.to_owned();
    let params = it.next()?.to_owned();
    Some((tag, suite, params))
}

/// `a=rtcp:<port> [IN IP4 <addr>]`
fn parse_rtcp_attr(v: &str) -> Option<(u16, Option<IpAddr>)> {
    let mut it = v.split_whitespace();
    let port = it.next()?.parse().ok()?;
    let addr = it.nth(2).and_then(|a| a.parse().ok());
    Some((port, addr))
}
