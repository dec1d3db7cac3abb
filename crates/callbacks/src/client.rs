//! One `POST` to a callback URL over hyper's pooled client, `http://` or `https://` (rustls).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::error::CallbackError;

/// The header carrying an event's id on every attempt (the Standard Webhooks name), the same as
/// the signature's `jti`: receivers dedupe by it whether or not the project signs.
pub const EVENT_ID_HEADER: &str = "webhook-id";

/// Response bodies are read (so the connection can be reused) up to this size, then dropped.
const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// How long a response's body is read after its status: the status is the answer, and a body
/// that drips or never ends only costs the connection, never a second delivery of the event.
const RESPONSE_BODY_TIME: Duration = Duration::from_secs(1);

/// The outcome of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PostOutcome {
    /// A 2xx.
    Delivered(u16),
    /// Anything else: a non-2xx status, a timeout, a refused connection, a TLS failure. The text
    /// is for logs and dead letters; it never holds a header value.
    Failed(String),
    /// A 4xx that says this event will not be taken however often it is sent (400, 410, 413, 415,
    /// 422: its body or size): given up after a few such refusals whatever `max_attempts` says, so
    /// one refused event cannot hold its call's later events for ever; it says nothing of the
    /// target's health (the circuit ignores it). A 401, 403, 404 or 405 says the target or its
    /// configuration is wrong for every event: a failure like a 5xx, retried until it is fixed.
    Refused(u16),
    /// The attempt failed here, before anything reached the target (a request that could not be
    /// built, the store unreadable): retried like a failure, but it says nothing of the target,
    /// so it never opens the project's circuit.
    Local(String),
}

/// The pooled client.
#[derive(Clone)]
pub(crate) struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl HttpClient {
    /// Builds the client; `tls` as in [`CallbackConfig::tls`](crate::CallbackConfig::tls).
    pub(crate) fn new(tls: Option<Arc<rustls::ClientConfig>>, timeout: Duration) -> Result<Self, CallbackError> {
        let mut tls = match tls {
            Some(cfg) => (*cfg).clone(),
            None => default_tls()?,
        };
        // hyper-rustls sets ALPN itself (and insists on an empty list).
        tls.alpn_protocols.clear();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector);
        Ok(HttpClient { client, timeout })
    }

    /// `POST`s `body` as `application/json` to `uri`, within the request timeout.
    pub(crate) async fn post(
        &self,
        uri: &Uri,
        body: Bytes,
        event_id: &str,
        authorization: Option<String>,
    ) -> PostOutcome {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(uri.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, concat!("sip-interconnect-gateway-callbacks/", env!("CARGO_PKG_VERSION")))
            .header(EVENT_ID_HEADER, event_id);
        if let Some(token) = authorization {
            match HeaderValue::from_str(&token) {
                Ok(mut v) => {
                    v.set_sensitive(true);
                    req = req.header(AUTHORIZATION, v);
                }
                Err(_) => return PostOutcome::Local("unusable Authorization value".into()),
            }
        }
        let req = match req.body(Full::new(body)) {
            Ok(r) => r,
            Err(e) => return PostOutcome::Local(format!("request: {e}")),
        };
        let resp = match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Err(_) => return PostOutcome::Failed(format!("timed out after {:?}", self.timeout)),
            Ok(Err(e)) => return PostOutcome::Failed(describe(&e)),
            Ok(Ok(resp)) => resp,
        };
        let status = resp.status();
        let mut body = resp.into_body();
        let drain = async {
            let mut read = 0usize;
            // The status is what counts; a broken body after it only costs the connection.
            while let Some(Ok(frame)) = body.frame().await {
                read += frame.data_ref().map_or(0, |d| d.len());
                if read > MAX_RESPONSE_BODY {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(RESPONSE_BODY_TIME.min(self.timeout), drain).await;
        let code = status.as_u16();
        if status.is_success() {
            PostOutcome::Delivered(code)
        } else if matches!(code, 400 | 410 | 413 | 415 | 422) {
            PostOutcome::Refused(code)
        } else {
            PostOutcome::Failed(format!("HTTP {code}"))
        }
    }
}

/// The error and its causes on one line (hyper-util's top-level message alone is vague).
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// rustls with ring and the system's root certificates.
fn default_tls() -> Result<rustls::ClientConfig, CallbackError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CallbackError::Tls(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A malformed system certificate is skipped, as browsers do.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        tracing::warn!("no system root certificates found: https:// callbacks will fail until ca-certificates is installed or CallbackConfig::tls is set");
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_connection_is_a_failed_attempt() {
        // Bind and drop a listener: its port now refuses connections.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let client = HttpClient::new(None, Duration::from_secs(5)).expect("client");
        let uri: Uri = format!("http://127.0.0.1:{port}/cb").parse().expect("uri");
        match client.post(&uri, Bytes::from_static(b"{}"), "0-1", Some("secret.jwt.value".into())).await {
            PostOutcome::Failed(why) => assert!(!why.contains("secret.jwt.value"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hold = tokio::spawn(async move {
            let (_s, _) = listener.accept().await.expect("accept");
            tokio::time::sleep(Duration::from_secs(10)).await;
        });
        let client = HttpClient::new(None, Duration::from_millis(100)).expect("client");
        let uri: Uri = format!("http://{addr}/cb").parse().expect("uri");
        let outcome = client.post(&uri, Bytes::from_static(b"{}"), "0-1", None).await;
        assert!(matches!(&outcome, PostOutcome::Failed(w) if w.contains("timed out")), "{outcome:?}");
        hold.abort();
    }

    #[test]
    fn a_caller_tls_config_with_alpn_is_accepted() {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        // hyper-rustls would panic on a preset ALPN list.
        assert!(HttpClient::new(Some(Arc::new(cfg)), Duration::from_secs(1)).is_ok());
    }
}
