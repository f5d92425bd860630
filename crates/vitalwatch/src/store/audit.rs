//! The audit trail's hash chain, shared by every backend.
//!
//! Each entry's hash covers the previous entry's hash and every column of its own, so editing,
//! deleting or reordering a row breaks the chain from that row on.

use sha2::{Digest, Sha256};

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash of one entry, hex-encoded. Fields are length-prefixed so no two different
/// entries can produce the same input.
pub fn entry_hash(
    prev_hash: &str,
    id: i64,
    at: &str,
    actor: &str,
    action: &str,
    target: &str,
    details: &str,
) -> String {
    let mut hasher = Sha256::new();
    for part in [
        prev_hash,
        &id.to_string(),
        at,
        actor,
        action,
        target,
        details,
    ] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_changes_the_hash() {
        let base = entry_hash(GENESIS, 1, "t", "a", "x", "d", "{}");
        assert_eq!(base.len(), 64);
        assert_ne!(base, entry_hash(GENESIS, 2, "t", "a", "x", "d", "{}"));
        assert_ne!(base, entry_hash(GENESIS, 1, "t2", "a", "x", "d", "{}"));
        assert_ne!(base, entry_hash(GENESIS, 1, "t", "b", "x", "d", "{}"));
        assert_ne!(base, entry_hash(GENESIS, 1, "t", "a", "y", "d", "{}"));
        assert_ne!(base, entry_hash(GENESIS, 1, "t", "a", "x", "e", "{}"));
        assert_ne!(base, entry_hash(GENESIS, 1, "t", "a", "x", "d", "{ }"));
        assert_ne!(base, entry_hash(&base, 1, "t", "a", "x", "d", "{}"));
        // Moving a character across a field boundary changes the hash too.
        assert_ne!(
            entry_hash(GENESIS, 1, "t", "ab", "x", "d", "{}"),
            entry_hash(GENESIS, 1, "t", "a", "bx", "d", "{}")
        );
    }
}
