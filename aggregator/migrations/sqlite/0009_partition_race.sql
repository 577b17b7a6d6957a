-- PostgreSQL's 0009 makes partition creation safe under concurrency;
-- SQLite has no partitions. Kept so both schemas carry the same versions.
SELECT 1;
