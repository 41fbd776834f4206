//! `wsbox cert --dev`: a self-signed certificate for trying `wss://` locally.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The files written by [`write_dev_certificate`].
pub struct DevCertificate {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Writes a self-signed certificate and key for `127.0.0.1`, `::1` and
/// `localhost` into `dir`, for trying `wss://` locally. Clients trust it by
/// being given the certificate file as their CA.
pub fn write_dev_certificate(dir: &Path) -> Result<DevCertificate> {
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let certified = rcgen::generate_simple_self_signed(names)
        .context("generating a self-signed certificate")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let cert = dir.join("wsbox-dev-cert.pem");
    let key = dir.join("wsbox-dev-key.pem");
    std::fs::write(&cert, certified.cert.pem())
        .with_context(|| format!("writing {}", cert.display()))?;
    std::fs::write(&key, certified.signing_key.serialize_pem())
        .with_context(|| format!("writing {}", key.display()))?;
    Ok(DevCertificate { cert, key })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsbox_io::tls::{acceptor, connector};

    #[test]
    fn dev_certificate_loads_into_acceptor_and_connector() {
        let dir = std::env::temp_dir().join(format!("wsbox-tls-test-{}", std::process::id()));
        let dev = write_dev_certificate(&dir).unwrap();
        acceptor(&dev.cert, &dev.key).unwrap();
        connector(Some(&dev.cert)).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
