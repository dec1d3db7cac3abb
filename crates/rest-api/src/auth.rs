//! Authentication of REST requests (contract §1), the one place every route goes through:
//! `X-OPENTOK-AUTH` (HS256 with a legacy project's secret) or `Authorization: Bearer` (RS256 with
//! an application's key). Every failure is a 403, the only status the SDKs read as an auth error.

use hyper::HeaderMap;
use session::jwt::UnverifiedJwt;
use session::service::SessionService;
use session::{ProjectId, RestAuthConfig, RestCredential};
use std::time::SystemTime;

use crate::error::ApiError;

/// Authenticates a request and returns the project it acts for.
///
/// `path_project` is the (percent-decoded) `{projectId}` of a `/v2/project/{projectId}/...` path:
/// the token must then be valid for exactly that project, so a good token for one project never
/// opens another's resources. Routes without a project in the path (`POST /session/create`) pass
/// `None`, and the project is the one the token claims (`application_id`, else `iss`), verified
/// against that project's credentials.
pub(crate) fn authenticate(
    service: &SessionService,
    config: &RestAuthConfig,
    headers: &HeaderMap,
    path_project: Option<&str>,
    now: SystemTime,
) -> Result<ProjectId, ApiError> {
    // A credential header given twice is ambiguous (a proxy in front may have checked another
    // value than the one we would take), and so is an `X-OPENTOK-AUTH` that is not text (we would
    // fall back to `Authorization`): refused, not guessed at.
    for name in ["x-opentok-auth", "authorization"] {
        let mut values = headers.get_all(name).iter();
        if let (Some(first), second) = (values.next(), values.next()) {
            if second.is_some() || (name == "x-opentok-auth" && first.to_str().is_err()) {
                return Err(forbidden(&format!("{name} given twice or not as text")));
            }
        }
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let credential = RestCredential::from_headers(header("x-opentok-auth"), header("authorization"))
        .map_err(|e| forbidden(&e.reason()))?;
    let claimed;
    let project = match path_project {
        Some(p) => p,
        None => {
            let token = match credential {
                RestCredential::OpenTokAuth(t) | RestCredential::Bearer(t) => t,
            };
            let parsed = UnverifiedJwt::decode(token).map_err(|e| forbidden(&e))?;
            claimed = claimed_project(&parsed).ok_or_else(|| forbidden(&"token names no project"))?.to_owned();
            &claimed
        }
    };
    service
        .with_projects(|projects| {
            session::authenticate(projects, project, credential, now, config).map(|p| p.id().clone())
        })
        .map_err(|e| forbidden(&e.reason()))
}

/// The project a REST token claims to be for: `application_id` (RS256) or `iss` (HS256).
/// Only a hint: `session::authenticate` verifies it.
fn claimed_project<'a>(token: &'a UnverifiedJwt<'a>) -> Option<&'a str> {
    token.claim_str("application_id").or_else(|| token.claim_str("iss"))
}

fn forbidden(reason: &dyn std::fmt::Display) -> ApiError {
    ApiError::new(403, format!("authentication failed: {reason}"))
}
