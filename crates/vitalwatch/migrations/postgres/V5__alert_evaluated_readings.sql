-- The readings whose evaluation a device's alert state already holds (alerts/shared.rs): the
-- reading times (microseconds since the epoch) of its latest evaluated readings, at most 64,
-- oldest first. A PUBACK on the shared path follows the evaluation's commit; a reading stored
-- by a node that died before evaluating it is sent again by its device, arrives as a
-- duplicate, and is evaluated then, once: its time is not in this list.
ALTER TABLE alert_device_state ADD COLUMN evaluated_readings BIGINT[];
