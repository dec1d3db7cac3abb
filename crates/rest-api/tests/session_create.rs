//! `POST /session/create` against the contract: the real Python SDK, and
//! raw requests with every quirk the contract lists.

mod common;

use common::{raw, rest_jwt, sdk_script, start, KEY, SECRET};
use session::{validate_client_token, MediaMode, SessionId};
use std::time::SystemTime;

fn post(port: u16, content_type: &str, auth: &str, body: &str) -> (u16, String, String) {
    raw(
        port,
        &format!(
            "POST /session/create HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {content_type}\r\nX-OPENTOK-AUTH: {auth}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_creates_sessions() {
    let (api, port) = start().await;
    let out =
        sdk_script("create_sessions.py", vec![format!("http://127.0.0.1:{port}"), KEY.into(), SECRET.into()]).await;
    let id = |k: &str| out[k].as_str().unwrap_or_default().to_owned();
    {
        let s = api.service();
        // The Python SDK's default media mode is relayed: it sends p2p.preference=enabled.
        for (k, mode) in
            [("routed", MediaMode::Routed), ("relayed", MediaMode::Relayed), ("default", MediaMode::Relayed)]
        {
            let (sid, info) = s.session(&id(k)).unwrap_or_else(|| panic!("{k} session unknown: {out}"));
            assert_eq!(info.media_mode, mode, "{k}");
            assert_eq!(sid.project(), KEY);
        }
        assert_eq!(
            s.session(&id("relayed")).map(|(sid, _)| sid.location()),
            Some(Some("10.1.2.3".parse().expect("ip")))
        );
        let sid = SessionId::parse(&id("routed")).expect("sid");
        s.with_projects(|p| validate_client_token(p, &id("token"), &sid, SystemTime::now()))
            .expect("the SDK's token for our session validates");
    }
    // opentok 3.15 says "invalid credentials" only for a 403 (and wraps it in RequestError).
    assert!(
        out["wrong_secret"].as_str().is_some_and(|m| m.contains("invalid credentials")),
        "a wrong secret is a 403 the SDK recognises: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_quirks() {
    let (api, port) = start().await;
    let good = rest_jwt(SECRET, KEY);
    let (st, head, body) =
        tokio::task::spawn_blocking(move || post(port, "application/x-www-form-urlencoded", &good, ""))
            .await
            .expect("join");
    assert_eq!(st, 200, "an empty body is fine");
    assert!(
        head.lines().any(|l| l.eq_ignore_ascii_case("content-type: application/json")),
        "exact content type: {head}"
    );
    let arr: serde_json::Value = serde_json::from_str(&body).expect("json");
    let first = &arr[0];
    assert!(arr.is_array() && first["session_id"].as_str().is_some_and(|s| s.starts_with("1_")), "{body}");
    assert_eq!(first["project_id"], KEY);
    assert_eq!(first["partner_id"], KEY);
    assert!(first["media_server_hostname"].is_null());
    assert!(!first["session_id"].as_str().unwrap_or_default().contains(['+', '/', '=']), "URL-safe, unpadded");

    // Form data labelled as JSON (one SDK does this), location=null.
    let good = rest_jwt(SECRET, KEY);
    let (st, _, body) = tokio::task::spawn_blocking(move || {
        post(port, "application/json", &good, "p2p.preference=enabled&location=null&archiveMode=manual&unknown=1")
    })
    .await
    .expect("join");
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let sid = v[0]["session_id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(api.service().session(&sid).map(|(_, i)| i.media_mode), Some(MediaMode::Relayed));

    // Refusals, each with the contract's error body.
    let wrong = rest_jwt("not-the-secret-0123456789abcdef0123", KEY);
    let other = rest_jwt(SECRET, "999999");
    let good = rest_jwt(SECRET, KEY);
    let results = tokio::task::spawn_blocking(move || {
        vec![
            (post(port, "application/x-www-form-urlencoded", &wrong, ""), 403),
            (post(port, "application/x-www-form-urlencoded", "garbage", ""), 403),
            (post(port, "application/x-www-form-urlencoded", &other, ""), 403),
            (post(port, "application/x-www-form-urlencoded", &good, "p2p.preference=sometimes"), 400),
            (post(port, "application/x-www-form-urlencoded", &good, "location=not-an-ip"), 400),
            (raw(port, "GET /session/create HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), 405),
            (raw(port, "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), 404),
        ]
    })
    .await
    .expect("join");
    for ((st, _, body), expected) in results {
        assert_eq!(st, expected, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("error body is JSON");
        assert_eq!(v["code"], expected);
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty() && !m.contains(SECRET)));
    }
    assert_eq!(api.service().session_count(), 2, "refused requests created nothing");
}
