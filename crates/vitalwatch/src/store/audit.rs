//! The audit trail's hash chain, shared by every backend.
//!
//! Each entry's hash covers the previous entry's hash and every column of its own, so editing,
//! deleting or reordering a row breaks the chain from that row on.

use super::AuditRecord;
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

/// Where a chain check stopped.
#[derive(Debug, PartialEq, Eq)]
pub struct ChainBreak {
    /// The first entry that does not verify.
    pub id: i64,
    pub reason: String,
}

/// Checks rows `(id order)` one page at a time; keep one [`ChainCheck`] across pages.
#[derive(Debug, Default)]
pub struct ChainCheck {
    previous: Option<(i64, String)>,
    /// A retention anchor seen so far: (first remaining id, its prev_hash).
    anchors: Vec<(i64, String)>,
    first: Option<(i64, String)>,
    pub verified: u64,
}

impl ChainCheck {
    /// Feeds the next rows; stops at the first break.
    pub fn feed(&mut self, rows: &[AuditRecord]) -> Result<(), ChainBreak> {
        for row in rows {
            if row.action == "retention.purge"
                && let Ok(details) = serde_json::from_str::<serde_json::Value>(&row.details)
                && let (Some(id), Some(prev)) = (
                    details["anchor"]["id"].as_i64(),
                    details["anchor"]["prev_hash"].as_str(),
                )
            {
                self.anchors.push((id, prev.to_owned()));
            }
            match &self.previous {
                None => {
                    if row.prev_hash != GENESIS {
                        // Checked at the end, once every anchor in the chain has been seen.
                        self.first = Some((row.id, row.prev_hash.clone()));
                    }
                }
                Some((prev_id, prev_hash)) => {
                    if &row.prev_hash != prev_hash {
                        let reason = if row.id != prev_id + 1 {
                            format!(
                                "its link to entry #{prev_id} is broken and entries #{}..#{} are missing (deleted)",
                                prev_id + 1,
                                row.id - 1
                            )
                        } else {
                            format!(
                                "its link to entry #{prev_id} is broken (an entry was deleted, inserted, reordered or edited)"
                            )
                        };
                        return Err(ChainBreak { id: row.id, reason });
                    }
                }
            }
            let expected = entry_hash(
                &row.prev_hash,
                row.id,
                &row.at,
                &row.actor,
                &row.action,
                &row.target,
                &row.details,
            );
            if expected != row.hash {
                return Err(ChainBreak {
                    id: row.id,
                    reason: "its contents do not match its hash (edited)".to_owned(),
                });
            }
            self.previous = Some((row.id, row.hash.clone()));
            self.verified += 1;
        }
        Ok(())
    }

    /// Ends the check: a chain that does not start at the genesis must be vouched for by a
    /// retention anchor recorded inside the chain.
    pub fn finish(&self) -> Result<(), ChainBreak> {
        if let Some((id, prev_hash)) = &self.first
            && !self
                .anchors
                .iter()
                .any(|(a_id, a_prev)| a_id == id && a_prev == prev_hash)
        {
            return Err(ChainBreak {
                id: *id,
                reason: "the chain does not start at the genesis and no retention purge vouches for it (earlier entries were deleted)".to_owned(),
            });
        }
        Ok(())
    }
}

/// An anchor: the chain's head at some moment, written outside the database (the
/// `audit-anchors.jsonl` file beside it; copy it off the host to make it worth more), so a
/// truncated or rewritten tail is detected even though every remaining row still chains.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Anchor {
    pub at: String,
    pub id: i64,
    pub hash: String,
    /// When the anchored row was written (so a purge can be checked against the retention
    /// period even after the row is gone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_at: Option<String>,
    /// HMAC-SHA256 of the other fields under the audit key ([`AuditKey`]): without the key,
    /// nobody can write an anchor that `audit verify --key` accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

/// The key that signs anchors: 32 random bytes, hex in a 0600 file kept outside the data
/// directory (`audit.key` beside the CA key by default). Whoever can rewrite the database and
/// the anchors file cannot forge a signed anchor without it.
#[derive(Clone)]
pub struct AuditKey(Vec<u8>);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey([redacted])")
    }
}

impl AuditKey {
    /// Reads the key file, or creates it (0600) when `create` and it does not exist.
    pub fn load(path: &std::path::Path, create: bool) -> anyhow::Result<AuditKey> {
        use anyhow::Context;
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let bytes = hex::decode(text.trim())
                    .ok()
                    .filter(|b| b.len() >= 32)
                    .with_context(|| format!("{} is not an audit key", path.display()))?;
                Ok(AuditKey(bytes))
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && create => {
                use std::io::Write;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                }
                let bytes = rand::random::<[u8; 32]>().to_vec();
                let mut options = std::fs::OpenOptions::new();
                options.create_new(true).write(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options
                    .open(path)
                    .with_context(|| format!("creating {}", path.display()))?;
                writeln!(file, "{}", hex::encode(&bytes))?;
                file.sync_all()?;
                Ok(AuditKey(bytes))
            }
            Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
        }
    }

    fn mac(&self, anchor: &Anchor) -> String {
        use hmac::Mac;
        let mut mac =
            hmac::Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        for part in [
            anchor.at.as_str(),
            &anchor.id.to_string(),
            &anchor.hash,
            anchor.row_at.as_deref().unwrap_or(""),
        ] {
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part.as_bytes());
        }
        hex::encode(mac.finalize().into_bytes())
    }

    /// Signs `anchor` (sets its `mac`).
    pub fn sign(&self, anchor: &mut Anchor) {
        anchor.mac = Some(self.mac(anchor));
    }

    /// Whether `anchor` carries this key's signature.
    pub fn verifies(&self, anchor: &Anchor) -> bool {
        anchor.mac.as_deref().is_some_and(|mac| {
            let expected = self.mac(anchor);
            mac.len() == expected.len()
                && mac
                    .bytes()
                    .zip(expected.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        })
    }
}

/// Checks every anchor's signature; the first one that is unsigned or signed by another key
/// fails.
pub fn check_signatures(anchors: &[Anchor], key: &AuditKey) -> Result<(), ChainBreak> {
    match anchors.iter().find(|anchor| !key.verifies(anchor)) {
        None => Ok(()),
        Some(anchor) => Err(ChainBreak {
            id: anchor.id,
            reason: format!(
                "its anchor recorded at {} is not signed by this audit key (the anchors file was rewritten)",
                anchor.at
            ),
        }),
    }
}

/// A retention purge as `audit verify` sees it: its row's time and the cutoff it recorded.
#[derive(Debug)]
pub struct Purge {
    pub id: i64,
    pub at: String,
    pub cutoff: Option<String>,
}

/// Checks that the rows missing from the start of the chain went by retention, not by hand:
/// the purge that vouches for them must record a cutoff at least `retention_days` before its
/// own time, and no anchored row older than `first_id` may be younger than that cutoff.
pub fn check_purges(
    purges: &[Purge],
    anchors: &[Anchor],
    first_id: Option<i64>,
    retention_days: u32,
) -> Result<(), ChainBreak> {
    let Some(first) = first_id else { return Ok(()) };
    let Some(latest) = purges.last() else {
        return Ok(());
    };
    let parse = |text: &str| chrono::DateTime::parse_from_rfc3339(text).ok();
    let (Some(at), Some(cutoff)) = (parse(&latest.at), latest.cutoff.as_deref().and_then(parse))
    else {
        return Err(ChainBreak {
            id: latest.id,
            reason: "a retention purge that records no cutoff (forged)".to_owned(),
        });
    };
    if cutoff > at - chrono::Duration::days(i64::from(retention_days)) {
        return Err(ChainBreak {
            id: latest.id,
            reason: format!(
                "a retention purge removed entries younger than the {retention_days}-day audit retention allows"
            ),
        });
    }
    for anchor in anchors.iter().filter(|a| a.id < first) {
        let row_at = anchor.row_at.as_deref().and_then(parse);
        if row_at.is_none_or(|row_at| row_at >= cutoff) {
            return Err(ChainBreak {
                id: anchor.id,
                reason: format!(
                    "it was anchored at {} and is gone, but it was younger than the retention cutoff (deleted, not purged)",
                    anchor.at
                ),
            });
        }
    }
    Ok(())
}

/// Anchors the chain's head (when it moved since the last anchor); returns the anchored id.
pub async fn anchor_head(
    store: &dyn super::Store,
    path: &std::path::Path,
    key: &AuditKey,
) -> Option<i64> {
    let head = match store.audit_head().await {
        Ok(Some(head)) => head,
        Ok(None) => return None,
        Err(err) => {
            tracing::warn!(event = "audit.anchor_failed", message = "Audit anchor not written.", error = %err);
            return None;
        }
    };
    let last = read_anchors(path)
        .ok()
        .and_then(|anchors| anchors.last().map(|a| a.id));
    if last == Some(head.0) {
        return Some(head.0);
    }
    let row_at = store
        .audit_log(head.0 - 1, 1)
        .await
        .ok()
        .and_then(|rows| rows.into_iter().next())
        .filter(|row| row.id == head.0)
        .map(|row| row.at);
    let mut anchor = Anchor {
        at: crate::clock::now().to_rfc3339(),
        id: head.0,
        hash: head.1,
        row_at,
        mac: None,
    };
    key.sign(&mut anchor);
    if let Err(err) = append_anchor(path, &anchor) {
        tracing::warn!(event = "audit.anchor_failed", message = "Audit anchor not written.", error = %err);
        return None;
    }
    Some(head.0)
}

pub fn anchors_path(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("audit-anchors.jsonl")
}

/// Appends an anchor (the file is created 0600).
pub fn append_anchor(path: &std::path::Path, anchor: &Anchor) -> std::io::Result<()> {
    use std::io::Write;
    // On PostgreSQL nothing else creates the data directory: the anchors may be its first file.
    if let Some(dir) = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty() && !dir.exists())
    {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    let line = serde_json::to_string(anchor).map_err(std::io::Error::other)?;
    writeln!(file, "{line}")?;
    file.sync_all()
}

/// The anchors recorded so far (none when the file does not exist).
pub fn read_anchors(path: &std::path::Path) -> anyhow::Result<Vec<Anchor>> {
    use anyhow::Context;
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
    };
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .enumerate()
        .map(|(n, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("{} line {}: not an anchor", path.display(), n + 1))
        })
        .collect()
}

/// Checks anchors against the rows seen: `rows` maps id → hash for every remaining row, and
/// `first_id` is the oldest remaining id (older anchors were purged by retention).
pub fn check_anchors(
    anchors: &[Anchor],
    rows: &std::collections::HashMap<i64, String>,
    first_id: Option<i64>,
    last_id: Option<i64>,
) -> Result<(), ChainBreak> {
    for anchor in anchors {
        if first_id.is_some_and(|first| anchor.id < first) {
            continue;
        }
        match rows.get(&anchor.id) {
            Some(hash) if *hash == anchor.hash => {}
            Some(_) => {
                return Err(ChainBreak {
                    id: anchor.id,
                    reason: format!(
                        "it differs from its anchor recorded at {} (the chain was rewritten from here)",
                        anchor.at
                    ),
                });
            }
            None => {
                return Err(ChainBreak {
                    id: anchor.id,
                    reason: format!(
                        "it was anchored at {} but is missing: entries after #{} were deleted",
                        anchor.at,
                        last_id.unwrap_or(0)
                    ),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid chain of `n` rows starting at `first_id` after `prev`.
    fn chain(n: i64, first_id: i64, prev: &str) -> Vec<AuditRecord> {
        let mut prev = prev.to_owned();
        (first_id..first_id + n)
            .map(|id| {
                let details = "{}".to_owned();
                let hash = entry_hash(&prev, id, "t", "a", "x", "d", &details);
                let row = AuditRecord {
                    id,
                    at: "t".into(),
                    actor: "a".into(),
                    action: "x".into(),
                    target: "d".into(),
                    details,
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                };
                prev = hash;
                row
            })
            .collect()
    }

    fn check(rows: &[AuditRecord]) -> Result<u64, ChainBreak> {
        let mut checker = ChainCheck::default();
        checker.feed(rows)?;
        checker.finish()?;
        Ok(checker.verified)
    }

    #[test]
    fn intact_edited_deleted_reordered() {
        let rows = chain(5, 1, GENESIS);
        assert_eq!(check(&rows), Ok(5));

        let mut edited = rows.clone();
        edited[2].actor = "mallory".into();
        assert_eq!(check(&edited).unwrap_err().id, 3);

        let mut deleted = rows.clone();
        deleted.remove(2);
        let err = check(&deleted).unwrap_err();
        assert_eq!(err.id, 4);
        assert!(err.reason.contains("#3..#3 are missing"), "{}", err.reason);

        let mut reordered = rows.clone();
        reordered.swap(1, 2);
        assert_eq!(check(&reordered).unwrap_err().id, 3);

        let truncated = rows[2..].to_vec();
        assert_eq!(check(&truncated).unwrap_err().id, 3);
    }

    #[test]
    fn retention_is_vouched_for_by_its_anchor() {
        let rows = chain(5, 1, GENESIS);
        let mut kept = rows[2..].to_vec();
        let last = kept.last().unwrap().clone();
        let details = serde_json::json!({ "audit": 2, "anchor": { "id": 3, "prev_hash": rows[2].prev_hash } })
            .to_string();
        let hash = entry_hash(
            &last.hash,
            6,
            "t",
            "system:retention",
            "retention.purge",
            "store",
            &details,
        );
        kept.push(AuditRecord {
            id: 6,
            at: "t".into(),
            actor: "system:retention".into(),
            action: "retention.purge".into(),
            target: "store".into(),
            details,
            prev_hash: last.hash,
            hash,
        });
        assert_eq!(check(&kept), Ok(4));
    }

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
