-- nutmeg store schema, version 13 (sqlite): the content of queued Direct messages in a table of its
-- own, and message bytes as bytes. Released migrations are never edited; add a new file instead. A
-- queue row changes several times (claimed, settled, confirmed by a notification), and SQLite writes
-- a whole row again on any change, so a 100 KB message was written three or four times; here only
-- the small row changes. From this version message bytes (`direct_outbound_content.content`,
-- `direct_messages.raw`) are written as BLOBs, not base64 text (a third fewer bytes, no encoding);
-- what was written before stays base64 text, which the store still reads (SQLite keeps each value's
-- own type). `direct_outbound.content` stays, empty, for the rows' shape.
CREATE TABLE direct_outbound_content (
    id TEXT PRIMARY KEY,
    content BLOB NOT NULL
);
INSERT INTO direct_outbound_content (id, content) SELECT id, content FROM direct_outbound;
UPDATE direct_outbound SET content = '';
