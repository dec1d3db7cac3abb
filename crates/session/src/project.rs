//! Projects and their credentials: a legacy project (numeric API key + shared secret, HS256) or
//! an application (UUID + RSA public key, RS256). Secrets never appear in `Debug` output.

use std::collections::HashMap;
use std::fmt;

use rand::{CryptoRng, Rng, RngCore};
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;
use rsa::RsaPublicKey;

use crate::error::CredentialError;

/// A project's id as it appears in `/v2/project/{id}`, in `iss`/`application_id` and in field 1
/// of a session ID: an API key (digits) or an application UUID (stored lower-case).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProjectId(String);

impl ProjectId {
    /// A legacy API key: 1 to 20 ASCII digits.
    pub fn api_key(key: &str) -> Result<Self, CredentialError> {
        if (1..=20).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_digit()) {
            Ok(ProjectId(key.to_owned()))
        } else {
            Err(CredentialError::InvalidApiKey)
        }
    }

    /// An application id: a UUID in 8-4-4-4-12 hex form (either case; stored lower-case).
    pub fn application(id: &str) -> Result<Self, CredentialError> {
        let groups: Vec<&str> = id.split('-').collect();
        let lens = [8, 4, 4, 4, 12];
        let ok = groups.len() == lens.len()
            && groups.iter().zip(lens).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()));
        if ok {
            Ok(ProjectId(id.to_ascii_lowercase()))
        } else {
            Err(CredentialError::InvalidApplicationId)
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `text` names this project (application UUIDs compare case-insensitively).
    pub fn matches(&self, text: &str) -> bool {
        self.0.eq_ignore_ascii_case(text)
    }
}

impl fmt::Display for ProjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A legacy project's API secret. `Debug` prints `ApiSecret(..)`, never the value.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiSecret(String);

impl ApiSecret {
    /// Longest secret accepted.
    pub const MAX_LEN: usize = 256;

    /// Wraps an existing secret. Refuses empty, overlong or non-printable-ASCII secrets, and
    /// secrets ending in `.` followed by word characters: the Python SDK matches
    /// `[.][a-zA-Z0-9_]+$` and then opens the secret as a private-key file (contract §1).
    pub fn new(secret: &str) -> Result<Self, CredentialError> {
        if secret.is_empty() || secret.len() > Self::MAX_LEN {
            return Err(CredentialError::InvalidSecret("empty or longer than 256 bytes"));
        }
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(CredentialError::InvalidSecret("not printable ASCII"));
        }
        if looks_like_file_name(secret) {
            return Err(CredentialError::InvalidSecret("ends in '.' followed by letters or digits"));
        }
        Ok(ApiSecret(secret.to_owned()))
    }

    /// A fresh secret: 40 lower-case hex digits (160 bits), like the hosted service issues.
    /// Hex has no `.`, so it can never look like a file name.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let bytes: [u8; 20] = rng.gen();
        ApiSecret(hex::encode(bytes))
    }

    /// The secret's bytes, for signing and verifying. Never log them.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiSecret(..)")
    }
}

/// `[.][a-zA-Z0-9_]+$`: a `.` followed by at least one word character up to the end.
fn looks_like_file_name(secret: &str) -> bool {
    let tail = secret.bytes().rev().take_while(|b| b.is_ascii_alphanumeric() || *b == b'_').count();
    tail > 0 && secret.len() > tail && secret.as_bytes()[secret.len() - tail - 1] == b'.'
}

/// How a project proves requests and tokens.
#[derive(Clone)]
pub enum Credentials {
    /// HS256 / HMAC-SHA1 with a shared secret.
    Secret(ApiSecret),
    /// RS256: the gateway holds only the application's public key.
    PublicKey(RsaPublicKey),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Secret(_) => f.write_str("Secret(..)"),
            Credentials::PublicKey(key) => write!(f, "PublicKey({} bits)", key.size() * 8),
        }
    }
}

/// One project: its id and its credentials. The kind of id always matches the kind of
/// credentials (API key + secret, or application UUID + public key).
#[derive(Debug, Clone)]
pub struct Project {
    id: ProjectId,
    credentials: Credentials,
}

impl Project {
    /// A legacy project: numeric API key and secret.
    pub fn legacy(api_key: &str, secret: ApiSecret) -> Result<Self, CredentialError> {
        Ok(Project { id: ProjectId::api_key(api_key)?, credentials: Credentials::Secret(secret) })
    }

    /// An application: UUID and RSA public key in PEM (`BEGIN PUBLIC KEY` or
    /// `BEGIN RSA PUBLIC KEY`), at least 2048 bits.
    pub fn application(application_id: &str, public_key_pem: &str) -> Result<Self, CredentialError> {
        let id = ProjectId::application(application_id)?;
        let pem = public_key_pem.trim();
        let key = RsaPublicKey::from_public_key_pem(pem)
            .or_else(|_| RsaPublicKey::from_pkcs1_pem(pem))
            .map_err(|_| CredentialError::InvalidPublicKey("not an RSA public key in PEM"))?;
        if key.size() * 8 < 2048 {
            return Err(CredentialError::InvalidPublicKey("shorter than 2048 bits"));
        }
        Ok(Project { id, credentials: Credentials::PublicKey(key) })
    }

    /// The project's id.
    pub fn id(&self) -> &ProjectId {
        &self.id
    }

    /// The project's credentials.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// The secret of a legacy project.
    pub fn secret(&self) -> Option<&ApiSecret> {
        match &self.credentials {
            Credentials::Secret(secret) => Some(secret),
            Credentials::PublicKey(_) => None,
        }
    }

    /// The public key of an application.
    pub fn public_key(&self) -> Option<&RsaPublicKey> {
        match &self.credentials {
            Credentials::PublicKey(key) => Some(key),
            Credentials::Secret(_) => None,
        }
    }
}

/// The projects the gateway serves, by id.
#[derive(Debug, Clone, Default)]
pub struct Projects {
    by_id: HashMap<ProjectId, Project>,
}

impl Projects {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a project; returns the one it replaced.
    pub fn insert(&mut self, project: Project) -> Option<Project> {
        self.by_id.insert(project.id.clone(), project)
    }

    /// Removes a project.
    pub fn remove(&mut self, id: &ProjectId) -> Option<Project> {
        self.by_id.remove(id)
    }

    /// Looks a project up by the id as received (path, `iss`, `application_id`, `partner_id`).
    /// Application UUIDs are matched case-insensitively.
    pub fn get(&self, id: &str) -> Option<&Project> {
        if id.bytes().any(|b| b.is_ascii_uppercase()) {
            self.by_id.get(&ProjectId(id.to_ascii_lowercase()))
        } else {
            self.by_id.get(&ProjectId(id.to_owned()))
        }
    }

    /// Number of projects.
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
    use crate::jwt::tests::TEST_PUBLIC_PEM;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn api_keys_and_application_ids() {
        assert!(ProjectId::api_key("123456").is_ok());
        for bad in ["", "12a", "-1", "123456789012345678901", " 1"] {
            assert_eq!(ProjectId::api_key(bad), Err(CredentialError::InvalidApiKey), "{bad:?}");
        }
        let app = ProjectId::application("9F2B4C1E-0A1B-4C2D-8E3F-123456789ABC").expect("uuid");
        assert_eq!(app.as_str(), "9f2b4c1e-0a1b-4c2d-8e3f-123456789abc");
        for bad in ["", "9f2b4c1e0a1b4c2d8e3f123456789abc", "9f2b4c1e-0a1b-4c2d-8e3f-123456789abg", "123456"] {
            assert_eq!(ProjectId::application(bad), Err(CredentialError::InvalidApplicationId), "{bad:?}");
        }
    }

    #[test]
    fn secrets_that_look_like_file_names_are_refused() {
        for bad in ["abc.pem", "abc.k", "a.b_c", "x.1", "..a"] {
            assert!(ApiSecret::new(bad).is_err(), "{bad:?}");
        }
        for ok in ["abc.", "abc.-", "abc", "a.b-c", "0123456789abcdef"] {
            assert!(ApiSecret::new(ok).is_ok(), "{ok:?}");
        }
        assert!(ApiSecret::new("").is_err());
        assert!(ApiSecret::new("has space").is_err());
        assert!(ApiSecret::new(&"a".repeat(257)).is_err());
    }

    #[test]
    fn generated_secrets_are_valid_distinct_and_never_file_names() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let secret = ApiSecret::generate(&mut rng);
            assert_eq!(secret.expose().len(), 40);
            assert!(!looks_like_file_name(secret.expose()));
            assert!(ApiSecret::new(secret.expose()).is_ok());
            assert!(seen.insert(secret.expose().to_owned()));
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let secret = ApiSecret::new("supersecretvalue42").expect("secret");
        let project = Project::legacy("123456", secret.clone()).expect("project");
        let mut projects = Projects::new();
        projects.insert(project.clone());
        for text in [format!("{secret:?}"), format!("{project:?}"), format!("{projects:?}"), format!("{project:#?}")] {
            assert!(!text.contains("supersecretvalue42"), "{text}");
        }
    }

    #[test]
    fn applications_need_an_rsa_public_key() {
        let id = "9f2b4c1e-0a1b-4c2d-8e3f-123456789abc";
        let project = Project::application(id, TEST_PUBLIC_PEM).expect("spki pem");
        assert!(project.public_key().is_some() && project.secret().is_none());
        assert!(format!("{project:?}").contains("2048 bits"));
        assert!(Project::application(id, "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----").is_err());
        assert!(Project::application("123456", TEST_PUBLIC_PEM).is_err());
        assert!(Project::legacy(id, ApiSecret::new("s").expect("secret")).is_err());
    }

    #[test]
    fn registry_lookup() {
        let mut projects = Projects::new();
        projects.insert(Project::legacy("123456", ApiSecret::new("s").expect("secret")).expect("legacy"));
        projects.insert(
            Project::application("9F2B4C1E-0A1B-4C2D-8E3F-123456789ABC", TEST_PUBLIC_PEM).expect("application"),
        );
        assert_eq!(projects.len(), 2);
        assert!(projects.get("123456").is_some());
        assert!(projects.get("1234567").is_none());
        assert!(projects.get("9f2b4c1e-0a1b-4c2d-8e3f-123456789abc").is_some());
        assert!(projects.get("9F2B4C1E-0A1B-4C2D-8E3F-123456789ABC").is_some());
    }
}
