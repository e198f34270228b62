-- A fleet job's progress lines as its host reports them (JSON array of the
-- current attempt's lines; NULL: none yet), so the submitter and any host
-- asked about the job see the run as it goes.
ALTER TABLE fleet_jobs ADD COLUMN progress TEXT;
