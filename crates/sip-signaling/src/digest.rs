//! HTTP digest authentication for SIP (RFC 3261 section 22, RFC 2617,
//! RFC 7616 / RFC 8760 for SHA-256).

use crate::error::ParseError;
use md5::{Digest as _, Md5};
use sha2::Sha256;
use std::fmt;

/// Digest algorithms we can answer, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256 (RFC 8760).
    Sha256,
    /// SHA-256-sess.
    Sha256Sess,
    /// MD5 (the default when `algorithm` is absent).
    Md5,
    /// MD5-sess.
    Md5Sess,
}

impl Algorithm {
    fn parse(s: &str) -> Option<Algorithm> {
        match s.to_ascii_uppercase().as_str() {
            "MD5" => Some(Algorithm::Md5),
            "MD5-SESS" => Some(Algorithm::Md5Sess),
            "SHA-256" => Some(Algorithm::Sha256),
            "SHA-256-SESS" => Some(Algorithm::Sha256Sess),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    fn hash(self, data: &str) -> String {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => hex::encode(Md5::digest(data.as_bytes())),
            Algorithm::Sha256 | Algorithm::Sha256Sess => hex::encode(Sha256::digest(data.as_bytes())),
        }
    }

    fn is_sess(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess)
    }
}

/// A parsed `WWW-Authenticate` / `Proxy-Authenticate` Digest challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// realm
    pub realm: String,
    /// nonce
    pub nonce: String,
    /// opaque, echoed back
    pub opaque: Option<String>,
    /// algorithm
    pub algorithm: Algorithm,
    /// Whether `qop` offers `auth`.
    pub qop_auth: bool,
    /// `stale=true`: the nonce expired but the credentials were right.
    pub stale: bool,
}

impl Challenge {
    /// Parses a challenge; `Ok(None)` for a scheme or algorithm we do not
    /// support (another challenge in the same response may do).
    pub fn parse(value: &str) -> Result<Option<Challenge>, ParseError> {
        const BAD: ParseError =
            ParseError::HeaderValue { name: "WWW-Authenticate", reason: "malformed digest challenge" };
        let value = value.trim();
        let (scheme, rest) = value.split_once([' ', '\t']).ok_or(BAD)?;
        if !scheme.eq_ignore_ascii_case("Digest") {
            return Ok(None);
        }
        let mut realm = None;
        let mut nonce = None;
        let mut opaque = None;
        let mut algorithm = Some(Algorithm::Md5);
        let mut qop_auth = false;
        let mut stale = false;
        for (k, v) in auth_params(rest)? {
            match k.to_ascii_lowercase().as_str() {
                "realm" => realm = Some(v),
                "nonce" => nonce = Some(v),
                "opaque" => opaque = Some(v),
                "algorithm" => algorithm = Algorithm::parse(&v),
                "qop" => qop_auth = v.split(',').any(|q| q.trim().eq_ignore_ascii_case("auth")),
                "stale" => stale = v.eq_ignore_ascii_case("true"),
                _ => {}
            }
        }
        let Some(algorithm) = algorithm else { return Ok(None) };
        Ok(Some(Challenge { realm: realm.ok_or(BAD)?, nonce: nonce.ok_or(BAD)?, opaque, algorithm, qop_auth, stale }))
    }

    /// Picks the strongest supported challenge among several header values.
    pub fn pick<'a>(values: impl Iterator<Item = &'a str>) -> Result<Option<Challenge>, ParseError> {
        let mut best: Option<Challenge> = None;
        for v in values {
            if let Some(c) = Challenge::parse(v)? {
                if best.as_ref().is_none_or(|b| c.algorithm < b.algorithm) {
                    best = Some(c);
                }
            }
        }
        Ok(best)
    }
}

/// Splits `k=v, k="v, with comma"` into pairs (values unquoted).
fn auth_params(s: &str) -> Result<Vec<(String, String)>, ParseError> {
    const BAD: ParseError = ParseError::HeaderValue { name: "WWW-Authenticate", reason: "malformed auth-param" };
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b',' || b[i].is_ascii_whitespace()) {
            i += 1;
        }
        if i == b.len() {
            break;
        }
        let ks = i;
        while i < b.len() && b[i] != b'=' {
            i += 1;
        }
        if i == b.len() {
            return Err(BAD);
        }
        let key = s[ks..i].trim().to_owned();
        i += 1;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut val = String::new();
        if b.get(i) == Some(&b'"') {
            i += 1;
            let mut raw = Vec::new();
            loop {
                match b.get(i) {
                    None => return Err(BAD),
                    Some(b'\\') => {
                        raw.push(*b.get(i + 1).ok_or(BAD)?);
                        i += 2;
                    }
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(&c) => {
                        raw.push(c);
                        i += 1;
                    }
                }
            }
            val = String::from_utf8(raw).map_err(|_| BAD)?;
        } else {
            let vs = i;
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            val.push_str(s[vs..i].trim());
        }
        out.push((key, val));
    }
    Ok(out)
}

/// A username and password. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Username.
    pub username: String,
    /// Password.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).field("password", &"<redacted>").finish()
    }
}

/// Computes the `Authorization` / `Proxy-Authorization` value answering
/// `challenge` for `method` and `uri`. `nc` counts uses of this nonce
/// (starting at 1); `cnonce` is a fresh random string.
pub fn authorization(
    challenge: &Challenge,
    creds: &Credentials,
    method: &str,
    uri: &str,
    nc: u32,
    cnonce: &str,
) -> String {
    let alg = challenge.algorithm;
    let mut ha1 = alg.hash(&format!("{}:{}:{}", creds.username, challenge.realm, creds.password));
    if alg.is_sess() {
        ha1 = alg.hash(&format!("{ha1}:{}:{cnonce}", challenge.nonce));
    }
    let ha2 = alg.hash(&format!("{method}:{uri}"));
    let nc_s = format!("{nc:08x}");
    let response = if challenge.qop_auth {
        alg.hash(&format!("{ha1}:{}:{nc_s}:{cnonce}:auth:{ha2}", challenge.nonce))
    } else {
        alg.hash(&format!("{ha1}:{}:{ha2}", challenge.nonce))
    };
    let mut out = format!(
        "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\", algorithm={}",
        quote_escape(&creds.username),
        quote_escape(&challenge.realm),
        quote_escape(&challenge.nonce),
        uri,
        response,
        alg.as_str()
    );
    if let Some(o) = &challenge.opaque {
        out.push_str(&format!(", opaque=\"{}\"", quote_escape(o)));
    }
    if challenge.qop_auth {
        out.push_str(&format!(", qop=auth, nc={nc_s}, cnonce=\"{cnonce}\""));
    }
    out
}

/// A quoted-string's content (RFC 3261 §25.1): `\` and `"` escaped, control characters (which
/// no quoted-string may hold: a line break would end the header) left out.
fn quote_escape(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect::<String>().replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A quoted string never holds a line break (it would end the header and start another).
    #[test]
    fn quoted_values_hold_no_control_characters() {
        assert_eq!(quote_escape("al\"ice\\"), "al\\\"ice\\\\");
        assert_eq!(quote_escape("u\r\nVia: evil\0"), "uVia: evil");
    }

    /// RFC 2617 section 3.5 example (HTTP, but the computation is the same).
    #[test]
    fn rfc2617_vector() {
        let c = Challenge::parse(
            r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        )
        .expect("parse")
        .expect("digest");
        assert!(c.qop_auth);
        let creds = Credentials { username: "Mufasa".into(), password: "Circle Of Life".into() };
        let a = authorization(&c, &creds, "GET", "/dir/index.html", 1, "0a4f113b");
        assert!(a.contains("response=\"6629fae49393a05397450978507c4ef1\""), "{a}");
        assert!(a.contains("nc=00000001"));
        assert!(!format!("{creds:?}").contains("Circle"));
    }

    /// RFC 7616 section 3.9.1 SHA-256 example.
    #[test]
    fn rfc7616_sha256_vector() {
        let c = Challenge::parse(
            r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#,
        )
        .expect("parse")
        .expect("digest");
        assert_eq!(c.algorithm, Algorithm::Sha256);
        let creds = Credentials { username: "Mufasa".into(), password: "Circle of Life".into() };
        let a = authorization(&c, &creds, "GET", "/dir/index.html", 1, "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ");
        assert!(a.contains("response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1\""), "{a}");
    }

    #[test]
    fn picks_strongest_and_flags_stale() {
        let vals = [
            r#"Digest realm="r", nonce="n1", algorithm=MD5, qop="auth""#,
            r#"Digest realm="r", nonce="n2", algorithm=SHA-256, qop="auth", stale=TRUE"#,
            r#"Digest realm="r", nonce="n3", algorithm=SHA-512-256"#,
        ];
        let c = Challenge::pick(vals.into_iter()).expect("ok").expect("some");
        assert_eq!(c.nonce, "n2");
        assert!(c.stale);
        assert!(Challenge::parse("Basic realm=\"x\"").expect("ok").is_none());
        assert!(Challenge::parse("Digest realm=\"x").is_err());
        assert!(Challenge::parse("Digest nonce=\"x\"").is_err());
    }
}
