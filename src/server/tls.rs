//! TLS for keyway's own clients: the `[server]` settings (`tls_listen`,
//! certificate, key, client CAs) and the rustls server configuration built
//! from their files. The files are read again on every reload, so a
//! renewed certificate is picked up by SIGHUP; connections already open
//! keep the session they have.

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

/// The rustls configuration new TLS clients get; two are the same when
/// they are the same build (a reload builds a new one).
#[derive(Debug, Clone)]
pub struct Acceptor(pub Arc<rustls::ServerConfig>);

impl PartialEq for Acceptor {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// Whether TLS clients must show a certificate (Redis's tls-auth-clients).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthClients {
    No,
    Optional,
    Yes,
}

/// The TLS part of `[server]`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// PEM certificate chain of the server.
    pub cert_file: Option<String>,
    /// PEM private key of the certificate.
    pub key_file: Option<String>,
    /// PEM CAs whose client certificates are accepted.
    pub ca_file: Option<String>,
    /// Whether clients must show a certificate: `yes` by default with a
    /// `ca_file`, `no` without one.
    pub auth_clients: Option<AuthClients>,
}

impl TlsSettings {
    fn auth(&self) -> AuthClients {
        self.auth_clients.unwrap_or(if self.ca_file.is_some() {
            AuthClients::Yes
        } else {
            AuthClients::No
        })
    }

    /// Problems with the settings alone, as (field, problem); the files are
    /// read by [`TlsSettings::build`].
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.cert_file.is_none() {
            out.push(("tls.cert_file".into(), "is required with tls_listen".into()));
        }
        if self.key_file.is_none() {
            out.push(("tls.key_file".into(), "is required with tls_listen".into()));
        }
        if self.ca_file.is_none() && self.auth() != AuthClients::No {
            out.push((
                "tls.auth_clients".into(),
                "needs tls.ca_file: the CAs whose client certificates are accepted".into(),
            ));
        }
        out
    }

    /// The rustls configuration, from the files as they are now.
    pub fn build(&self) -> Result<Arc<rustls::ServerConfig>, String> {
        let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) else {
            return Err("tls.cert_file and tls.key_file are required".into());
        };
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .map_err(|e| format!("tls.cert_file: cannot read '{cert}': {e}"))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("tls.cert_file: '{cert}' is not valid PEM: {e}"))?;
        if chain.is_empty() {
            return Err(format!("tls.cert_file: '{cert}' holds no certificate"));
        }
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| format!("tls.key_file: cannot read a private key from '{key}': {e}"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("TLS setup failed: {e}"))?;
        let builder = match (&self.ca_file, self.auth()) {
            (Some(ca), auth) if auth != AuthClients::No => {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_file_iter(ca)
                    .map_err(|e| format!("tls.ca_file: cannot read '{ca}': {e}"))?
                {
                    let c = c.map_err(|e| format!("tls.ca_file: '{ca}' is not valid PEM: {e}"))?;
                    roots
                        .add(c)
                        .map_err(|e| format!("tls.ca_file: '{ca}' holds a bad certificate: {e}"))?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                );
                let verifier = if auth == AuthClients::Optional {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                builder.with_client_cert_verifier(
                    verifier.build().map_err(|e| format!("tls.ca_file: {e}"))?,
                )
            }
            _ => builder.with_no_client_auth(),
        };
        let config = builder
            .with_single_cert(chain, key)
            .map_err(|e| format!("tls.cert_file/tls.key_file: {e}"))?;
        Ok(Arc::new(config))
    }
}
