//! Stable names for content and for compiled code: a component's SHA-256,
//! and the engine configuration its compiled code is only valid for.

use sha2::{Digest, Sha256};
use wasmtime::Engine;

/// The SHA-256 of some bytes, in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// Feeds `std::hash::Hash` output into SHA-256: unlike `DefaultHasher`,
/// its result is stable across builds, so it can name files.
struct Sha256Hasher(Sha256);

impl std::hash::Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        0 // unused: the digest is taken with `finalize`
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// The engine's compatibility fingerprint (wasmtime version, target and
/// code-generation settings), hashed to a short hex string.
pub fn engine_fingerprint(engine: &Engine) -> String {
    use std::hash::Hash;
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let digest = format!("{:x}", hasher.0.finalize());
    digest[..16].to_string()
}
