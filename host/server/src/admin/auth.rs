//! The operator token: from `WSBOX_ADMIN_TOKEN`, else generated once and
//! kept in `<data_dir>/admin-token` (owner-only). Only its SHA-256 stays in
//! memory, compared in constant time.
//!
//! Tenant tokens: made by the operator for one tenant (`POST
//! /v1/tenants/{t}/tokens`), shown once, stored as SHA-256 in the
//! registry. They reach only their tenant's resources.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

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

/// Who a request's token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The operator: everything.
    Operator,
    /// A tenant token: that tenant's resources only.
    Tenant { tenant: String, name: String },
}

impl Principal {
    /// The name recorded in audit lines and as `uploaded_by`:
    /// `operator`, or `<tenant>/<token name>`.
    pub fn audit_name(&self) -> String {
        match self {
            Principal::Operator => OPERATOR.to_string(),
            Principal::Tenant { tenant, name } => format!("{tenant}/{name}"),
        }
    }

    /// Whether it may act on `tenant`'s resources.
    pub fn reaches(&self, tenant: &str) -> bool {
        match self {
            Principal::Operator => true,
            Principal::Tenant { tenant: own, .. } => own == tenant,
        }
    }
}

/// The accepted tokens, hashed.
pub struct Tokens {
    operator: [u8; 32],
    /// Tenant tokens by their SHA-256: (tenant, name).
    tenants: RwLock<HashMap<[u8; 32], (String, String)>>,
}

/// The SHA-256 of a token (tokens are 256 random bits: a fast hash is
/// enough, and the lookup by hash reveals nothing of the token).
pub fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// A new random token; tenant tokens start with `wsbt_`.
pub fn generate(prefix: &str) -> String {
    format!(
        "{prefix}{:032x}{:032x}",
        rand::random::<u128>(),
        rand::random::<u128>()
    )
}

impl Tokens {
    /// Tokens with this operator token.
    pub fn new(operator: &str) -> Tokens {
        Tokens {
            operator: digest(operator.as_bytes()),
            tenants: RwLock::default(),
        }
    }

    /// Accepts a tenant token (by its hash) from now on.
    pub fn add_tenant_token(&self, sha256: [u8; 32], tenant: &str, name: &str) {
        self.tenants
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(sha256, (tenant.to_string(), name.to_string()));
    }

    /// Stops accepting a tenant's token.
    pub fn remove_tenant_token(&self, tenant: &str, name: &str) {
        self.tenants
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, (t, n)| !(t == tenant && n == name));
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
        let token = generate("");
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

    /// Whose token is in an `Authorization: Bearer <token>` header value,
    /// if it is one of ours.
    pub fn check(&self, authorization: Option<&[u8]>) -> Option<Principal> {
        let value = authorization?;
        let token = value.strip_prefix(b"Bearer ")?;
        let hash = digest(token.trim_ascii());
        if bool::from(hash.ct_eq(&self.operator)) {
            return Some(Principal::Operator);
        }
        let tenants = self.tenants.read().unwrap_or_else(|e| e.into_inner());
        let (tenant, name) = tenants.get(&hash)?;
        Some(Principal::Tenant {
            tenant: tenant.clone(),
            name: name.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_passes() {
        let tokens = Tokens::new("s3cret");
        assert_eq!(
            tokens.check(Some(b"Bearer s3cret")),
            Some(Principal::Operator)
        );
        assert_eq!(tokens.check(Some(b"Bearer s3cret2")), None);
        assert_eq!(tokens.check(Some(b"Basic s3cret")), None);
        assert_eq!(tokens.check(None), None);
        let acme = generate("wsbt_");
        assert!(acme.starts_with("wsbt_") && acme.len() == 69, "{acme}");
        tokens.add_tenant_token(digest(acme.as_bytes()), "acme", "ci");
        let header = format!("Bearer {acme}");
        let principal = tokens.check(Some(header.as_bytes())).unwrap();
        assert_eq!(principal.audit_name(), "acme/ci");
        assert!(principal.reaches("acme") && !principal.reaches("default"));
        tokens.remove_tenant_token("acme", "ci");
        assert_eq!(tokens.check(Some(header.as_bytes())), None);
    }
}
