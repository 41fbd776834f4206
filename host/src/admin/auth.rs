//! The operator token: from `WSBOX_ADMIN_TOKEN`, else generated once and
//! kept in `<data_dir>/admin-token` (owner-only). Only its SHA-256 stays in
//! memory, compared in constant time.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The environment variable with the operator token.
pub const TOKEN_ENV: &str = "WSBOX_ADMIN_TOKEN";
/// The token file's name in the data directory.
pub const TOKEN_FILE: &str = "admin-token";

/// The name recorded as `uploaded_by` for the operator token.
pub const OPERATOR: &str = "operator";

/// Where the operator token came from, to tell the operator.
#[derive(Debug, Clone)]
pub enum TokenSource {
    Env,
    File { path: PathBuf, created: bool },
}

/// The accepted tokens, hashed.
pub struct Tokens {
    operator: [u8; 32],
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

impl Tokens {
    /// Tokens with this operator token.
    pub fn new(operator: &str) -> Tokens {
        Tokens {
            operator: digest(operator.as_bytes()),
        }
    }

    /// The operator token from the environment, else from the data
    /// directory's token file, created with a random token if missing.
    pub fn load(data_dir: &Path) -> Result<(Tokens, TokenSource)> {
        if let Some(token) = std::env::var(TOKEN_ENV)
            .ok()
            .filter(|t| !t.trim().is_empty())
        {
            return Ok((Tokens::new(token.trim()), TokenSource::Env));
        }
        let path = data_dir.join(TOKEN_FILE);
        if path.is_file() {
            let token = std::fs::read_to_string(&path)
                .with_context(|| format!("reading the admin token {}", path.display()))?;
            return Ok((
                Tokens::new(token.trim()),
                TokenSource::File {
                    path,
                    created: false,
                },
            ));
        }
        let token = format!(
            "{:032x}{:032x}",
            rand::random::<u128>(),
            rand::random::<u128>()
        );
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("creating the admin token file {}", path.display()))?;
        writeln!(file, "{token}")
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", path.display()))?;
        Ok((
            Tokens::new(&token),
            TokenSource::File {
                path,
                created: true,
            },
        ))
    }

    /// The name of the token in an `Authorization: Bearer <token>` header
    /// value, if it is one of ours.
    pub fn check(&self, authorization: Option<&[u8]>) -> Option<&'static str> {
        let value = authorization?;
        let token = value.strip_prefix(b"Bearer ")?;
        let token = token.trim_ascii();
        bool::from(digest(token).ct_eq(&self.operator)).then_some(OPERATOR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_passes() {
        let tokens = Tokens::new("s3cret");
        assert_eq!(tokens.check(Some(b"Bearer s3cret")), Some(OPERATOR));
        assert_eq!(tokens.check(Some(b"Bearer s3cret2")), None);
        assert_eq!(tokens.check(Some(b"Basic s3cret")), None);
        assert_eq!(tokens.check(None), None);
    }
}
