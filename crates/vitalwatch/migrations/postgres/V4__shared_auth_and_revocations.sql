-- VitalWatch PostgreSQL schema, version 4 (issue 14): what the nodes of a cluster share besides
-- the data — dashboard sessions, failed-login counts and revoked device credentials — so a
-- sign-in on one node works on every node, failures spread over nodes count together, and a
-- revocation made on one node ends the device's sessions on all of them.

-- A dashboard session: the cookie's value only as its SHA-256 (a database dump does not
-- sign anyone in); expiry is decided with the database's clock, the same for every node.
CREATE TABLE sessions (
    id_hash TEXT COLLATE "C" PRIMARY KEY,
    username TEXT COLLATE "C" NOT NULL,
    role TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX sessions_username ON sessions (username);

-- Failed logins in a fixed window, per key: `user:<name>`, `range:<address range>`,
-- `from:<address range>:<name>` (auth/login.rs's keys).
CREATE TABLE login_failures (
    key TEXT COLLATE "C" PRIMARY KEY,
    failures INTEGER NOT NULL,
    window_start TIMESTAMPTZ NOT NULL
);

-- Revoked device (and consumer) credentials, in the order they were revoked: a certificate
-- serial (lower-case hex) or a removed plaintext secret's Argon2id hash.
CREATE TABLE credential_revocations (
    id BIGSERIAL PRIMARY KEY,
    device_id TEXT COLLATE "C" NOT NULL,
    serial TEXT COLLATE "C",
    secret_hash TEXT,
    revoked_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_by TEXT NOT NULL,
    CHECK ((serial IS NULL) <> (secret_hash IS NULL))
);
