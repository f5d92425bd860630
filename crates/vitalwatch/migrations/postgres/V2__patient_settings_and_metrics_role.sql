-- VitalWatch PostgreSQL schema, version 2: what SQLite's versions 6 and 7 added.
-- Per-patient settings beyond heart rate and temperature: NEWS2 SpO2 Scale 2 ('scale2'; NULL
-- is Scale 1), the lower end of the SpO2 target, respiration and systolic limits (NULL keeps
-- the default).
ALTER TABLE patient_thresholds
    ADD COLUMN spo2_scale TEXT CHECK (spo2_scale IS NULL OR spo2_scale IN ('scale1', 'scale2')),
    ADD COLUMN spo2_min DOUBLE PRECISION,
    ADD COLUMN respiratory_rate_min DOUBLE PRECISION,
    ADD COLUMN respiratory_rate_max DOUBLE PRECISION,
    ADD COLUMN systolic_bp_min DOUBLE PRECISION,
    ADD COLUMN systolic_bp_max DOUBLE PRECISION;

-- The `metrics` role: a token that reads /metrics and nothing else.
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_role_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_role_check
    CHECK (role IN ('viewer', 'clinician', 'admin', 'device', 'metrics'));
