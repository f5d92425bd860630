//! `GET /api/events`: the pipeline's events as Server-Sent Events, for the live dashboard.
//!
//! Every event's `id:` is the stream's cursor `R-A`: the highest reading id and anomaly id the
//! client has been sent. Both only grow (they are the database's row ids), so the cursor
//! survives a server restart: a browser reconnecting with `Last-Event-ID` first gets what was
//! stored after its cursor, read from the database, then live events. When it missed more than
//! [`CATCH_UP_LIMIT`] rows, or fell behind the broadcast buffer (`Lagged`), it gets a `resync`
//! event telling it to refetch instead. Every other event kind the pipeline publishes (alerts,
//! for one) is forwarded under its own name with the cursor unchanged.
//!
//! The stream never blocks the pipeline: each client has its own task that reads the
//! broadcast channel, and a slow client only lags. Streams end when the server shuts down, so
//! graceful shutdown does not wait for browsers.

use super::{ApiError, AppState};
use crate::auth::layer::AuthService;
use crate::auth::routes::{RouteRule, Routes};
use crate::auth::{Access, Principal};
use crate::events::Event;
use crate::events::bridge::GAP_RECONNECTED;
use crate::store::Store;
use axum::Extension;
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

/// Rows replayed from the database on reconnect before a `resync` is cheaper.
pub const CATCH_UP_LIMIT: usize = 2000;
/// Comment lines that keep proxies and the browser from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// SSE frames queued per client before its task waits (the task, not the pipeline).
const CLIENT_QUEUE: usize = 256;
/// How often an open stream checks that its caller's session or token is still valid.
const ACCESS_CHECK_EVERY: Duration = Duration::from_secs(5);
/// How long a browser waits before reconnecting (the `retry:` field).
const RETRY: Duration = Duration::from_millis(1000);

/// The live routes. They need the server's shutdown token, so they are a router of their own
/// that `serve` merges into the API and dashboard listeners.
pub fn routes(state: AppState, shutdown: CancellationToken) -> (Router, Vec<RouteRule>) {
    let (router, table) = live_routes().into_parts();
    (router.with_state(LiveState { state, shutdown }), table)
}

/// The live stream's route: patient data, like every read.
pub fn live_routes() -> Routes<LiveState> {
    Routes::new().get("/api/events", Access::Read, events)
}

#[derive(Clone)]
pub struct LiveState {
    state: AppState,
    shutdown: CancellationToken,
}

/// The highest reading and anomaly ids a client has seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    pub reading_id: i64,
    pub anomaly_id: i64,
}

impl Cursor {
    /// Parses `R-A` (two non-negative integers).
    pub fn parse(raw: &str) -> Option<Cursor> {
        let (r, a) = raw.trim().split_once('-')?;
        let cursor = Cursor {
            reading_id: r.parse().ok()?,
            anomaly_id: a.parse().ok()?,
        };
        (cursor.reading_id >= 0 && cursor.anomaly_id >= 0).then_some(cursor)
    }

    pub fn id(self) -> String {
        format!("{}-{}", self.reading_id, self.anomaly_id)
    }
}

/// The client's cursor: the `Last-Event-ID` header a browser's EventSource sends when it
/// reconnects by itself, or `?last_event_id=` when the page had to open a new EventSource.
fn last_cursor(headers: &HeaderMap, query: Option<&str>) -> Option<Cursor> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(Cursor::parse)
        .or_else(|| {
            serde_urlencoded::from_str::<Vec<(String, String)>>(query.unwrap_or(""))
                .ok()?
                .into_iter()
                .find(|(key, _)| key == "last_event_id")
                .and_then(|(_, value)| Cursor::parse(&value))
        })
}

#[utoipa::path(
    get,
    path = "/api/events",
    tag = "live",
    responses(
        (status = 200, description = "A server-sent event stream (reading, anomaly, alert, resync)", content_type = "text/event-stream", body = String),
        (status = "4XX", description = "Refused", body = super::openapi::ErrorBody),
        (status = 503, description = "The audit buffer is full or the store is unavailable", body = super::openapi::ErrorBody),
    )
)]
async fn events(
    State(live): State<LiveState>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Sse<impl tokio_stream::Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    // Bounded per caller and in all; the slot is held by the stream's task until it ends.
    let Some(slot) = live.state.auth.live_streams.try_open(&who.actor()) else {
        return Err(ApiError::too_many_requests(
            "too_many_streams",
            "too many live streams are open (for this caller or in all); close one first",
            5,
        ));
    };
    let last = last_cursor(&headers, query.as_deref());
    // Subscribe before reading the database, so nothing falls between the two.
    let receiver = live.state.pipeline.subscribe();
    let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
    // The stream ends with the server, or when its caller's session or token ends.
    let end = live.shutdown.child_token();
    tokio::spawn(watch_access(
        Arc::clone(&live.state.auth),
        who,
        tx.clone(),
        end.clone(),
    ));
    let store = Arc::clone(&live.state.store);
    tokio::spawn(async move {
        let _slot = slot;
        forward(store, receiver, last, tx, end).await;
    });
    Ok(Sse::new(ReceiverStream::new(rx).map(Ok)).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// Ends the stream (`end`) once the caller is no longer authenticated; checked every
/// [`ACCESS_CHECK_EVERY`] until the client goes away.
async fn watch_access(
    auth: Arc<AuthService>,
    who: Principal,
    tx: mpsc::Sender<SseEvent>,
    end: CancellationToken,
) {
    loop {
        tokio::select! {
            () = end.cancelled() => return,
            () = tx.closed() => return,
            () = tokio::time::sleep(ACCESS_CHECK_EVERY) => {}
        }
        if !auth.still_valid(&who).await {
            end.cancel();
            return;
        }
    }
}

fn frame(name: &str, cursor: Cursor, data: &serde_json::Value) -> SseEvent {
    SseEvent::default()
        .event(name)
        .id(cursor.id())
        .data(data.to_string())
}

/// Sends `resync` with the database's current cursor and returns that cursor.
async fn resync(
    store: &Arc<dyn Store>,
    tx: &mpsc::Sender<SseEvent>,
    cursor: Cursor,
    reason: &str,
) -> Option<Cursor> {
    let cursor = match store.max_event_ids().await {
        Ok((reading_id, anomaly_id)) => Cursor {
            reading_id: reading_id.max(cursor.reading_id),
            anomaly_id: anomaly_id.max(cursor.anomaly_id),
        },
        Err(_) => cursor,
    };
    tx.send(frame(
        "resync",
        cursor,
        &serde_json::json!({ "reason": reason }),
    ))
    .await
    .ok()?;
    Some(cursor)
}

async fn forward(
    store: Arc<dyn Store>,
    mut receiver: broadcast::Receiver<Event>,
    last: Option<Cursor>,
    tx: mpsc::Sender<SseEvent>,
    shutdown: CancellationToken,
) {
    let now_ids = match store.max_event_ids().await {
        Ok((reading_id, anomaly_id)) => Cursor {
            reading_id,
            anomaly_id,
        },
        Err(err) => {
            tracing::warn!(event = "live.cursor_failed", message = "Live stream could not read its start cursor.", error = %err);
            Cursor::default()
        }
    };
    let mut cursor = last.unwrap_or(now_ids);
    let hello = SseEvent::default()
        .event("hello")
        .id(cursor.id())
        .retry(RETRY)
        .data(
            serde_json::json!({
                "resumed": last.is_some(),
                "server_time": crate::clock::now().to_rfc3339(),
            })
            .to_string(),
        );
    if tx.send(hello).await.is_err() {
        return;
    }
    if last.is_some() {
        match store
            .events_after(cursor.reading_id, cursor.anomaly_id, CATCH_UP_LIMIT)
            .await
        {
            Ok((readings, anomalies))
                if readings.len() < CATCH_UP_LIMIT && anomalies.len() < CATCH_UP_LIMIT =>
            {
                for reading in readings {
                    cursor.reading_id = cursor.reading_id.max(reading.id);
                    let data = serde_json::json!(reading);
                    if tx.send(frame("reading", cursor, &data)).await.is_err() {
                        return;
                    }
                }
                for anomaly in anomalies {
                    cursor.anomaly_id = cursor.anomaly_id.max(anomaly.id);
                    let data = serde_json::json!(anomaly);
                    if tx.send(frame("anomaly", cursor, &data)).await.is_err() {
                        return;
                    }
                }
            }
            Ok(_) => match resync(&store, &tx, cursor, "too_many_missed").await {
                Some(next) => cursor = next,
                None => return,
            },
            Err(err) => {
                tracing::warn!(event = "live.catch_up_failed", message = "Live stream catch-up failed.", error = %err);
                match resync(&store, &tx, cursor, "catch_up_failed").await {
                    Some(next) => cursor = next,
                    None => return,
                }
            }
        }
    }
    // What the catch-up (or a resync) covered. Live events at or below it are skipped; above
    // it they are all sent, in the order they arrive: with several nodes on one database, a
    // reading committed on another node may come after one with a higher id.
    let mut floor = cursor;
    loop {
        let received = tokio::select! {
            () = shutdown.cancelled() => return,
            () = tx.closed() => return,
            received = receiver.recv() => received,
        };
        match received {
            Ok(Event::Gap) => match resync(&store, &tx, cursor, GAP_RECONNECTED).await {
                Some(next) => {
                    cursor = next;
                    floor = next;
                }
                None => return,
            },
            Ok(event) => {
                // Skip what the catch-up already sent.
                if let Event::Reading(reading) = &event {
                    if reading.id <= floor.reading_id {
                        continue;
                    }
                    cursor.reading_id = cursor.reading_id.max(reading.id);
                } else if let Event::Anomaly(anomaly) = &event {
                    if anomaly.id <= floor.anomaly_id {
                        continue;
                    }
                    cursor.anomaly_id = cursor.anomaly_id.max(anomaly.id);
                }
                let value = serde_json::to_value(&event).unwrap_or_default();
                let name = value
                    .get("kind")
                    .and_then(|k| k.as_str())
                    .unwrap_or("event")
                    .to_owned();
                let data = value.get("data").cloned().unwrap_or_default();
                if tx.send(frame(&name, cursor, &data)).await.is_err() {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                match resync(&store, &tx, cursor, "lagged").await {
                    Some(next) => {
                        cursor = next;
                        floor = next;
                    }
                    None => return,
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cursor;

    #[test]
    fn cursor_round_trips_and_refuses_garbage() {
        let cursor = Cursor {
            reading_id: 42,
            anomaly_id: 7,
        };
        assert_eq!(Cursor::parse(&cursor.id()), Some(cursor));
        for bad in [
            "",
            "42",
            "a-b",
            "-1-2",
            "1-",
            "1-2-3",
            "99999999999999999999-1",
        ] {
            assert_eq!(Cursor::parse(bad), None, "{bad:?}");
        }
    }
}
