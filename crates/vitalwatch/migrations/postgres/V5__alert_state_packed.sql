-- The readings whose evaluation a device's alert state already holds (alerts/shared.rs): the
-- reading times (microseconds since the epoch) of its latest evaluated readings, at most 64,
-- oldest first. A PUBACK on the shared path follows the evaluation's commit; a reading stored
-- by a node that died before evaluating it is sent again by its device, arrives as a
-- duplicate, and is evaluated then, once: its time is not in this list.
ALTER TABLE alert_device_state ADD COLUMN evaluated_readings BIGINT[];

-- The state and NEWS2 window of a device packed together (`store::alert_state::pack`): a
-- version byte, then the JSON deflated. Rewritten at every evaluation, so it is what the WAL
-- carries per reading: about a tenth of the JSONB it replaces. Already compressed: stored
-- without PostgreSQL's own compression. Rows written before keep `state`/`vitals` until their
-- next evaluation, which loads them and writes `packed` (and clears the JSONB).
ALTER TABLE alert_device_state ADD COLUMN packed BYTEA;
ALTER TABLE alert_device_state ALTER COLUMN packed SET STORAGE EXTERNAL;
