//! Webhook notifications on PostgreSQL survive the leader's crash (issue 14, "work that must
//! happen once ... webhook retries"): three real `serve` nodes on one real database, a real
//! HTTP receiver started here; the outbox rows are written by the node that commits each
//! transition and delivered by the leader only.

use crate::alerts::python_hmac;
use crate::shared_alerts::node;
use crate::support::postgres::Cluster;
use crate::support::{Server, WAIT, agent, get, poll_until, post_json, reading, wait_until};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

const SECRET: &str = "an outbox webhook secret";

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Request {
    delivery_id: String,
    signature: String,
    body: Vec<u8>,
    /// The status it was answered with.
    status: u16,
}

/// An HTTP receiver that answers every request with the current `status`.
struct Receiver {
    url: String,
    status: Arc<AtomicU16>,
    seen: Arc<Mutex<Vec<Request>>>,
}

impl Receiver {
    fn start(status: u16) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let status = Arc::new(AtomicU16::new(status));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (answer, log) = (Arc::clone(&status), Arc::clone(&seen));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut headers = BTreeMap::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':') {
                        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
                    }
                }
                let length = headers
                    .get("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let status = answer.load(Ordering::SeqCst);
                let header = |name: &str| headers.get(name).cloned().unwrap_or_default();
                log.lock().unwrap().push(Request {
                    delivery_id: header("x-vitalwatch-delivery"),
                    signature: header("x-vitalwatch-signature"),
                    body,
                    status,
                });
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        Receiver { url, status, seen }
    }

    fn seen(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }
}

fn cluster_of(server: &Server) -> Value {
    get(&agent(), &server.url("/health")).json["cluster"].clone()
}

/// A counter of the node's `/metrics` (0 when absent).
fn metric(server: &Server, series: &str) -> f64 {
    let scrape = agent()
        .get(&server.url("/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    scrape
        .lines()
        .filter_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .filter_map(|value| value.trim().parse::<f64>().ok())
        .sum()
}

const ATTEMPTS: &str = "vitalwatch_webhook_attempts_total";
const DELIVERED: &str = "vitalwatch_webhook_deliveries_total{outcome=\"delivered\"}";
const FAILED: &str = "vitalwatch_webhook_deliveries_total{outcome=\"failed\"}";

/// (alert id, kind, at) of a transition, as the alert's events and a webhook body name it.
type Transition = (u64, String, String);

fn of_body(body: &[u8]) -> Transition {
    let json: Value = serde_json::from_slice(body).unwrap();
    let t = &json["transition"];
    let kind = json["event"].as_str().unwrap().trim_start_matches("alert.");
    assert_eq!(t["kind"].as_str(), Some(kind), "{json}");
    (
        t["alert"]["id"].as_u64().unwrap(),
        kind.to_owned(),
        t["at"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn webhook_notifications_pending_when_the_leader_dies_are_all_delivered_by_the_next_leader() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(503);
    // No timers (offline, escalation, periodic updates): the transitions are the readings'
    // and the actions' only. Retries never give up within the test.
    let config_text = format!(
        "[cluster]\nleader_poll_s = 1\n[registry]\ndefault_expected_interval_s = 3600.0\n\
         [alerting]\nupdate_interval_s = 86400\n[alerting.escalation]\nmax_level = 0\n\
         [alerting.conditions.DEVICE_OFFLINE]\nenabled = false\n\
         [alerting.conditions.NEWS2]\nenabled = false\n\
         [alerting.webhook_delivery]\nmax_attempts = 1000\ninitial_backoff_ms = 100\n\
         max_backoff_ms = 300\ntimeout_ms = 2000\n\
         [[alerting.webhooks]]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n",
        receiver.url
    );
    let config = dir.path().join("outbox.toml");
    std::fs::write(&config, config_text).unwrap();
    let config = config.display().to_string();
    let database = Cluster::shared().database();
    let mut one = node(dir.path(), &database.url(), "node-1", &config);
    wait_until(WAIT, "node 1 to lead", || {
        (cluster_of(&one)["is_leader"] == true).then_some(())
    });
    let two = node(dir.path(), &database.url(), "node-2", &config);
    let three = node(dir.path(), &database.url(), "node-3", &config);
    for follower in [&two, &three] {
        wait_until(WAIT, "the followers to see node 1 lead", || {
            (cluster_of(follower)["leader"] == "node-1").then_some(())
        });
    }

    // Alerts raised, acknowledged and resolved through node 2, which does not lead.
    let agent = agent();
    let devices = ["hook-1", "hook-2", "hook-3", "hook-4"];
    for device in devices {
        for n in [1, 2, 3] {
            let answer = post_json(
                &agent,
                &two.url("/api/telemetry"),
                &reading(device, n, 35.0),
            );
            assert_eq!(answer.status, 200, "{}", answer.json);
        }
    }
    let listed = get(&agent, &two.url("/api/alerts?limit=1000")).json;
    let ids: Vec<u64> = listed["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["id"].as_u64())
        .collect();
    assert!(ids.len() >= devices.len(), "an alert per device: {listed}");
    let acked = post_json(
        &agent,
        &two.url(&format!("/api/alerts/{}/ack", ids[0])),
        r#"{"by":"nurse.jo"}"#,
    );
    assert_eq!(acked.status, 200, "{}", acked.json);
    let resolved = post_json(
        &agent,
        &two.url(&format!("/api/alerts/{}/resolve", ids[1])),
        r#"{"by":"dr.b"}"#,
    );
    assert_eq!(resolved.status, 200, "{}", resolved.json);
    // Every transition, as the alerts' histories hold them.
    let mut expected = BTreeSet::new();
    for id in &ids {
        let detail = get(&agent, &two.url(&format!("/api/alerts/{id}"))).json;
        for event in detail["events"].as_array().unwrap() {
            expected.insert((
                *id,
                event["kind"].as_str().unwrap().to_owned(),
                event["at"].as_str().unwrap().to_owned(),
            ));
        }
    }
    assert!(expected.len() >= ids.len() + 2, "{expected:?}");

    // The leader tries every notification and is refused, twice at least (so a round of
    // each is stored: a second round starts only after the first was); then it dies.
    let tries = || {
        let mut tries: BTreeMap<String, usize> = BTreeMap::new();
        for request in receiver.seen() {
            *tries.entry(request.delivery_id).or_default() += 1;
        }
        tries
    };
    let retried = poll_until(WAIT, || {
        let tries = tries();
        tries.len() >= expected.len() && tries.values().all(|n| *n >= 2)
    });
    assert!(
        retried.is_some(),
        "the leader did not retry every notification: {:?} of {expected:?}\n{}",
        tries(),
        one.log()
    );
    assert!(metric(&one, ATTEMPTS) >= expected.len() as f64);
    for follower in [&two, &three] {
        assert_eq!(metric(follower, ATTEMPTS), 0.0, "a follower never POSTs");
    }
    let killed = std::time::Instant::now();
    one.kill9();
    let (leader, follower) = wait_until(WAIT, "node 2 or 3 to lead", || {
        if cluster_of(&two)["is_leader"] == true {
            Some((&two, &three))
        } else if cluster_of(&three)["is_leader"] == true {
            Some((&three, &two))
        } else {
            None
        }
    });
    let at_takeover = receiver.seen().len();
    // The new leader goes on retrying (still refused), then the receiver accepts.
    wait_until(WAIT, "the new leader to retry", || {
        (metric(leader, ATTEMPTS) >= 1.0).then_some(())
    });
    receiver.status.store(200, Ordering::SeqCst);
    // Rows the dead leader was POSTing come back when their lease ends (timeout + 10 s).
    let delivered = wait_until(WAIT * 2, "every transition delivered", || {
        let accepted: Vec<Request> = receiver
            .seen()
            .into_iter()
            .filter(|r| r.status == 200)
            .collect();
        let got: BTreeSet<Transition> = accepted.iter().map(|r| of_body(&r.body)).collect();
        got.is_superset(&expected).then_some(accepted)
    });
    wait_until(WAIT, "the outbox emptied", || {
        (database.sql("SELECT count(*) FROM webhook_outbox").trim() == "0").then_some(())
    });
    eprintln!(
        "outbox: {} transitions, {} POSTs in all, every one delivered {:?} after the kill",
        expected.len(),
        receiver.seen().len(),
        killed.elapsed()
    );

    // None lost, none extra; one delivery id per transition, the same on every resend.
    let mut by_id: BTreeMap<String, Transition> = BTreeMap::new();
    for request in receiver.seen() {
        assert!(
            !request.delivery_id.is_empty(),
            "every POST names its delivery"
        );
        let transition = of_body(&request.body);
        let previous = by_id.insert(request.delivery_id.clone(), transition.clone());
        assert!(
            previous.is_none_or(|p| p == transition),
            "delivery {} carried two transitions",
            request.delivery_id
        );
        // Signed as on the single-node path.
        assert_eq!(
            request.signature,
            format!("sha256={}", python_hmac(SECRET, &request.body))
        );
    }
    let accepted_ids: BTreeSet<&String> = delivered.iter().map(|r| &r.delivery_id).collect();
    assert_eq!(
        accepted_ids.len(),
        expected.len(),
        "one delivery per transition"
    );
    let got: BTreeSet<Transition> = by_id.values().cloned().collect();
    assert_eq!(
        got, expected,
        "the delivered transitions are the alerts' events"
    );

    // Only the surviving leader POSTed after the kill: the follower never did, and every
    // request the receiver got since is one the new leader counted.
    assert_eq!(metric(follower, ATTEMPTS), 0.0, "a follower never POSTs");
    assert_eq!(metric(follower, DELIVERED), 0.0);
    let after_kill = receiver.seen().len() - at_takeover;
    assert!(
        metric(leader, ATTEMPTS) as usize >= after_kill,
        "requests after the kill come from the new leader"
    );
    assert_eq!(metric(leader, DELIVERED) as usize, expected.len());
    assert_eq!(metric(leader, FAILED), 0.0);

    // The dead-letter list is as on one node: a delivered record per transition, whose
    // attempts go on from the dead leader's (each was refused at least once before).
    let list = get(&agent, &follower.url("/api/webhooks/deliveries?limit=1000")).json;
    let records = list["deliveries"].as_array().unwrap();
    assert_eq!(records.len(), expected.len(), "{list}");
    for record in records {
        assert_eq!(record["state"], "delivered", "{record}");
        assert_eq!(record["url"], receiver.url.as_str());
        assert!(record["attempts"].as_u64().unwrap() >= 2, "{record}");
    }
    let counted: u64 = records
        .iter()
        .map(|r| r["attempts"].as_u64().unwrap())
        .sum();
    assert!(
        counted <= receiver.seen().len() as u64,
        "no attempt counted that the receiver did not get"
    );
}

/// The outbox's SQL on a real database: rows written with their transitions, claimed oldest
/// first under a lease, a stale settle refused, a finished row gone with its delivery
/// recorded.
mod store {
    use crate::store_conformance::alerts::{acknowledged, raised, transition};
    use crate::store_conformance::{at, options};
    use crate::support::postgres::Cluster;
    use std::collections::BTreeMap;
    use std::time::Duration;
    use vitalwatch::store::outbox::{Settled, webhook_body};
    use vitalwatch::store::postgres::{PostgresSettings, PostgresStore};
    use vitalwatch::store::{NewWebhookDelivery, Store};
    use vitalwatch_core::alerting::{AlertCondition, TransitionKind};

    fn failed_none(_: &vitalwatch::store::outbox::OutboxRow) -> Vec<NewWebhookDelivery> {
        Vec::new()
    }

    #[tokio::test]
    async fn outbox_rows_are_claimed_in_order_under_a_lease_settled_once_and_bounded() {
        let database = Cluster::shared().database();
        let store = PostgresStore::open(&database.url(), options(), PostgresSettings::default())
            .await
            .unwrap();
        let outbox = store.webhook_outbox().expect("PostgreSQL keeps an outbox");
        outbox.enable();
        let alert = raised(1, "bed-1", AlertCondition::HeartRateHigh, at(5));
        let acked = acknowledged(alert.clone(), "nurse", at(6));
        let transitions = vec![
            transition(TransitionKind::Raised, &alert, at(5)),
            transition(TransitionKind::Acknowledged, &acked, at(6)),
        ];
        store
            .write_alert_transitions(transitions.clone())
            .await
            .unwrap();

        let lease = Duration::from_secs(60);
        let rows = outbox.claim(10, lease).await.unwrap();
        assert_eq!(rows.len(), 2);
        assert!(rows[0].id < rows[1].id, "oldest first");
        assert_eq!(rows[0].body, webhook_body(&transitions[0]));
        assert_eq!(rows[1].body, webhook_body(&transitions[1]));
        assert_eq!(
            (
                rows[1].alert_id,
                rows[1].transition.as_str(),
                rows[1].attempts
            ),
            (Some(1), "acknowledged", 0)
        );
        assert!(!rows[0].body.contains("secret"));
        // Leased: a second claim (another leader) gets nothing.
        assert!(outbox.claim(10, lease).await.unwrap().is_empty());

        // A round that failed: due again at once (no backoff here), attempts counted.
        let retry = Settled {
            id: rows[0].id,
            claimed_attempts: 0,
            deliveries: Vec::new(),
            retry_after: Some(Duration::ZERO),
            finished: vec!["https://a.example/hook".to_owned()],
            last: BTreeMap::new(),
        };
        assert!(outbox.settle(retry.clone()).await.unwrap());
        // The same round stored again (a stale leader) is refused.
        assert!(!outbox.settle(retry).await.unwrap());
        let again = outbox.claim(10, Duration::ZERO).await.unwrap();
        assert_eq!(again.len(), 1, "only the row due again: {again:?}");
        assert_eq!(again[0].attempts, 1);
        assert_eq!(again[0].finished, vec!["https://a.example/hook".to_owned()]);
        // A lease of zero ends at once: a claim nobody settles (its leader died) comes back.
        let back = outbox.claim(10, lease).await.unwrap();
        assert_eq!(
            back.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![rows[0].id]
        );

        let delivered = NewWebhookDelivery {
            url: "https://b.example/hook".to_owned(),
            alert_id: back[0].alert_id,
            transition: back[0].transition.clone(),
            state: "delivered",
            attempts: 2,
            last_status: Some(200),
            last_error: None,
            created_at: back[0].created_at,
            body: back[0].body.clone(),
        };
        let done = Settled {
            id: back[0].id,
            claimed_attempts: 1,
            deliveries: vec![delivered],
            retry_after: None,
            finished: Vec::new(),
            last: BTreeMap::new(),
        };
        assert!(outbox.settle(done).await.unwrap());
        let records = store.webhook_deliveries(None, 10).await.unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(
            (records[0].state.as_str(), records[0].attempts),
            ("delivered", 2)
        );
        assert_eq!(
            database.sql("SELECT count(*) FROM webhook_outbox").trim(),
            "1",
            "the acknowledged row is still leased, the delivered one gone"
        );

        // Bounded: beyond `keep` rows the oldest go, recorded as the callback says.
        let more = raised(2, "bed-2", AlertCondition::HeartRateHigh, at(7));
        store
            .write_alert_transitions(vec![
                transition(TransitionKind::Raised, &more, at(7)),
                transition(
                    TransitionKind::Acknowledged,
                    &acknowledged(more.clone(), "n", at(8)),
                    at(8),
                ),
            ])
            .await
            .unwrap();
        let failed = |row: &vitalwatch::store::outbox::OutboxRow| {
            vec![NewWebhookDelivery {
                url: "https://b.example/hook".to_owned(),
                alert_id: row.alert_id,
                transition: row.transition.clone(),
                state: "failed",
                attempts: row.attempts,
                last_status: None,
                last_error: Some("outbox full".to_owned()),
                created_at: row.created_at,
                body: row.body.clone(),
            }]
        };
        assert_eq!(outbox.trim(1, &failed).await.unwrap(), 2);
        let left = database.sql("SELECT alert_id, transition FROM webhook_outbox");
        assert_eq!(left.trim(), "2|acknowledged", "the newest row is kept");
        let failed = store
            .webhook_deliveries(Some("failed".to_owned()), 10)
            .await
            .unwrap();
        let mut dropped: Vec<(Option<u64>, &str)> = failed
            .iter()
            .map(|d| (d.alert_id, d.transition.as_str()))
            .collect();
        dropped.sort();
        assert_eq!(
            dropped,
            vec![(Some(1), "acknowledged"), (Some(2), "raised")]
        );
        assert_eq!(outbox.trim(1, &failed_none).await.unwrap(), 0);
        store.close().await;
    }
}
