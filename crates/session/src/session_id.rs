//! Session IDs (contract §2): `1_` + unpadded URL-safe base64 of
//! `1~{project id}~{location}~{epoch ms}~{random}~~~`. The project id is field 1 exactly, because
//! SDKs check it before minting a client token. Whether a session is routed or relayed is kept in
//! [`Sessions`], not in the ID.

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::{Rng, RngCore};

use crate::encoding::decode_lenient;
use crate::error::SessionIdError;
use crate::project::ProjectId;

/// Longest session ID text accepted (the hosted service documents up to 255 characters).
pub const MAX_SESSION_ID_LEN: usize = 512;

/// A session ID in canonical form (URL-safe alphabet, no padding), with its decoded fields.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionId {
    text: String,
    project: String,
    location: Option<Ipv4Addr>,
    created_ms: u64,
}

impl SessionId {
    /// Mints a new ID for `project` with 96 random bits. `location` is the create request's IPv4 hint.
    pub fn mint<R: RngCore>(project: &ProjectId, location: Option<Ipv4Addr>, now: SystemTime, rng: &mut R) -> Self {
        let created_ms = now.duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        let created_ms = u64::try_from(created_ms).unwrap_or(u64::MAX);
        let random: [u8; 12] = rng.gen();
        let location_text = location.map(|l| l.to_string()).unwrap_or_default();
        let plain = format!("1~{}~{location_text}~{created_ms}~{}~~~", project.as_str(), hex::encode(random));
        SessionId {
            text: format!("1_{}", URL_SAFE_NO_PAD.encode(plain)),
            project: project.as_str().to_owned(),
            location,
            created_ms,
        }
    }

    /// Parses an ID as received. Tolerates padding and the standard base64 alphabet (SDKs sometimes
    /// re-encode); the result is canonical, so a re-encoded ID equals the one we minted.
    pub fn parse(text: &str) -> Result<Self, SessionIdError> {
        let text = text.trim();
        if text.is_empty() || text.len() > MAX_SESSION_ID_LEN {
            return Err(SessionIdError::BadLength);
        }
        let body = text.strip_prefix("1_").ok_or(SessionIdError::MissingPrefix)?;
        let bytes = decode_lenient(body).ok_or(SessionIdError::BadBase64)?;
        let plain = std::str::from_utf8(&bytes).map_err(|_| SessionIdError::BadLayout("not UTF-8"))?;
        let fields: Vec<&str> = plain.split('~').collect();
        if fields.len() < 5 {
            return Err(SessionIdError::BadLayout("fewer than five fields"));
        }
        if fields[0] != "1" {
            return Err(SessionIdError::BadLayout("field 0 is not 1"));
        }
        let project = fields[1];
        if project.is_empty() || !project.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(SessionIdError::BadLayout("field 1 is not a project id"));
        }
        let location = match fields[2] {
            "" => None,
            l => Some(l.parse().map_err(|_| SessionIdError::BadLayout("field 2 is not an IPv4 address"))?),
        };
        let created_ms = fields[3].parse().map_err(|_| SessionIdError::BadLayout("field 3 is not a time"))?;
        if fields[4].is_empty() {
            return Err(SessionIdError::BadLayout("field 4 (random) is empty"));
        }
        Ok(SessionId {
            text: format!("1_{}", URL_SAFE_NO_PAD.encode(&bytes)),
            project: project.to_owned(),
            location,
            created_ms,
        })
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Field 1: the owning project's id, as written in the ID.
    pub fn project(&self) -> &str {
        &self.project
    }

    /// Field 2: the location hint.
    pub fn location(&self) -> Option<Ipv4Addr> {
        self.location
    }

    /// Field 3: creation time in milliseconds since the Unix epoch.
    pub fn created_ms(&self) -> u64 {
        self.created_ms
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// How a session carries media. Only routed sessions go through our media router; dial refuses
/// relayed ones with 409.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MediaMode {
    /// `p2p.preference=disabled` or absent.
    #[default]
    Routed,
    /// `p2p.preference=enabled`.
    Relayed,
}

/// What the gateway remembers about a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The owning project.
    pub project: ProjectId,
    /// Routed or relayed.
    pub media_mode: MediaMode,
}

/// The sessions this gateway created, by canonical ID.
#[derive(Debug, Clone, Default)]
pub struct Sessions {
    by_id: HashMap<String, (SessionId, SessionInfo)>,
}

impl Sessions {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Mints an ID for `project` and records the session.
    pub fn create<R: RngCore>(
        &mut self,
        project: &ProjectId,
        media_mode: MediaMode,
        location: Option<Ipv4Addr>,
        now: SystemTime,
        rng: &mut R,
    ) -> SessionId {
        loop {
            let id = SessionId::mint(project, location, now, rng);
            if !self.by_id.contains_key(id.as_str()) {
                let info = SessionInfo { project: project.clone(), media_mode };
                self.by_id.insert(id.as_str().to_owned(), (id.clone(), info));
                return id;
            }
        }
    }

    /// Looks a session up by the ID as received (any accepted encoding).
    pub fn get(&self, text: &str) -> Option<(&SessionId, &SessionInfo)> {
        let canonical = SessionId::parse(text).ok()?;
        self.by_id.get(canonical.as_str()).map(|(id, info)| (id, info))
    }

    /// Forgets a session.
    pub fn remove(&mut self, id: &SessionId) -> Option<SessionInfo> {
        self.by_id.remove(id.as_str()).map(|(_, info)| info)
    }

    /// Number of sessions.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::time::Duration;

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn minted_layout() {
        let key = ProjectId::api_key("123456").expect("key");
        let id = SessionId::mint(
            &key,
            Some(Ipv4Addr::new(10, 1, 2, 3)),
            at(1_700_000_000_123),
            &mut StdRng::seed_from_u64(1),
        );
        let body = id.as_str().strip_prefix("1_").expect("prefix");
        assert!(body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{body}");
        let plain = String::from_utf8(URL_SAFE_NO_PAD.decode(body).expect("b64")).expect("utf8");
        let fields: Vec<&str> = plain.split('~').collect();
        assert_eq!(fields.len(), 8, "{plain}");
        assert_eq!(&fields[..4], ["1", "123456", "10.1.2.3", "1700000000123"]);
        assert_eq!(fields[4].len(), 24);
        assert_eq!(&fields[5..], ["", "", ""]);
        let parsed = SessionId::parse(id.as_str()).expect("parse");
        assert_eq!(parsed, id);
        assert_eq!(parsed.project(), "123456");
        assert_eq!(parsed.location(), Some(Ipv4Addr::new(10, 1, 2, 3)));
        assert_eq!(parsed.created_ms(), 1_700_000_000_123);
    }

    #[test]
    fn re_encoded_ids_parse_to_the_same_canonical_id() {
        let app = ProjectId::application("9f2b4c1e-0a1b-4c2d-8e3f-123456789abc").expect("app");
        let mut rng = StdRng::seed_from_u64(2);
        for _ in 0..50 {
            let id = SessionId::mint(&app, None, at(1_700_000_000_000), &mut rng);
            let raw = URL_SAFE_NO_PAD.decode(&id.as_str()[2..]).expect("b64");
            for alt in
                [URL_SAFE.encode(&raw), STANDARD.encode(&raw), STANDARD.encode(&raw).trim_end_matches('=').to_owned()]
            {
                let parsed = SessionId::parse(&format!("1_{alt}")).expect("re-encoded");
                assert_eq!(parsed, id);
            }
        }
    }

    #[test]
    fn garbage_is_an_error() {
        let ok = |plain: &str| format!("1_{}", URL_SAFE_NO_PAD.encode(plain));
        assert_eq!(SessionId::parse(""), Err(SessionIdError::BadLength));
        assert_eq!(SessionId::parse(&"1_A".repeat(300)), Err(SessionIdError::BadLength));
        assert_eq!(SessionId::parse("2_MX4"), Err(SessionIdError::MissingPrefix));
        assert_eq!(SessionId::parse("1_***"), Err(SessionIdError::BadBase64));
        assert_eq!(SessionId::parse("1_A"), Err(SessionIdError::BadBase64));
        assert!(matches!(
            SessionId::parse(&format!("1_{}", URL_SAFE_NO_PAD.encode([0xff, 0xfe, 0x7e]))),
            Err(SessionIdError::BadLayout(_))
        ));
        for plain in
            ["1~123", "2~1~~5~r~~~", "1~~~5~r~~~", "1~1 2~~5~r~~~", "1~1~999.1.1.1~5~r~~~", "1~1~~x~r~~~", "1~1~~5~~~~"]
        {
            assert!(matches!(SessionId::parse(&ok(plain)), Err(SessionIdError::BadLayout(_))), "{plain}");
        }
        assert!(SessionId::parse(&ok("1~1~~5~r~~~")).is_ok());
    }

    #[test]
    fn registry_keeps_media_mode_and_finds_re_encoded_ids() {
        let key = ProjectId::api_key("123456").expect("key");
        let mut sessions = Sessions::new();
        let mut rng = StdRng::seed_from_u64(3);
        let routed = sessions.create(&key, MediaMode::Routed, None, at(1), &mut rng);
        let relayed = sessions.create(&key, MediaMode::Relayed, None, at(1), &mut rng);
        assert_ne!(routed, relayed);
        assert_eq!(sessions.get(routed.as_str()).map(|(_, i)| i.media_mode), Some(MediaMode::Routed));
        assert_eq!(sessions.get(relayed.as_str()).map(|(_, i)| i.media_mode), Some(MediaMode::Relayed));
        let raw = URL_SAFE_NO_PAD.decode(&relayed.as_str()[2..]).expect("b64");
        let padded = format!("1_{}", STANDARD.encode(raw));
        assert_eq!(sessions.get(&padded).map(|(id, _)| id), Some(&relayed));
        assert!(sessions.get("1_garbage").is_none());
        assert_eq!(sessions.remove(&routed).map(|i| i.media_mode), Some(MediaMode::Routed));
        assert_eq!(sessions.len(), 1);
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,600}") {
            let _ = SessionId::parse(&s);
            let _ = SessionId::parse(&format!("1_{s}"));
        }

        #[test]
        fn mint_parse_round_trip(key in "[0-9]{1,20}", ms in 0u64..4_000_000_000_000, seed: u64, loc: Option<[u8; 4]>) {
            let project = ProjectId::api_key(&key).expect("key");
            let location = loc.map(Ipv4Addr::from);
            let id = SessionId::mint(&project, location, at(ms), &mut StdRng::seed_from_u64(seed));
            let parsed = SessionId::parse(id.as_str()).expect("parse");
            prop_assert_eq!(parsed.project(), key.as_str());
            prop_assert_eq!(parsed.location(), location);
            prop_assert_eq!(parsed.created_ms(), ms);
            prop_assert_eq!(parsed, id);
        }
    }
}
