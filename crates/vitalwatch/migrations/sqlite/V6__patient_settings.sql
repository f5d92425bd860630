-- VitalWatch schema, version 6: per-patient settings beyond heart rate and temperature (issue
-- 18). A clinician may put a patient on NEWS2 SpO2 Scale 2 ('scale2'; NULL is Scale 1) and set
-- the lower end of their SpO2 target and their respiration and systolic limits. NULL keeps the
-- default (the NEWS2 band where the subscore becomes 1, or the site's hypertension limit).
ALTER TABLE patient_thresholds ADD COLUMN spo2_scale TEXT
    CHECK (spo2_scale IS NULL OR spo2_scale IN ('scale1', 'scale2'));
ALTER TABLE patient_thresholds ADD COLUMN spo2_min REAL;
ALTER TABLE patient_thresholds ADD COLUMN respiratory_rate_min REAL;
ALTER TABLE patient_thresholds ADD COLUMN respiratory_rate_max REAL;
ALTER TABLE patient_thresholds ADD COLUMN systolic_bp_min REAL;
ALTER TABLE patient_thresholds ADD COLUMN systolic_bp_max REAL;
