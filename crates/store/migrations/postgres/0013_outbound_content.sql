-- nutmeg store schema, version 13 (postgres): the content of queued Direct messages in a table of
-- its own, and message bytes as bytes. Released migrations are never edited; add a new file instead.
-- A queue row changes several times (claimed, settled, confirmed by a notification); here only the
-- small row changes. Message bytes (`direct_outbound_content.content`, `direct_messages.raw`) are
-- BYTEA from this version, converted from the base64 text they were. `direct_outbound.content`
-- stays, empty, for the rows' shape.
CREATE TABLE direct_outbound_content (
    id TEXT PRIMARY KEY,
    content BYTEA NOT NULL
);
INSERT INTO direct_outbound_content (id, content)
    SELECT id, decode(content, 'base64') FROM direct_outbound;
UPDATE direct_outbound SET content = '';
ALTER TABLE direct_messages ALTER COLUMN raw TYPE BYTEA USING decode(raw, 'base64');
