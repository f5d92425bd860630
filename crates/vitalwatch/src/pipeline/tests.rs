//! The pipeline over a real SQLite store in a temporary directory: what a body becomes, how
//! refusals are counted and summarised, duplicates, scoring with and without a model, and
//! events published only after the commit.

use super::*;
use crate::store::ReadingQuery;
use crate::testing::{Service, reading_json, service, service_in};
use vitalwatch_core::detect::{Feature, PopulationOptions, TrainOptions, normal_population};

fn stored_id(outcome: &ReadingOutcome) -> i64 {
    match &outcome.outcome {
        ItemOutcome::Stored { reading_id, .. } => *reading_id,
        other => panic!("not stored: {other:?}"),
    }
}

fn one(outcome: BodyOutcome) -> ReadingOutcome {
    match outcome {
        BodyOutcome::One(outcome) => outcome,
        BodyOutcome::Batch(items) => panic!("a batch answer for one reading: {items:?}"),
    }
}

async fn stored(service: &Service, device_id: &str) -> Vec<ReadingRecord> {
    service
        .store
        .readings(ReadingQuery {
            device_id: Some(device_id.to_owned()),
            limit: 100,
            ..ReadingQuery::default()
        })
        .await
        .expect("reading back from the store")
}

#[tokio::test]
async fn a_reading_is_stored_and_answered_with_its_id() {
    let service = service(|_| {}).await;
    let outcome = service
        .pipeline
        .ingest_body(reading_json("bed-1", 72.0).as_bytes(), Source::Http, None)
        .await
        .expect("a good reading is accepted");
    let outcome = one(outcome);
    assert_eq!(outcome.device_id, "bed-1");
    let id = stored_id(&outcome);
    let rows = stored(&service, "bed-1").await;
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].id, rows[0].heart_rate), (id, Some(72.0)));
    assert_eq!(rows[0].source, "http");
    let counts = service.pipeline.metrics().counts();
    assert_eq!((counts.stored, counts.rejected), (1, 0));
}

#[tokio::test]
async fn a_batch_answers_each_item_and_stores_the_good_ones() {
    let service = service(|_| {}).await;
    let body = format!(
        "[{},{{\"device_id\":\"bed-2\",\"heart_rate\":\"fast\"}},{}]",
        reading_json("bed-2", 70.0),
        reading_json("bed-3", 71.0)
    );
    let outcome = service
        .pipeline
        .ingest_body(body.as_bytes(), Source::Http, None)
        .await
        .expect("a batch with one bad item is answered item by item");
    let BodyOutcome::Batch(items) = outcome else {
        panic!("a batch body gets a batch answer");
    };
    assert_eq!(items.len(), 3);
    assert!(
        items[0].is_ok() && items[1].is_err() && items[2].is_ok(),
        "{items:?}"
    );
    assert_eq!(stored(&service, "bed-2").await.len(), 1);
    assert_eq!(stored(&service, "bed-3").await.len(), 1);
    assert_eq!(service.pipeline.metrics().counts().rejected, 1);
}

#[tokio::test]
async fn refusals_are_counted_by_reason_and_summarised_into_one_audit_row() {
    let service = service(|_| {}).await;
    for _ in 0..3 {
        let res = service
            .pipeline
            .ingest_body(b"not json", Source::Http, None)
            .await;
        assert!(matches!(res, Err(IngestError::Refused(_))), "{res:?}");
    }
    let res = service
        .pipeline
        .ingest_device_payload(
            reading_json("bed-9", 70.0).as_bytes(),
            Source::Mqtt,
            Some("bed-1"),
        )
        .await;
    assert!(matches!(res, Err(IngestError::Unauthorized)), "{res:?}");
    let refusals = service.pipeline.metrics().refusals();
    assert_eq!(refusals.get("malformed_json"), Some(&3), "{refusals:?}");
    assert_eq!(refusals.len(), 2, "{refusals:?}");
    assert!(stored(&service, "bed-9").await.is_empty());

    service.pipeline.flush_refusal_audit().await;
    // Audit entries are queued to the writer; closing the store commits what is queued.
    let pipeline = Arc::clone(&service.pipeline);
    let service = service_in(service.stop().await, None, |_| {}).await;
    let rows = service
        .store
        .audit_log(0, 100)
        .await
        .expect("reading the audit log");
    let rejected: Vec<_> = rows
        .iter()
        .filter(|r| r.action == "input.rejected")
        .collect();
    assert_eq!(rejected.len(), 2, "{rows:?}");
    let malformed = rejected
        .iter()
        .find(|r| r.target == "malformed_json")
        .expect("a row for malformed JSON");
    assert_eq!(malformed.actor, "system:http");
    assert!(
        malformed.details.contains("\"count\":3"),
        "{}",
        malformed.details
    );
    // Summarised once: nothing is left to summarise.
    assert!(pipeline.pending_refusals.lock().is_empty());
}

#[tokio::test]
async fn the_same_reading_twice_is_stored_once_and_counted_as_a_duplicate() {
    let service = service(|_| {}).await;
    let body =
        br#"{"device_id":"bed-4","timestamp":1767225600000,"heart_rate":72,"body_temp":36.8}"#;
    let first = one(service
        .pipeline
        .ingest_body(body, Source::Http, None)
        .await
        .expect("accepted"));
    let id = stored_id(&first);
    let second = one(service
        .pipeline
        .ingest_body(body, Source::Mqtt, None)
        .await
        .expect("accepted"));
    assert!(
        matches!(second.outcome, ItemOutcome::Duplicate { reading_id } if reading_id == id),
        "{second:?}"
    );
    assert_eq!(stored(&service, "bed-4").await.len(), 1);
    let counts = service.pipeline.metrics().counts();
    assert_eq!((counts.stored, counts.duplicates), (1, 1));
}

fn small_model() -> vitalwatch_core::detect::Model {
    let data = normal_population(&PopulationOptions {
        patients: 10,
        readings_per_patient: 50,
        ..PopulationOptions::default()
    });
    vitalwatch_core::detect::train(
        &data,
        &Feature::SEED,
        &TrainOptions {
            trees: 10,
            ..TrainOptions::default()
        },
        Timestamp::from_secs(1_764_000_000),
        &mut |_| {},
    )
    .expect("training on synthetic data succeeds")
}

#[tokio::test]
async fn readings_are_scored_only_when_a_model_is_loaded() {
    let without = service(|_| {}).await;
    one(without
        .pipeline
        .ingest_body(reading_json("bed-5", 72.0).as_bytes(), Source::Http, None)
        .await
        .expect("accepted"));
    assert_eq!(stored(&without, "bed-5").await[0].ml_score, None);

    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("model.json");
    std::fs::write(&path, small_model().to_bytes()).expect("writing the model file");
    let slot = Arc::new(ModelSlot::open(path));
    assert!(slot.current().is_some(), "{:?}", slot.status().description);
    let with = service_in(dir, Some(slot), |_| {}).await;
    one(with
        .pipeline
        .ingest_body(reading_json("bed-5", 72.0).as_bytes(), Source::Http, None)
        .await
        .expect("accepted"));
    let score = stored(&with, "bed-5").await[0].ml_score;
    assert!(score.is_some_and(f64::is_finite), "{score:?}");
}

#[tokio::test]
async fn events_are_published_after_the_commit_and_not_for_a_failed_one() {
    let mut service = service(|_| {}).await;
    let outcome = one(service
        .pipeline
        .ingest_body(reading_json("bed-6", 72.0).as_bytes(), Source::Http, None)
        .await
        .expect("accepted"));
    let id = stored_id(&outcome);
    let event = service
        .events
        .try_recv()
        .expect("published by the time of the answer");
    let Event::Reading(record) = event else {
        panic!("the first event is the reading: {event:?}");
    };
    assert_eq!((record.id, record.device_id.as_str()), (id, "bed-6"));
    // What the event announces is in the store already.
    assert!(
        stored(&service, "bed-6")
            .await
            .iter()
            .any(|r| r.id == record.id)
    );
    assert!(
        service.events.try_recv().is_err(),
        "one normal reading, one event"
    );

    service.store.close().await;
    let res = service
        .pipeline
        .ingest_body(reading_json("bed-6", 73.0).as_bytes(), Source::Http, None)
        .await;
    assert!(matches!(res, Err(IngestError::Store(_))), "{res:?}");
    assert!(
        service.events.try_recv().is_err(),
        "an uncommitted reading was published"
    );
}
