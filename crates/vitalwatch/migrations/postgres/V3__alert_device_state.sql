-- The alert engine's state per device, shared by every node on this database (alerts/shared.rs):
-- onset, hysteresis and latch tracks, audio pauses, previous values, limits, offline timer and
-- open alerts (`state`), and the NEWS2 window (`vitals`). A NULL state is a device whose row
-- was just created (its state is rebuilt from its open alerts). An evaluation locks the rows
-- it touches (in device-id order) for the length of its transaction.
CREATE TABLE alert_device_state (
    device_id     TEXT COLLATE "C" PRIMARY KEY,
    state         JSONB,
    vitals        JSONB,
    evaluated_at  TIMESTAMPTZ,
    -- When the leader's timer must look at the device next (offline, escalation, end of pause).
    next_deadline TIMESTAMPTZ
);
CREATE INDEX alert_device_state_due ON alert_device_state (next_deadline)
    WHERE next_deadline IS NOT NULL;

-- Alert ids for every node: allocated in the transaction that raises the alert.
CREATE SEQUENCE alert_ids;
SELECT setval('alert_ids', COALESCE((SELECT MAX(id) FROM alerts), 0) + 1, false);
