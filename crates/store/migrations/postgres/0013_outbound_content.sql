-- nutmeg store schema, version 13 (postgres): the content of queued Direct messages in a table of its
-- own. Released migrations are never edited; add a new file instead. A queue row changes several
-- times (claimed, settled, confirmed by a notification), and SQLite writes a whole row again on any
-- change, so a 100 KB message was written three or four times; here only the small row changes.
-- `direct_outbound.content` stays, empty, for the rows' shape.
CREATE TABLE direct_outbound_content (
    id TEXT PRIMARY KEY,
    content TEXT NOT NULL
);
INSERT INTO direct_outbound_content (id, content) SELECT id, content FROM direct_outbound;
UPDATE direct_outbound SET content = '';
