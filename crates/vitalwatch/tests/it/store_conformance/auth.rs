//! Access control: API tokens and dashboard users are created (names unique), found, listed
//! and changed, every change audited without its secret.

use super::{Fixture, Open};
use vitalwatch::store::{AuthWrite, StoreError, TokenRecord, UserRecord};

pub(crate) fn token(id: &str, name: &str, created_at: &str) -> TokenRecord {
    TokenRecord {
        id: id.to_owned(),
        name: name.to_owned(),
        role: "device".to_owned(),
        device_id: Some("bed-1".to_owned()),
        secret_hash: format!("sha256-of-{name}"),
        created_at: created_at.to_owned(),
        created_by: "admin".to_owned(),
        expires_at: Some("2030-01-01T00:00:00Z".to_owned()),
        revoked_at: None,
    }
}

pub(crate) fn user(username: &str) -> UserRecord {
    UserRecord {
        username: username.to_owned(),
        role: "clinician".to_owned(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
        created_at: "2026-01-01T00:00:00Z".to_owned(),
        created_by: "admin".to_owned(),
        updated_at: "2026-01-01T00:00:00Z".to_owned(),
        disabled_at: None,
    }
}

pub async fn tokens_are_created_found_and_revoked(open: Open) {
    let fx = Fixture::new(&open).await;
    let write = |w: AuthWrite| {
        let store = std::sync::Arc::clone(&fx.store);
        async move { store.auth_write(w, "admin".to_owned()).await }
    };
    let pump = token("00000000000000a1", "pump", "2026-01-02T00:00:00Z");
    let monitor = token("00000000000000b2", "monitor", "2026-01-01T00:00:00Z");
    assert!(write(AuthWrite::CreateToken(pump.clone())).await.unwrap());
    assert!(
        write(AuthWrite::CreateToken(monitor.clone()))
            .await
            .unwrap()
    );
    let clash = write(AuthWrite::CreateToken(token(
        "00000000000000c3",
        "pump",
        "2026-01-03T00:00:00Z",
    )))
    .await;
    assert!(matches!(clash, Err(StoreError::Conflict(_))), "{clash:?}");

    assert_eq!(
        fx.store.find_token(pump.id.clone()).await.unwrap(),
        Some(pump.clone()),
        "every field, the secret's hash included"
    );
    assert_eq!(fx.store.find_token("nope".to_owned()).await.unwrap(), None);
    assert_eq!(
        fx.store.list_tokens().await.unwrap(),
        vec![monitor.clone(), pump.clone()],
        "by creation time"
    );

    // By name or by id; a second revocation finds nothing to revoke.
    assert!(
        write(AuthWrite::RevokeToken("pump".to_owned()))
            .await
            .unwrap()
    );
    assert!(
        !write(AuthWrite::RevokeToken("pump".to_owned()))
            .await
            .unwrap()
    );
    assert!(
        write(AuthWrite::RevokeToken(monitor.id.clone()))
            .await
            .unwrap()
    );
    assert!(
        !write(AuthWrite::RevokeToken("ghost".to_owned()))
            .await
            .unwrap()
    );
    let revoked = fx.store.find_token(pump.id.clone()).await.unwrap().unwrap();
    assert!(revoked.revoked_at.is_some());

    let created = fx
        .store
        .last_audit("token.created".to_owned())
        .await
        .unwrap()
        .expect("audited");
    assert_eq!(created.target, "token:monitor");
    assert!(
        !created.details.contains("sha256-of"),
        "no secret in the audit trail: {}",
        created.details
    );
    let revoked = fx
        .store
        .last_audit("token.revoked".to_owned())
        .await
        .unwrap()
        .expect("audited");
    assert_eq!(revoked.target, "token:monitor");
    fx.store.close().await;
}

pub async fn users_are_created_changed_and_disabled(open: Open) {
    let fx = Fixture::new(&open).await;
    let write = |w: AuthWrite| {
        let store = std::sync::Arc::clone(&fx.store);
        async move { store.auth_write(w, "admin".to_owned()).await }
    };
    assert!(write(AuthWrite::CreateUser(user("zoe"))).await.unwrap());
    assert!(write(AuthWrite::CreateUser(user("alice"))).await.unwrap());
    let clash = write(AuthWrite::CreateUser(user("alice"))).await;
    assert!(matches!(clash, Err(StoreError::Conflict(_))), "{clash:?}");
    assert_eq!(
        fx.store.find_user("alice".to_owned()).await.unwrap(),
        Some(user("alice"))
    );
    assert_eq!(fx.store.find_user("bob".to_owned()).await.unwrap(), None);
    let names: Vec<String> = fx
        .store
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["alice", "zoe"]);

    let new_hash = "$argon2id$v=19$m=19456,t=2,p=1$bmV3$bmV3aGFzaA".to_owned();
    assert!(
        write(AuthWrite::SetPassword {
            username: "alice".to_owned(),
            hash: new_hash.clone(),
        })
        .await
        .unwrap()
    );
    assert!(
        !write(AuthWrite::SetPassword {
            username: "bob".to_owned(),
            hash: new_hash.clone(),
        })
        .await
        .unwrap()
    );
    let alice = fx
        .store
        .find_user("alice".to_owned())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alice.password_hash, new_hash);
    let changed = fx
        .store
        .last_audit("user.password_changed".to_owned())
        .await
        .unwrap()
        .expect("audited");
    assert!(!changed.details.contains("argon2"), "{}", changed.details);

    let disable = |username: &str, disabled| AuthWrite::SetUserDisabled {
        username: username.to_owned(),
        disabled,
    };
    assert!(write(disable("alice", true)).await.unwrap());
    let alice = fx
        .store
        .find_user("alice".to_owned())
        .await
        .unwrap()
        .unwrap();
    assert!(alice.disabled_at.is_some());
    assert!(write(disable("alice", false)).await.unwrap());
    let alice = fx
        .store
        .find_user("alice".to_owned())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alice.disabled_at, None);
    assert!(!write(disable("bob", true)).await.unwrap());
    for action in ["user.created", "user.disabled", "user.enabled"] {
        assert!(
            fx.store
                .last_audit(action.to_owned())
                .await
                .unwrap()
                .is_some(),
            "{action} is audited"
        );
    }
    fx.store.close().await;
}
