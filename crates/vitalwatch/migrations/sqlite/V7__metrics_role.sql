-- VitalWatch schema, version 7: the `metrics` role, a token that reads /metrics and nothing
-- else (a Prometheus scraper's). SQLite cannot change a CHECK constraint in place, so the
-- tokens table is rebuilt with the same columns and rows. (Version 6 is another change's.)
CREATE TABLE api_tokens_v7 (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL CHECK (role IN ('viewer', 'clinician', 'admin', 'device', 'metrics')),
    device_id   TEXT,
    secret_hash TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    expires_at  TEXT,
    revoked_at  TEXT,
    CHECK ((role = 'device') = (device_id IS NOT NULL))
);
INSERT INTO api_tokens_v7 (id, name, role, device_id, secret_hash, created_at, created_by, expires_at, revoked_at)
    SELECT id, name, role, device_id, secret_hash, created_at, created_by, expires_at, revoked_at FROM api_tokens;
DROP TABLE api_tokens;
ALTER TABLE api_tokens_v7 RENAME TO api_tokens;
