-- VitalWatch schema, version 2: alerts (episodes a clinician acts on), their history,
-- per-patient threshold overrides and webhook deliveries. Anomalies (V1) are unchanged.

-- One row per alert episode of one condition on one device; ids are assigned by the alert
-- engine (seeded from max(id) at start). `alert` holds the engine's full state of the episode
-- as JSON, so a restart restores exactly what was open.
CREATE TABLE alerts (
    id                INTEGER PRIMARY KEY,
    device_id         TEXT NOT NULL,
    condition         TEXT NOT NULL,
    class             TEXT NOT NULL,
    priority          TEXT NOT NULL,
    priority_rank     INTEGER NOT NULL,
    state             TEXT NOT NULL,
    opened_at         TEXT NOT NULL,
    last_seen         TEXT NOT NULL,
    acknowledged_by   TEXT,
    acknowledged_at   TEXT,
    acknowledged_note TEXT,
    silenced_until    TEXT,
    silenced_by       TEXT,
    resolved_at       TEXT,
    resolved_by       TEXT,
    last_value        REAL,
    threshold         REAL,
    count             INTEGER NOT NULL,
    escalation_level  INTEGER NOT NULL,
    updated_at        TEXT NOT NULL,
    alert             TEXT NOT NULL
);
-- At most one open episode per (device, condition).
CREATE UNIQUE INDEX alerts_one_open ON alerts (device_id, condition) WHERE state <> 'resolved';
CREATE INDEX alerts_state_priority ON alerts (state, priority_rank, opened_at);
CREATE INDEX alerts_device ON alerts (device_id, opened_at);

-- Every transition of every alert, in order.
CREATE TABLE alert_events (
    id               INTEGER PRIMARY KEY,
    alert_id         INTEGER NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    kind             TEXT NOT NULL,
    at               TEXT NOT NULL,
    actor            TEXT,
    priority         TEXT NOT NULL,
    state            TEXT NOT NULL,
    escalation_level INTEGER NOT NULL,
    value            REAL
);
CREATE INDEX alert_events_alert ON alert_events (alert_id, id);

-- Per-patient overrides of the site's rules (one row per device; history is in audit_log).
CREATE TABLE patient_thresholds (
    device_id      TEXT PRIMARY KEY NOT NULL,
    heart_rate_min REAL,
    heart_rate_max REAL,
    body_temp_min  REAL,
    body_temp_max  REAL,
    author         TEXT NOT NULL,
    reason         TEXT NOT NULL,
    effective_from TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);

-- Webhook notifications that finished: delivered, or failed after every retry (dead letters).
CREATE TABLE webhook_deliveries (
    id          INTEGER PRIMARY KEY,
    url         TEXT NOT NULL,
    alert_id    INTEGER,
    transition  TEXT NOT NULL,
    state       TEXT NOT NULL,
    attempts    INTEGER NOT NULL,
    last_status INTEGER,
    last_error  TEXT,
    created_at  TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    body        TEXT NOT NULL
);
CREATE INDEX webhook_deliveries_state ON webhook_deliveries (state, id);
