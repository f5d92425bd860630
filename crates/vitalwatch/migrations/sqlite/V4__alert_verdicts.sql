-- VitalWatch schema, version 4: a clinician's verdict on an alert episode (a true or a false
-- alarm), the labels the supervised model can be trained from (`vitalwatch train --from-alerts`).
ALTER TABLE alerts ADD COLUMN verdict TEXT CHECK (verdict IN ('true_alarm', 'false_alarm'));
ALTER TABLE alerts ADD COLUMN verdict_by TEXT;
ALTER TABLE alerts ADD COLUMN verdict_at TEXT;
CREATE INDEX alerts_verdict ON alerts (verdict) WHERE verdict IS NOT NULL;
