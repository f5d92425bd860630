-- VitalWatch schema, version 8: the writer adds each transaction's readings to
-- `reading_hours` once per device and hour, instead of a trigger upserting a row for every
-- reading. The trigger made every reading insert a statement with a trigger program (and so a
-- statement journal) and one more B-tree upsert. Deletions (retention) still go through the
-- V3 delete trigger. Rows inserted into `readings` by anything but the server must add their
-- counts to `reading_hours` themselves.

DROP TRIGGER reading_hours_insert;
