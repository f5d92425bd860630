-- VitalWatch's PostgreSQL schema, version 1: the same tables as SQLite's V1..V5, in one step.
-- Readings, anomalies and the quarantine keep their times as timestamptz (readings are
-- partitioned by reading time); every other time is the same fixed-width UTC RFC 3339 text as
-- on SQLite (the audit hash covers that text). Text is compared and sorted bytewise
-- (COLLATE "C"), as SQLite does, whatever the database's own collation.

CREATE TABLE devices (
    device_id           TEXT COLLATE "C" PRIMARY KEY,
    patient_label       TEXT,
    location            TEXT,
    expected_interval_s DOUBLE PRECISION NOT NULL DEFAULT 5.0,
    active              BOOLEAN NOT NULL DEFAULT TRUE,
    registered_at       TEXT COLLATE "C" NOT NULL,
    registered_by       TEXT NOT NULL,
    updated_at          TEXT COLLATE "C" NOT NULL,
    last_seen           TEXT COLLATE "C",
    total_readings      BIGINT NOT NULL DEFAULT 0
);

-- Ids are taken from the sequence by the writer before the insert (so a batch's ids are known
-- in order); they grow in commit order of one writer.
CREATE SEQUENCE readings_id_seq;
-- Partitioned by reading time: one partition per UTC day, created ahead by the service
-- (readings_pYYYYMMDD), and a default partition for times outside them. Retention drops whole
-- partitions. The partition key must be part of every unique key, hence (id, timestamp).
CREATE TABLE readings (
    id                    BIGINT NOT NULL,
    device_id             TEXT COLLATE "C" NOT NULL,
    timestamp             TIMESTAMPTZ NOT NULL,
    timestamp_from_device BOOLEAN NOT NULL,
    received_at           TIMESTAMPTZ NOT NULL,
    heart_rate            DOUBLE PRECISION,
    body_temp             DOUBLE PRECISION,
    signal_strength       DOUBLE PRECISION,
    battery_level         DOUBLE PRECISION,
    spo2                  DOUBLE PRECISION,
    respiratory_rate      DOUBLE PRECISION,
    systolic_bp           DOUBLE PRECISION,
    diastolic_bp          DOUBLE PRECISION,
    consciousness         TEXT,
    on_oxygen             BOOLEAN,
    seq                   BIGINT,
    extra                 TEXT,
    ml_score              DOUBLE PRECISION,
    source                TEXT NOT NULL,
    PRIMARY KEY (id, timestamp)
) PARTITION BY RANGE (timestamp);
CREATE TABLE readings_default PARTITION OF readings DEFAULT;
-- Readings whose time is outside every daily partition (old backlogs, a wrong clock) are
-- retained by when they arrived, like SQLite's: only this partition needs the index.
CREATE INDEX readings_default_received_at ON readings_default (received_at);
-- A redelivery (same device and timestamp) is stored once.
CREATE UNIQUE INDEX readings_device_timestamp ON readings (device_id, timestamp);
CREATE INDEX readings_device_id ON readings (device_id, id);
CREATE INDEX readings_device_seq ON readings (device_id, seq) WHERE seq IS NOT NULL;
-- A window of every device (the dashboard's totals) reads block ranges, not the whole day:
-- readings arrive roughly in time order, which a BRIN index summarises in a few pages.
CREATE INDEX readings_timestamp ON readings USING brin (timestamp);

CREATE SEQUENCE anomalies_id_seq;
-- reading_id is set to NULL when retention removes the reading (no foreign key: readings are
-- partitioned, and partitions are dropped whole).
CREATE TABLE anomalies (
    id          BIGINT PRIMARY KEY DEFAULT nextval('anomalies_id_seq'),
    device_id   TEXT COLLATE "C" NOT NULL,
    reading_id  BIGINT,
    type        TEXT COLLATE "C" NOT NULL,
    severity    TEXT COLLATE "C" NOT NULL,
    value       DOUBLE PRECISION,
    threshold   DOUBLE PRECISION,
    detected_at TIMESTAMPTZ NOT NULL,
    details     TEXT
);
ALTER SEQUENCE anomalies_id_seq OWNED BY anomalies.id;
CREATE INDEX anomalies_device ON anomalies (device_id, id);
CREATE INDEX anomalies_detected_at ON anomalies (detected_at);
CREATE INDEX anomalies_reading ON anomalies (reading_id);

-- Readings from unregistered or deactivated devices: kept for investigation, never patient data.
CREATE TABLE quarantine (
    id          BIGSERIAL PRIMARY KEY,
    device_id   TEXT COLLATE "C" NOT NULL,
    timestamp   TIMESTAMPTZ NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    reason      TEXT NOT NULL,
    reading     TEXT NOT NULL,
    source      TEXT NOT NULL
);
CREATE INDEX quarantine_received_at ON quarantine (received_at);

-- Who did what, when; each row's hash covers the previous row's hash (see store/audit.rs).
-- Ids are assigned by the writer under the chain's lock (id of the head + 1).
CREATE TABLE audit_log (
    id        BIGINT PRIMARY KEY,
    at        TEXT COLLATE "C" NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT COLLATE "C" NOT NULL,
    target    TEXT NOT NULL,
    details   TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_action ON audit_log (action, id);

CREATE TABLE alerts (
    id                BIGINT PRIMARY KEY,
    device_id         TEXT COLLATE "C" NOT NULL,
    condition         TEXT COLLATE "C" NOT NULL,
    class             TEXT NOT NULL,
    priority          TEXT COLLATE "C" NOT NULL,
    priority_rank     INTEGER NOT NULL,
    state             TEXT COLLATE "C" NOT NULL,
    opened_at         TEXT COLLATE "C" NOT NULL,
    last_seen         TEXT COLLATE "C" NOT NULL,
    acknowledged_by   TEXT,
    acknowledged_at   TEXT,
    acknowledged_note TEXT,
    silenced_until    TEXT,
    silenced_by       TEXT,
    resolved_at       TEXT COLLATE "C",
    resolved_by       TEXT,
    last_value        DOUBLE PRECISION,
    threshold         DOUBLE PRECISION,
    count             BIGINT NOT NULL,
    escalation_level  INTEGER NOT NULL,
    updated_at        TEXT NOT NULL,
    alert             TEXT NOT NULL,
    verdict           TEXT CHECK (verdict IN ('true_alarm', 'false_alarm')),
    verdict_by        TEXT,
    verdict_at        TEXT
);
-- At most one open episode per (device, condition).
CREATE UNIQUE INDEX alerts_one_open ON alerts (device_id, condition) WHERE state <> 'resolved';
CREATE INDEX alerts_state_priority ON alerts (state, priority_rank, opened_at);
CREATE INDEX alerts_device ON alerts (device_id, opened_at);
CREATE INDEX alerts_verdict ON alerts (verdict) WHERE verdict IS NOT NULL;

CREATE TABLE alert_events (
    id               BIGSERIAL PRIMARY KEY,
    alert_id         BIGINT NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    kind             TEXT NOT NULL,
    at               TEXT NOT NULL,
    actor            TEXT,
    priority         TEXT NOT NULL,
    state            TEXT NOT NULL,
    escalation_level INTEGER NOT NULL,
    value            DOUBLE PRECISION
);
CREATE INDEX alert_events_alert ON alert_events (alert_id, id);

-- Per-patient overrides of the site's rules (one row per device; history is in audit_log).
CREATE TABLE patient_thresholds (
    device_id      TEXT COLLATE "C" PRIMARY KEY,
    heart_rate_min DOUBLE PRECISION,
    heart_rate_max DOUBLE PRECISION,
    body_temp_min  DOUBLE PRECISION,
    body_temp_max  DOUBLE PRECISION,
    author         TEXT NOT NULL,
    reason         TEXT NOT NULL,
    effective_from TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);

CREATE TABLE webhook_deliveries (
    id          BIGSERIAL PRIMARY KEY,
    url         TEXT NOT NULL,
    alert_id    BIGINT,
    transition  TEXT NOT NULL,
    state       TEXT COLLATE "C" NOT NULL,
    attempts    INTEGER NOT NULL,
    last_status INTEGER,
    last_error  TEXT,
    created_at  TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    body        TEXT NOT NULL
);
CREATE INDEX webhook_deliveries_state ON webhook_deliveries (state, id);

CREATE TABLE api_tokens (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT COLLATE "C" NOT NULL UNIQUE,
    role        TEXT NOT NULL CHECK (role IN ('viewer', 'clinician', 'admin', 'device')),
    device_id   TEXT,
    secret_hash TEXT NOT NULL,
    created_at  TEXT COLLATE "C" NOT NULL,
    created_by  TEXT NOT NULL,
    expires_at  TEXT,
    revoked_at  TEXT,
    CHECK ((role = 'device') = (device_id IS NOT NULL))
);

CREATE TABLE users (
    username      TEXT COLLATE "C" PRIMARY KEY,
    role          TEXT NOT NULL CHECK (role IN ('viewer', 'clinician', 'admin')),
    password_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    disabled_at   TEXT
);
