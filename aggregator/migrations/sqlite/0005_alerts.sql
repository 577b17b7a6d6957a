-- Alert state that survives a restart: one row per pending, firing or
-- recently resolved alert (see aggregator/src/alert/state.rs), and the
-- history of every transition.
CREATE TABLE alert_state (
    rule text NOT NULL,
    fingerprint text NOT NULL,
    group_name text NOT NULL,
    labels text NOT NULL,
    annotations text NOT NULL,
    state text NOT NULL,
    active_at_ms INTEGER NOT NULL,
    fired_at_ms INTEGER,
    resolved_at_ms INTEGER,
    keep_firing_since_ms INTEGER,
    value REAL,
    series_fp text NOT NULL,
    flap text NOT NULL,
    ack text,
    escalated_at_ms INTEGER,
    PRIMARY KEY (rule, fingerprint)
);

CREATE TABLE alert_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms INTEGER NOT NULL,
    event text NOT NULL,
    rule text NOT NULL,
    fingerprint text NOT NULL,
    host text NOT NULL,
    severity text NOT NULL,
    team text NOT NULL,
    value REAL,
    labels text NOT NULL,
    detail text NOT NULL
);
CREATE INDEX alert_history_ts ON alert_history (ts_ms);
CREATE INDEX alert_history_rule ON alert_history (rule, ts_ms);
CREATE INDEX alert_history_host ON alert_history (host, ts_ms);
CREATE INDEX alert_history_severity ON alert_history (severity, ts_ms);
CREATE INDEX alert_history_team ON alert_history (team, ts_ms);
