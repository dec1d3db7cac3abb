//! TLS client configuration (rustls).

use crate::error::Error;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use std::path::PathBuf;
use std::sync::Arc;

/// How the peer's certificate is checked.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// Extra trusted CA certificates (PEM file), added to the system roots.
    pub ca_file: Option<PathBuf>,
    /// Trust only `ca_file`, not the system roots.
    pub only_ca_file: bool,
    /// Accept any certificate. For tests against throw-away peers only;
    /// never in production.
    pub danger_accept_any_certificate: bool,
    /// Our certificate chain (PEM file), presented when the far end asks for one (mutual TLS, as
    /// SIP trunks of carriers and contact-centre platforms may require). Needs `client_key_file`.
    pub client_cert_file: Option<PathBuf>,
    /// The private key (PEM file) of `client_cert_file`.
    pub client_key_file: Option<PathBuf>,
}

impl TlsOptions {
    /// Builds the rustls client configuration.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?;
        let identity = self.client_identity()?;
        if self.danger_accept_any_certificate {
            let builder = builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAny(provider)));
            let cfg = match identity {
                Some((certs, key)) => {
                    builder.with_client_auth_cert(certs, key).map_err(|e| Error::Tls(e.to_string()))?
                }
                None => builder.with_no_client_auth(),
            };
            return Ok(Arc::new(cfg));
        }
        let mut roots = RootCertStore::empty();
        if !self.only_ca_file {
            let native = rustls_native_certs::load_native_certs();
            for c in native.certs {
                let _ = roots.add(c);
            }
        }
        if let Some(path) = &self.ca_file {
            for c in certificates(path)? {
                roots.add(c).map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?;
            }
        }
        if roots.is_empty() {
            return Err(Error::Tls("no trusted root certificates (install ca-certificates or set a CA file)".into()));
        }
        let builder = builder.with_root_certificates(roots);
        let cfg = match identity {
            Some((certs, key)) => builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| Error::Tls(format!("our client certificate: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(cfg))
    }

    /// Our client certificate chain and key, when both files are set.
    fn client_identity(&self) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, Error> {
        let (cert, key) = match (&self.client_cert_file, &self.client_key_file) {
            (None, None) => return Ok(None),
            (Some(cert), Some(key)) => (cert, key),
            _ => return Err(Error::Tls("a client certificate needs both its certificate and its key file".into())),
        };
        let certs = certificates(cert)?;
        // The key's text is never in an error: only its file's name.
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|_| Error::Tls(format!("{}: no usable private key", key.display())))?;
        Ok(Some((certs, key)))
    }
}

/// The certificates of a PEM file, at least one; errors name the file.
fn certificates(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!("{}: no certificates", path.display())));
    }
    Ok(certs)
}

#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sip-tls-unit-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("dir");
        d
    }

    /// A client certificate needs its chain and its key; a missing or wrong file is a clear
    /// error naming the file, never showing the key.
    #[test]
    fn client_certificates_are_checked() {
        let d = dir("client");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["gateway.example".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let (cert_file, key_file) = (d.join("cert.pem"), d.join("key.pem"));
        std::fs::write(&cert_file, cert.pem()).expect("write");
        std::fs::write(&key_file, key.serialize_pem()).expect("write");
        let ca_only = TlsOptions { ca_file: Some(cert_file.clone()), only_ca_file: true, ..TlsOptions::default() };
        let with = |cert: Option<&PathBuf>, key: Option<&PathBuf>| TlsOptions {
            client_cert_file: cert.cloned(),
            client_key_file: key.cloned(),
            ..ca_only.clone()
        };
        assert!(with(Some(&cert_file), Some(&key_file))
            .client_config()
            .is_ok_and(|c| c.client_auth_cert_resolver.has_certs()));
        assert!(with(None, None).client_config().is_ok_and(|c| !c.client_auth_cert_resolver.has_certs()));
        let message = |o: TlsOptions| match o.client_config() {
            Err(Error::Tls(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(message(with(Some(&cert_file), None)).contains("both"));
        assert!(message(with(None, Some(&key_file))).contains("both"));
        let m = message(with(Some(&cert_file), Some(&cert_file)));
        assert!(m.contains("cert.pem") && m.contains("no usable private key"), "{m}");
        let m = message(with(Some(&key_file), Some(&key_file)));
        assert!(m.contains("key.pem: no certificates"), "{m}");
        assert!(!m.contains("PRIVATE KEY"), "{m}");
        let m = message(with(Some(&d.join("missing.pem")), Some(&key_file)));
        assert!(m.contains("missing.pem"), "{m}");
        let _ = std::fs::remove_dir_all(d);
    }
}
