-- VitalWatch schema, version 5: who may use the API and the dashboard.
-- API tokens are random secrets shown once; only their SHA-256 is kept (a 256-bit random secret
-- needs no slow hash). Dashboard users' passwords are Argon2id PHC strings.
CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL CHECK (role IN ('viewer', 'clinician', 'admin', 'device')),
    device_id   TEXT,
    secret_hash TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    expires_at  TEXT,
    revoked_at  TEXT,
    CHECK ((role = 'device') = (device_id IS NOT NULL))
);

CREATE TABLE users (
    username      TEXT PRIMARY KEY,
    role          TEXT NOT NULL CHECK (role IN ('viewer', 'clinician', 'admin')),
    password_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    disabled_at   TEXT
);
