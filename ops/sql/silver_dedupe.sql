-- Downstream dedupe: a silver table with exactly one row per (appliance_id, seq).
--
-- ZeroBus delivers at least once, and the appliance resends its in-flight window
-- after a failure, so the bronze table can hold the same reading more than once.
-- Every copy carries the same (appliance_id, seq) key and the same content, so
-- keeping the first copy of each key is exact. Loss markers (kind = 'loss') are
-- keyed the same way and kept too: they explain the gaps in seq.
--
-- Replace {bronze} and {silver} with catalog.schema.table names. Run it on a
-- schedule (a Databricks job or a DLT/Lakeflow pipeline). The window bounds the
-- work of each run: duplicates of a reading arrive within one in-flight window of
-- each other (seconds to minutes), so a window of a day is ample.
-- tests/databricks/test_dedupe.py runs this file verbatim on DuckDB against rows
-- landed through the real SDK with forced resends.

CREATE TABLE IF NOT EXISTS {silver} AS SELECT * FROM {bronze} WHERE 1 = 0;

MERGE INTO {silver} AS s
USING (
  SELECT *
  FROM {bronze}
  WHERE collected_ts >= current_timestamp - INTERVAL 1 DAY
     OR collected_ts IS NULL
  QUALIFY ROW_NUMBER() OVER (PARTITION BY appliance_id, seq ORDER BY collected_ts) = 1
) AS b
ON s.appliance_id = b.appliance_id AND s.seq = b.seq
WHEN NOT MATCHED THEN INSERT *;
