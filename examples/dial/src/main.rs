//! `dial`: what an application server does to bring a SIP party into a video session, in three
//! REST calls against the gateway (the Vonage Video API), without an SDK:
//!
//! 1. `POST /session/create` with `p2p.preference=disabled`: a routed session;
//! 2. a client token for that session (an HS256 JWT signed with the API secret, minted locally);
//! 3. `POST /v2/project/{apiKey}/dial` with the session, the token and the SIP URI.
//!
//! ```text
//! dial [--gateway URL] [--api-key KEY] [--api-secret SECRET] [--session ID]
//!      [--from ID] [--header 'Name: value']... [--secure] [--video] <sip-uri>
//! ```
//! The gateway URL, key and secret may also come from `OPENTOK_API_URL` (default
//! `http://127.0.0.1:3000`), `OPENTOK_API_KEY` and `OPENTOK_API_SECRET`. Plain `http://` only:
//! against an HTTPS gateway use an SDK (see the README). Exit status 0 when the dial was accepted.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};
use session::jwt::sign_hs256;

/// How long the client token stays valid.
const TOKEN_LIFETIME_S: u64 = 3600;

const USAGE: &str = "usage: dial [--gateway URL] [--api-key KEY] [--api-secret SECRET] [--session ID] \
[--from ID] [--header 'Name: value']... [--secure] [--video] <sip-uri>
  (or OPENTOK_API_URL, OPENTOK_API_KEY, OPENTOK_API_SECRET in the environment)";

/// What to do, from the command line and the environment.
#[derive(Debug, Default)]
struct Options {
    gateway: String,
    api_key: String,
    api_secret: String,
    session: Option<String>,
    uri: String,
    from: Option<String>,
    headers: Map<String, Value>,
    secure: bool,
    video: bool,
}

fn options() -> Result<Options, String> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut o = Options {
        gateway: env("OPENTOK_API_URL").unwrap_or_else(|| "http://127.0.0.1:3000".into()),
        api_key: env("OPENTOK_API_KEY").unwrap_or_default(),
        api_secret: env("OPENTOK_API_SECRET").unwrap_or_default(),
        ..Options::default()
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--gateway" => o.gateway = value()?,
            "--api-key" => o.api_key = value()?,
            "--api-secret" => o.api_secret = value()?,
            "--session" => o.session = Some(value()?),
            "--from" => o.from = Some(value()?),
            "--header" => {
                let h = value()?;
                let (name, v) = h.split_once(':').ok_or_else(|| format!("{h:?}: expected 'Name: value'"))?;
                o.headers.insert(name.trim().to_owned(), Value::from(v.trim()));
            }
            "--secure" => o.secure = true,
            "--video" => o.video = true,
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            _ if o.uri.is_empty() => o.uri = a,
            _ => return Err(format!("unexpected argument {a:?}")),
        }
    }
    if o.uri.is_empty() {
        return Err("a SIP URI is needed (e.g. sip:alice@127.0.0.1:5070)".into());
    }
    if o.api_key.is_empty() || o.api_secret.is_empty() {
        return Err(
            "the API key and secret are needed (--api-key/--api-secret or OPENTOK_API_KEY/OPENTOK_API_SECRET)".into()
        );
    }
    Ok(o)
}

fn main() -> ExitCode {
    let o = match options() {
        Ok(o) => o,
        Err(m) => {
            if !m.is_empty() {
                eprintln!("dial: {m}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&o) {
        Ok(()) => ExitCode::SUCCESS,
        Err(m) => {
            eprintln!("dial: {m}");
            ExitCode::from(1)
        }
    }
}

fn run(o: &Options) -> Result<(), String> {
    let gateway = Gateway::parse(&o.gateway)?;
    let session = match &o.session {
        Some(s) => s.clone(),
        None => {
            // Routed: media flows through the gateway, which dial needs (a relayed session is 409).
            let (status, body) = gateway.request(
                "POST",
                "/session/create",
                &rest_auth(&o.api_key, &o.api_secret),
                "application/x-www-form-urlencoded",
                "p2p.preference=disabled",
            )?;
            let created: Value = expect_ok(status, &body)?;
            created[0]["session_id"].as_str().ok_or_else(|| format!("no session_id in {body}"))?.to_owned()
        }
    };
    println!("session:  {session}");
    let token = client_token(&o.api_key, &o.api_secret, &session);
    let mut sip = json!({"uri": o.uri, "secure": o.secure, "video": o.video});
    if let Some(from) = &o.from {
        sip["from"] = Value::from(from.as_str());
    }
    if !o.headers.is_empty() {
        sip["headers"] = Value::Object(o.headers.clone());
    }
    let body = json!({"sessionId": session, "token": token, "sip": sip});
    let (status, answer) = gateway.request(
        "POST",
        &format!("/v2/project/{}/dial", o.api_key),
        &rest_auth(&o.api_key, &o.api_secret),
        "application/json",
        &body.to_string(),
    )?;
    let answer = expect_ok(status, &answer)?;
    println!("dialled:  {}", serde_json::to_string_pretty(&answer).unwrap_or_default());
    let field = |k: &str| answer[k].as_str().unwrap_or("?").to_owned();
    println!(
        "The SIP party joins the session as connection {} with stream {}.",
        field("connectionId"),
        field("streamId")
    );
    println!("Call progress goes to the project's callback URL (callCreated, callUpdated, callDestroyed).");
    Ok(())
}

/// The JSON of a 200 answer, or the gateway's `{code, message}` as an error.
fn expect_ok(status: u16, body: &str) -> Result<Value, String> {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    if status == 200 {
        return Ok(v);
    }
    let message = v["message"].as_str().map(str::to_owned).unwrap_or_else(|| body.to_owned());
    Err(format!("the gateway answered {status}: {message}"))
}

fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn sign(claims: Value, secret: &str) -> String {
    match claims {
        Value::Object(map) => sign_hs256(&map, secret.as_bytes()),
        _ => String::new(),
    }
}

/// The `X-OPENTOK-AUTH` JWT of a legacy project, as the SDKs make it (3 minutes).
fn rest_auth(key: &str, secret: &str) -> String {
    let t = now_s();
    sign(json!({"iss": key, "ist": "project", "iat": t, "exp": t + 180, "jti": format!("dial-{t}")}), secret)
}

/// A client token for `session` (the JWT form): what a browser would join with, and what a dial
/// carries to say who is dialling.
fn client_token(key: &str, secret: &str, session: &str) -> String {
    let t = now_s();
    sign(
        json!({"iss": key, "ist": "project", "iat": t, "exp": t + TOKEN_LIFETIME_S, "scope": "session.connect",
            "session_id": session, "role": "publisher", "connection_data": "dialled by the dial example"}),
        secret,
    )
}

/// An `http://host[:port][/prefix]` base URL.
struct Gateway {
    host: String,
    port: u16,
    prefix: String,
}

impl Gateway {
    fn parse(url: &str) -> Result<Gateway, String> {
        let rest = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some(_) => return Err(format!("{url}: this example speaks plain http:// only (an SDK speaks https)")),
            None => url,
        };
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                (h, p.parse().map_err(|_| format!("{url}: bad port {p:?}"))?)
            }
            _ => (authority, 80),
        };
        if host.is_empty() {
            return Err(format!("{url}: no host"));
        }
        Ok(Gateway { host: host.trim_matches(['[', ']']).to_owned(), port, prefix: prefix.to_owned() })
    }

    /// One HTTP/1.1 request: (status, body).
    fn request(
        &self,
        method: &str,
        path: &str,
        auth: &str,
        content_type: &str,
        body: &str,
    ) -> Result<(u16, String), String> {
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", self.host))?
            .next()
            .ok_or_else(|| format!("no address for {}", self.host))?;
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| format!("cannot reach the gateway at {addr}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
        let request = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nX-OPENTOK-AUTH: {auth}\r\n\
             Content-Type: {content_type}\r\nAccept: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.prefix,
            self.host,
            body.len()
        );
        s.write_all(request.as_bytes()).map_err(|e| format!("sending the request: {e}"))?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).map_err(|e| format!("reading the answer: {e}"))?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n").ok_or("the gateway's answer has no header end")?;
        let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or("no HTTP status")?;
        let chunked = head.lines().any(|l| {
            l.split_once(':').is_some_and(|(n, v)| {
                n.trim().eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
            })
        });
        let body = if chunked { dechunk(body) } else { body.to_owned() };
        Ok((status, body))
    }
}

/// The payload of a chunked body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_urls() {
        let g = Gateway::parse("http://127.0.0.1:3000").expect("url");
        assert_eq!((g.host.as_str(), g.port, g.prefix.as_str()), ("127.0.0.1", 3000, ""));
        let g = Gateway::parse("http://gw.example.com/video/").expect("url");
        assert_eq!((g.host.as_str(), g.port, g.prefix.as_str()), ("gw.example.com", 80, "/video"));
        let g = Gateway::parse("http://[::1]:3000").expect("url");
        assert_eq!((g.host.as_str(), g.port), ("::1", 3000));
        assert!(Gateway::parse("https://gw.example.com").is_err());
    }

    #[test]
    fn chunked_bodies() {
        assert_eq!(dechunk("4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n"), "Wikipedia");
    }

    #[test]
    fn tokens_carry_what_the_gateway_checks() {
        let token = client_token("123456", "secret", "1_MX4xMjM0NTZ-fg");
        let jwt = session::jwt::UnverifiedJwt::decode(&token).expect("a JWT");
        jwt.verify_hs256(b"secret").expect("signed with the secret");
        assert_eq!(jwt.claim_str("scope"), Some("session.connect"));
        assert_eq!(jwt.claim_str("session_id"), Some("1_MX4xMjM0NTZ-fg"));
        assert_eq!(jwt.claim_str("iss"), Some("123456"));
    }
}
