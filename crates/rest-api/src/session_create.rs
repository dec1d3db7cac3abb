//! `POST /session/create` (contract §2).

use crate::error::{json_response, ApiError};
use crate::ApiState;
use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use session::jwt::UnverifiedJwt;
use session::{authenticate, MediaMode, RestCredential};
use std::net::Ipv4Addr;
use std::time::{SystemTime, UNIX_EPOCH};

/// The project a REST token claims to be for: `iss` (HS256) or
/// `application_id` (RS256). Verified afterwards by `authenticate`.
fn claimed_project<'a>(token: &'a UnverifiedJwt<'a>) -> Option<&'a str> {
    token.claim_str("application_id").or_else(|| token.claim_str("iss"))
}

pub(crate) fn create(
    state: &mut ApiState,
    x_opentok_auth: Option<&str>,
    authorization: Option<&str>,
    body: &[u8],
    now: SystemTime,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let forbidden = |e: &dyn std::fmt::Display| ApiError::new(403, format!("authentication failed: {e}"));
    let credential = RestCredential::from_headers(x_opentok_auth, authorization).map_err(|e| forbidden(&e.reason()))?;
    let token = match credential {
        RestCredential::OpenTokAuth(t) | RestCredential::Bearer(t) => t,
    };
    let parsed = UnverifiedJwt::decode(token).map_err(|e| forbidden(&e))?;
    let project_id = claimed_project(&parsed).ok_or_else(|| forbidden(&"token names no project"))?.to_owned();
    let project =
        authenticate(&state.projects, &project_id, credential, now, &state.auth).map_err(|e| forbidden(&e.reason()))?;
    let project_id = project.id().clone();

    // Form data whatever the Content-Type says; an empty body is fine.
    let mut media_mode = MediaMode::Routed;
    let mut location: Option<Ipv4Addr> = None;
    for (k, v) in form_urlencoded::parse(body) {
        match k.as_ref() {
            "p2p.preference" => {
                media_mode = match v.as_ref() {
                    "enabled" => MediaMode::Relayed,
                    "disabled" | "" => MediaMode::Routed,
                    other => {
                        return Err(ApiError::new(
                            400,
                            format!("p2p.preference must be enabled or disabled, not {other:?}"),
                        ))
                    }
                }
            }
            "location" => {
                let v = v.trim();
                if !v.is_empty() && v != "null" {
                    location = Some(
                        v.parse()
                            .map_err(|_| ApiError::new(400, format!("location must be an IPv4 address, not {v:?}")))?,
                    );
                }
            }
            "archiveMode" if !matches!(v.as_ref(), "manual" | "always" | "") => {
                return Err(ApiError::new(400, format!("archiveMode must be manual or always, not {v:?}")));
            }
            "e2ee" if !v.is_empty() && !v.eq_ignore_ascii_case("true") && !v.eq_ignore_ascii_case("false") => {
                return Err(ApiError::new(400, format!("e2ee must be true or false, not {v:?}")));
            }
            _ => {}
        }
    }
    let id = state.sessions.create(&project_id, media_mode, location, now, &mut rand::thread_rng());
    let created = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let body = serde_json::json!([{
        "session_id": id.as_str(),
        "project_id": project_id.as_str(),
        "partner_id": project_id.as_str(),
        "create_dt": http_date(created),
        "media_server_hostname": null,
    }]);
    Ok(json_response(200, body.to_string()))
}

/// `Thu, 26 Nov 2026 14:30:00 GMT` (RFC 7231 IMF-fixdate).
fn http_date(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    let mon = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][(mo - 1) as usize];
    format!("{wd}, {d:02} {mon} {y} {h:02}:{m:02}:{s:02} GMT")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(1_795_703_400), "Thu, 26 Nov 2026 14:30:00 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
    }
}
