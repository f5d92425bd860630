//! The audit trail: entries queued without waiting land in order in one hash chain that
//! verifies from the genesis, the head and the newest entry of an action are found, and every
//! audited change (devices, thresholds, access) joins the same chain.

use super::{Fixture, Open, eventually};
use std::sync::Arc;
use vitalwatch::store::audit::{ChainCheck, GENESIS};
use vitalwatch::store::{AuditEntry, AuditRecord, DeviceRegistration, Store};

fn entry(n: u32) -> AuditEntry {
    AuditEntry {
        actor: format!("user:{n}"),
        action: if n.is_multiple_of(2) {
            "test.even"
        } else {
            "test.odd"
        }
        .to_owned(),
        target: format!("thing-{n}"),
        details: serde_json::json!({ "n": n, "note": "ünïcode ok" }),
    }
}

/// The whole log, read a page of `page` rows at a time.
async fn whole_log(store: &Arc<dyn Store>, page: usize) -> Vec<AuditRecord> {
    let mut out: Vec<AuditRecord> = Vec::new();
    loop {
        let after = out.last().map_or(0, |row| row.id);
        let rows = store.audit_log(after, page).await.unwrap();
        assert!(rows.len() <= page);
        if rows.is_empty() {
            return out;
        }
        out.extend(rows);
    }
}

/// Feeds the log to the backend-neutral chain check, one page at a time.
fn verify(rows: &[AuditRecord]) -> u64 {
    let mut check = ChainCheck::default();
    for page in rows.chunks(2) {
        check.feed(page).expect("the chain verifies");
    }
    check.finish().expect("the chain starts at the genesis");
    check.verified
}

pub async fn audit_entries_form_a_verifiable_chain(open: Open) {
    let fx = Fixture::new(&open).await;
    assert_eq!(fx.store.audit_head().await.unwrap(), None);
    assert!(fx.store.audit_log(0, 10).await.unwrap().is_empty());
    for n in 0..3 {
        fx.store.audit(entry(n)).await.unwrap();
    }
    if let Err((err, _)) = fx.store.try_audit_batch(vec![entry(3), entry(4)]) {
        panic!("an idle store takes a batch: {err}");
    }
    let store = Arc::clone(&fx.store);
    let rows = eventually("five audit rows", || {
        let store = Arc::clone(&store);
        async move {
            let rows = whole_log(&store, 2).await;
            (rows.len() == 5).then_some(rows)
        }
    })
    .await;

    for (n, row) in rows.iter().enumerate() {
        let expected = entry(n as u32);
        assert_eq!(row.actor, expected.actor, "in the order queued");
        assert_eq!(row.action, expected.action);
        assert_eq!(row.target, expected.target);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&row.details).unwrap(),
            expected.details
        );
        assert!(!row.at.is_empty());
    }
    assert_eq!(rows[0].prev_hash, GENESIS);
    for pair in rows.windows(2) {
        assert!(pair[1].id > pair[0].id);
        assert_eq!(
            pair[1].prev_hash, pair[0].hash,
            "each row links to the previous"
        );
    }
    assert_eq!(verify(&rows), 5);

    let last = rows.last().unwrap();
    assert_eq!(
        fx.store.audit_head().await.unwrap(),
        Some((last.id, last.hash.clone()))
    );
    let newest_even = fx.store.last_audit("test.even".to_owned()).await.unwrap();
    assert_eq!(newest_even.as_ref(), Some(&rows[4]));
    let newest_odd = fx.store.last_audit("test.odd".to_owned()).await.unwrap();
    assert_eq!(newest_odd.as_ref(), Some(&rows[3]));
    assert_eq!(
        fx.store.last_audit("nothing".to_owned()).await.unwrap(),
        None
    );
    // Paging: strictly after the id, at most `limit`.
    let tail = fx.store.audit_log(rows[1].id, 2).await.unwrap();
    assert_eq!(tail, rows[2..4]);
    fx.store.close().await;
}

pub async fn audited_changes_join_the_chain(open: Open) {
    let fx = Fixture::new(&open).await;
    fx.store.audit(entry(0)).await.unwrap();
    fx.store
        .register_device(
            DeviceRegistration {
                device_id: "bed-1".to_owned(),
                ..DeviceRegistration::default()
            },
            "admin".to_owned(),
        )
        .await
        .unwrap();
    fx.store
        .set_alert_verdict(1, true, "dr".to_owned())
        .await
        .expect_err("no such alert");
    fx.store.audit(entry(1)).await.unwrap();
    let store = Arc::clone(&fx.store);
    let rows = eventually("three audit rows", || {
        let store = Arc::clone(&store);
        async move {
            let rows = whole_log(&store, 100).await;
            (rows.len() >= 3).then_some(rows)
        }
    })
    .await;
    let actions: Vec<&str> = rows.iter().map(|row| row.action.as_str()).collect();
    assert_eq!(
        actions,
        ["test.even", "device.register", "test.odd"],
        "a refused change writes nothing"
    );
    assert_eq!(verify(&rows), 3);
    fx.store.close().await;
}
