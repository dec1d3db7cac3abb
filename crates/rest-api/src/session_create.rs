//! `POST /session/create` (contract §2).

use crate::error::{json_response, ApiError};
use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use session::service::SessionService;
use session::{MediaMode, ProjectId};
use std::net::Ipv4Addr;
use std::time::{SystemTime, UNIX_EPOCH};

/// Creates a session for `project_id` (already authenticated by [`crate::auth::authenticate`]).
pub(crate) fn create(
    service: &SessionService,
    project_id: &ProjectId,
    body: &[u8],
    now: SystemTime,
) -> Result<Response<Full<Bytes>>, ApiError> {
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
    let id = service.create_session(project_id, media_mode, location, now);
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
