-- VitalWatch schema, version 1. Times are UTC RFC 3339 text with six fractional digits and a
-- trailing Z (e.g. 2024-01-16T10:30:45.123456Z), so text order is time order.

CREATE TABLE devices (
    device_id           TEXT PRIMARY KEY NOT NULL,
    patient_label       TEXT,
    location            TEXT,
    expected_interval_s REAL NOT NULL DEFAULT 5.0,
    active              INTEGER NOT NULL DEFAULT 1,
    registered_at       TEXT NOT NULL,
    registered_by       TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    last_seen           TEXT,
    total_readings      INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE readings (
    id                    INTEGER PRIMARY KEY,
    device_id             TEXT NOT NULL,
    timestamp             TEXT NOT NULL,
    timestamp_from_device INTEGER NOT NULL,
    received_at           TEXT NOT NULL,
    heart_rate            REAL,
    body_temp             REAL,
    signal_strength       REAL,
    battery_level         REAL,
    spo2                  REAL,
    respiratory_rate      REAL,
    systolic_bp           REAL,
    diastolic_bp          REAL,
    consciousness         TEXT,
    on_oxygen             INTEGER,
    seq                   INTEGER,
    extra                 TEXT,
    ml_score              REAL,
    source                TEXT NOT NULL
);
-- A redelivery (same device and timestamp) is stored once.
CREATE UNIQUE INDEX readings_device_timestamp ON readings (device_id, timestamp);
CREATE INDEX readings_device_seq ON readings (device_id, seq) WHERE seq IS NOT NULL;
CREATE INDEX readings_received_at ON readings (received_at);

CREATE TABLE anomalies (
    id          INTEGER PRIMARY KEY,
    device_id   TEXT NOT NULL,
    reading_id  INTEGER REFERENCES readings (id) ON DELETE SET NULL,
    type        TEXT NOT NULL,
    severity    TEXT NOT NULL,
    value       REAL,
    threshold   REAL,
    detected_at TEXT NOT NULL,
    details     TEXT
);
CREATE INDEX anomalies_device ON anomalies (device_id, id);
CREATE INDEX anomalies_detected_at ON anomalies (detected_at);
CREATE INDEX anomalies_reading ON anomalies (reading_id);

-- Readings from unregistered or deactivated devices: kept for investigation, never patient data.
CREATE TABLE quarantine (
    id          INTEGER PRIMARY KEY,
    device_id   TEXT NOT NULL,
    timestamp   TEXT NOT NULL,
    received_at TEXT NOT NULL,
    reason      TEXT NOT NULL,
    reading     TEXT NOT NULL,
    source      TEXT NOT NULL
);
CREATE INDEX quarantine_received_at ON quarantine (received_at);

-- Who did what, when; each row's hash covers the previous row's hash (see store/audit.rs).
CREATE TABLE audit_log (
    id        INTEGER PRIMARY KEY,
    at        TEXT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    target    TEXT NOT NULL,
    details   TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
