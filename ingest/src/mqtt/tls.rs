//! TLS towards the broker (`mqtts://`): rustls with the `ring` provider (no C build tool
//! chain beyond a C compiler), the given CA or the system's roots, and an optional client
//! certificate for brokers that authenticate clients by certificate.

use crate::IngestError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// A client configuration trusting `ca` (PEM, one or more certificates) or, without it, the
/// system's root certificates; presenting `client` (certificate chain, private key; PEM) when
/// given.
pub fn client_config(
    ca: Option<&Path>,
    client: Option<(&Path, &Path)>,
) -> Result<Arc<rustls::ClientConfig>, IngestError> {
    let tls = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
        IngestError::Tls(format!("{what} {}: {e}", path.display()))
    };
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| tls("CA file", path, &e))? {
                let cert = cert.map_err(|e| tls("CA file", path, &e))?;
                roots.add(cert).map_err(|e| tls("CA file", path, &e))?;
            }
            if roots.is_empty() {
                return Err(tls("CA file", path, &"holds no certificate"));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(IngestError::Tls(
                    "no system root certificates: give a CA file (mqtt_tls_ca_file)".into(),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| IngestError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| tls("client certificate", cert, &e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| tls("client certificate", cert, &e))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| tls("client key", key, &e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| IngestError::Tls(format!("client certificate and key: {e}")))?
        }
    };
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_ca_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("ca.pem");
        let err = client_config(Some(&missing), None).unwrap_err().to_string();
        assert!(err.contains("CA file") && err.contains("ca.pem"), "{err}");
        std::fs::write(&missing, "not a certificate\n").unwrap();
        let err = client_config(Some(&missing), None).unwrap_err().to_string();
        assert!(err.contains("holds no certificate"), "{err}");
    }
}
