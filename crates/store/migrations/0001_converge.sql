-- The convergence engine's runs, as the dashboard will read them.
-- Plain SQL that SQLite and PostgreSQL both accept: no AUTOINCREMENT, no
-- SQLite-only types; times are Unix milliseconds, JSON is stored as TEXT, and
-- child rows are ordered by an explicit `seq` the engine assigns.

CREATE TABLE converge_runs (
    id TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    task_file TEXT NOT NULL,
    goal TEXT NOT NULL,
    language TEXT NOT NULL,
    model TEXT,
    started_at_ms BIGINT NOT NULL,
    finished_at_ms BIGINT,
    -- running, converged, budget_exhausted, no_rule_applies or error
    outcome TEXT NOT NULL,
    converged BOOLEAN NOT NULL DEFAULT FALSE,
    summary TEXT,
    script TEXT,
    distilled TEXT,
    proof_outcome TEXT,
    report_path TEXT,
    input_tokens BIGINT NOT NULL DEFAULT 0,
    output_tokens BIGINT NOT NULL DEFAULT 0,
    cost_usd DOUBLE PRECISION
);

CREATE INDEX converge_runs_started ON converge_runs (started_at_ms);

CREATE TABLE iterations (
    run_id TEXT NOT NULL REFERENCES converge_runs (id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    -- where the code came from: task, model, rules, model-retry
    origin TEXT NOT NULL,
    code TEXT NOT NULL,
    -- the scenario run's outcome on a fresh cluster
    outcome TEXT NOT NULL,
    scenario_run_id TEXT NOT NULL,
    failure TEXT,
    recovery_path TEXT,
    reason TEXT,
    fix_rule TEXT,
    duration_ms BIGINT NOT NULL,
    PRIMARY KEY (run_id, number)
);

CREATE TABLE llm_calls (
    run_id TEXT NOT NULL,
    iteration INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    purpose TEXT NOT NULL,
    -- the messages sent, as JSON
    prompt TEXT NOT NULL,
    response TEXT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    latency_ms BIGINT NOT NULL,
    cost_usd DOUBLE PRECISION,
    PRIMARY KEY (run_id, iteration, seq),
    FOREIGN KEY (run_id, iteration) REFERENCES iterations (run_id, number) ON DELETE CASCADE
);

CREATE TABLE commands (
    run_id TEXT NOT NULL,
    iteration INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    node TEXT NOT NULL,
    command TEXT NOT NULL,
    why TEXT NOT NULL,
    exit_code INTEGER,
    output TEXT NOT NULL,
    duration_ms BIGINT NOT NULL,
    refused TEXT,
    PRIMARY KEY (run_id, iteration, seq),
    FOREIGN KEY (run_id, iteration) REFERENCES iterations (run_id, number) ON DELETE CASCADE
);

CREATE TABLE check_results (
    run_id TEXT NOT NULL,
    iteration INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    node TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    -- passed, failed or skipped
    status TEXT NOT NULL,
    -- JSON
    expected TEXT NOT NULL,
    actual TEXT NOT NULL,
    message TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    duration_ms BIGINT NOT NULL,
    PRIMARY KEY (run_id, iteration, seq),
    FOREIGN KEY (run_id, iteration) REFERENCES iterations (run_id, number) ON DELETE CASCADE
);
