-- The bronze table that ZeroBus writes into. Replace {table} with
-- catalog.schema.table (`edge table ddl` does it for you). Must match
-- proto/reading.proto column for column: ZeroBus has no schema evolution.
CREATE TABLE IF NOT EXISTS {table} (
  appliance_id STRING NOT NULL,
  seq BIGINT NOT NULL,
  kind STRING NOT NULL,
  source STRING,
  protocol STRING,
  point STRING,
  value_double DOUBLE,
  value_int BIGINT,
  value_bool BOOLEAN,
  value_string STRING,
  value_json VARIANT,
  quality STRING,
  status_code BIGINT,
  source_ts TIMESTAMP,
  server_ts TIMESTAMP,
  collected_ts TIMESTAMP,
  unit STRING,
  data_type STRING,
  loss_from_seq BIGINT,
  loss_to_seq BIGINT,
  loss_reason STRING
)
USING DELTA
CLUSTER BY (appliance_id, seq);
