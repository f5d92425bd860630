-- VitalWatch schema, version 3: readings per device per hour, kept exact by triggers, so the
-- dashboard counts a long window's readings from whole hours plus its two partial edges
-- instead of walking millions of index entries. `hour` is the first 13 characters of the
-- stored UTC time (e.g. 2024-01-16T10), so text order is time order.

CREATE TABLE reading_hours (
    device_id TEXT NOT NULL,
    hour      TEXT NOT NULL,
    n         INTEGER NOT NULL,
    PRIMARY KEY (device_id, hour)
) WITHOUT ROWID;

INSERT INTO reading_hours (device_id, hour, n)
SELECT device_id, substr(timestamp, 1, 13), COUNT(*) FROM readings GROUP BY 1, 2;

CREATE TRIGGER reading_hours_insert AFTER INSERT ON readings
BEGIN
    INSERT INTO reading_hours (device_id, hour, n)
    VALUES (NEW.device_id, substr(NEW.timestamp, 1, 13), 1)
    ON CONFLICT (device_id, hour) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER reading_hours_delete AFTER DELETE ON readings
BEGIN
    UPDATE reading_hours SET n = n - 1
    WHERE device_id = OLD.device_id AND hour = substr(OLD.timestamp, 1, 13);
END;
