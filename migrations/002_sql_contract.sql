-- What other systems use: clear errors on bad rows, enqueue_secret_job(), a wake-up on insert.

-- Clear messages for rows inserted by hand (the CHECK constraints stay as the backstop).
CREATE FUNCTION secret_jobs_validate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.org_id IS NULL OR NEW.org_id !~ '^[a-f0-9]{24}$' THEN
        RAISE EXCEPTION 'org_id % is not an Atlas organization id', coalesce(quote_literal(NEW.org_id), 'NULL')
            USING ERRCODE = 'check_violation', COLUMN = 'org_id',
                  HINT = 'An organization id is 24 lowercase hexadecimal characters, e.g. 4888442a3354817a7320eb61.';
    END IF;
    IF NEW.client_id IS NULL OR NEW.client_id !~ '^mdb_sa_id_[a-fA-F0-9]{24}$' THEN
        RAISE EXCEPTION 'client_id % is not an Atlas service account client id', coalesce(quote_literal(NEW.client_id), 'NULL')
            USING ERRCODE = 'check_violation', COLUMN = 'client_id',
                  HINT = 'A client id is mdb_sa_id_ followed by 24 hexadecimal characters.';
    END IF;
    IF NEW.expires_after_hours IS NULL OR NEW.expires_after_hours NOT BETWEEN 8 AND 8760 THEN
        RAISE EXCEPTION 'expires_after_hours % is out of range', coalesce(NEW.expires_after_hours::text, 'NULL')
            USING ERRCODE = 'check_violation', COLUMN = 'expires_after_hours',
                  HINT = 'Atlas accepts 8 to 8760 hours (the organization''s settings may narrow it).';
    END IF;
    IF TG_OP = 'INSERT' AND NEW.idempotency_key IS NULL THEN
        -- A plain INSERT without a key is a request of its own.
        NEW.idempotency_key := 'row:' || gen_random_uuid();
    END IF;
    IF TG_OP = 'UPDATE' AND (NEW.org_id, NEW.client_id, NEW.batch, NEW.idempotency_key)
            IS DISTINCT FROM (OLD.org_id, OLD.client_id, OLD.batch, OLD.idempotency_key) THEN
        RAISE EXCEPTION 'job % cannot change its org_id, client_id, batch or idempotency_key', OLD.id
            USING ERRCODE = 'check_violation', HINT = 'Cancel it and enqueue a new request.';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER secret_jobs_validate
    BEFORE INSERT OR UPDATE OF org_id, client_id, expires_after_hours, batch, idempotency_key ON secret_jobs
    FOR EACH ROW EXECUTE FUNCTION secret_jobs_validate();

-- The key a request gets when none is given: the same formula as `atlas-secrets enqueue`.
CREATE FUNCTION secret_job_derived_key(p_org_id text, p_client_id text, p_hours integer, p_batch text, p_priority integer)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT 'auto:' || left(encode(sha256(convert_to('atlas-secrets.request.v1' || (
        SELECT string_agg(chr(10) || octet_length(part) || ':' || part, '' ORDER BY ord)
        FROM unnest(ARRAY[p_batch, p_org_id, p_client_id, p_hours::text, p_priority::text]) WITH ORDINALITY AS t(part, ord)
    ), 'UTF8')), 'hex'), 32)
$$;

-- Enqueue one request; idempotent on its key. Returns the job id (new or existing).
CREATE FUNCTION enqueue_secret_job(
    org_id text, client_id text, expires_after_hours integer,
    idempotency_key text DEFAULT NULL, batch text DEFAULT 'default', priority integer DEFAULT 0)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_key text := coalesce(idempotency_key,
        secret_job_derived_key(org_id, client_id, expires_after_hours, coalesce(batch, 'default'), coalesce(priority, 0)));
    v_id bigint;
    v_existing secret_jobs%ROWTYPE;
BEGIN
    INSERT INTO secret_jobs (org_id, client_id, expires_after_hours, idempotency_key, batch, priority)
    VALUES (enqueue_secret_job.org_id, enqueue_secret_job.client_id, enqueue_secret_job.expires_after_hours,
            v_key, coalesce(enqueue_secret_job.batch, 'default'), coalesce(enqueue_secret_job.priority, 0))
    ON CONFLICT ON CONSTRAINT secret_jobs_idempotency_key_unique DO NOTHING
    RETURNING id INTO v_id;
    IF v_id IS NOT NULL THEN
        RETURN v_id;
    END IF;
    SELECT * INTO v_existing FROM secret_jobs j WHERE j.idempotency_key = v_key;
    IF (v_existing.org_id, v_existing.client_id, v_existing.expires_after_hours)
            IS DISTINCT FROM (enqueue_secret_job.org_id, enqueue_secret_job.client_id, enqueue_secret_job.expires_after_hours) THEN
        RAISE EXCEPTION 'idempotency key % is already used by job % for a different request', quote_literal(v_key), v_existing.id
            USING ERRCODE = 'unique_violation',
                  DETAIL = format('job %s is org %s, client %s, %s hours', v_existing.id, v_existing.org_id,
                                  v_existing.client_id, v_existing.expires_after_hours);
    END IF;
    RETURN v_existing.id;
END $$;

-- Wake the workers: one tiny notification per statement, however many rows it inserts.
CREATE FUNCTION secret_jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('atlas_secrets_jobs', '');
    RETURN NULL;
END $$;

CREATE TRIGGER secret_jobs_notify AFTER INSERT ON secret_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION secret_jobs_notify();

-- Counters: deltas per statement, applied in key order (no deadlocks between writers).
CREATE FUNCTION secret_job_counts_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO secret_job_counts AS c (batch, org_id, state, n)
        SELECT batch, org_id, state, count(*) FROM new_rows GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (batch, org_id, state) DO UPDATE SET n = c.n + EXCLUDED.n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO secret_job_counts AS c (batch, org_id, state, n)
        SELECT batch, org_id, state, -count(*) FROM old_rows GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (batch, org_id, state) DO UPDATE SET n = c.n + EXCLUDED.n;
    ELSE
        INSERT INTO secret_job_counts AS c (batch, org_id, state, n)
        SELECT batch, org_id, state, sum(d) FROM (
            SELECT batch, org_id, state, 1 AS d FROM new_rows
            UNION ALL
            SELECT batch, org_id, state, -1 FROM old_rows) deltas
        GROUP BY 1, 2, 3 HAVING sum(d) <> 0 ORDER BY 1, 2, 3
        ON CONFLICT (batch, org_id, state) DO UPDATE SET n = c.n + EXCLUDED.n;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER secret_job_counts_insert AFTER INSERT ON secret_jobs
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION secret_job_counts_apply();
CREATE TRIGGER secret_job_counts_update AFTER UPDATE ON secret_jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION secret_job_counts_apply();
CREATE TRIGGER secret_job_counts_delete AFTER DELETE ON secret_jobs
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION secret_job_counts_apply();
