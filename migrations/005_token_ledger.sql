-- The OAuth token ledger: every token fetch of every worker process, so that they can keep
-- together under Atlas's limits for one service account: 100 live tokens, and about 50 token
-- requests a minute. One process keeps one token per credential and revokes it at exit, but it
-- cannot see the other processes, nor the tokens of earlier ones that were killed (those live
-- out their hour): a restart loop or twenty workers would reach the cap, after which Atlas
-- refuses every new token for that account until the oldest expire.
--
-- The credential is recorded as a hash of its client id (never the secret): the ledger needs to
-- tell credentials apart, not to name them. Times are the database's clock, like the leases.
CREATE TABLE oauth_token_ledger (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    credential_hash text NOT NULL,               -- hex sha256 of 'atlas-secrets:' || client id
    owner           text NOT NULL,               -- the worker (lease owner id) that fetched it
    fetched_at      timestamptz NOT NULL DEFAULT now(),  -- when the request went out
    -- Reserved as 61 minutes (the hour Atlas gives, and a minute for the answer to arrive): a
    -- process killed mid-fetch may have got a token nobody will revoke. An answer of a shorter
    -- life (under 59 minutes) sets fetched_at + expires_in; an hour's answer keeps the reserved
    -- time, which outlives the token by at most two minutes (counted live a little long, never
    -- short) and saves a write per fetch. A refused fetch made no token, so its row expires at
    -- once but still counts as a request in the last minute.
    expires_at      timestamptz NOT NULL,
    revoked_at      timestamptz,                 -- revoked at the owner's exit
    CHECK (expires_at >= fetched_at)
);
-- Both questions the reservation asks, "live tokens of this credential" (expires_at > now) and
-- "fetches of this credential in the last minute" (fetched_at > now - 60 s, hence expires_at too),
-- read one range of this index.
CREATE INDEX oauth_token_ledger_credential ON oauth_token_ledger (credential_hash, expires_at);

-- Reserves a token fetch for one credential, or refuses it: the check and the row are one step
-- under a transaction advisory lock per credential (and schema), so that workers asking at the same moment
-- cannot all see room for one more token and all fetch one.
-- Returns the new row's id (NULL: refused), the live tokens and the oldest live token's expiry,
-- the fetches in the last minute, and when refused for the rate, the seconds until the oldest of
-- them is a minute old.
CREATE FUNCTION reserve_oauth_token(p_credential text, p_owner text, p_live_cap integer, p_per_minute integer)
RETURNS TABLE (id bigint, live integer, oldest_expires_at timestamptz, recent integer, retry_after double precision)
LANGUAGE plpgsql
-- A ledger held locked by someone else (a long transaction, a migration's ALTER or CREATE INDEX)
-- must not hold up the work it protects: the reservation gives up after a second, and the worker
-- fetches without it (token.ledger_unavailable).
SET lock_timeout = '1s'
AS $$
DECLARE
    v_oldest_recent timestamptz;
    v_now timestamptz;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(current_schema() || ': atlas-secrets oauth token ' || p_credential, 0));
    -- The clock after the lock, not the transaction's start: a reservation that waited is stamped
    -- when its fetch goes out, so that it counts in the right minute.
    v_now := clock_timestamp();
    SELECT count(*) FILTER (WHERE l.revoked_at IS NULL AND l.expires_at > v_now),
           min(l.expires_at) FILTER (WHERE l.revoked_at IS NULL AND l.expires_at > v_now),
           count(*) FILTER (WHERE l.fetched_at > v_now - interval '60 seconds'),
           min(l.fetched_at) FILTER (WHERE l.fetched_at > v_now - interval '60 seconds')
    INTO live, oldest_expires_at, recent, v_oldest_recent
    FROM oauth_token_ledger l
    WHERE l.credential_hash = p_credential AND l.expires_at > v_now - interval '60 seconds';
    IF live >= p_live_cap THEN
        RETURN NEXT;
        RETURN;
    END IF;
    IF recent >= p_per_minute THEN
        retry_after := greatest(0, extract(epoch FROM v_oldest_recent + interval '60 seconds' - v_now));
        RETURN NEXT;
        RETURN;
    END IF;
    -- Stamped as the row goes in (after any wait for the table), not at the check.
    INSERT INTO oauth_token_ledger AS l (credential_hash, owner, fetched_at, expires_at)
    VALUES (p_credential, p_owner, clock_timestamp(), clock_timestamp() + interval '61 minutes')
    RETURNING l.id INTO id;
    RETURN NEXT;
END $$;
