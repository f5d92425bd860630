-- Webhook notifications waiting for delivery (store/postgres/outbox.rs, alerts/webhook_outbox.rs):
-- one row per alert transition, written in the transaction that commits the transition (only
-- while webhook targets are configured), so a node that dies loses none. The leader alone
-- delivers them, oldest first, to every configured target; what a finished delivery gave is
-- recorded in `webhook_deliveries` as before, and the row goes once every target finished
-- (delivered, or failed after its last attempt). The body is what the receivers get (no
-- secret: signatures are computed at delivery); `id` is the delivery id they deduplicate on
-- (`X-VitalWatch-Delivery`).
CREATE TABLE webhook_outbox (
    id              BIGSERIAL PRIMARY KEY,
    alert_id        BIGINT,
    transition      TEXT NOT NULL,
    body            TEXT NOT NULL,
    -- When the transition was committed (RFC 3339, as `webhook_deliveries.created_at`).
    created_at      TEXT NOT NULL,
    -- Rounds of attempts made; each round tries every target not yet finished.
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- When the next round is due: the backoff after a failed round, or the end of the lease
    -- of a round in progress (a leader that dies mid-round leaves the row due at its end).
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Targets (URLs) finished with this row, and per target URL its last status or error.
    finished        TEXT[] NOT NULL DEFAULT '{}',
    last_outcomes   JSONB NOT NULL DEFAULT '{}'
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at);
