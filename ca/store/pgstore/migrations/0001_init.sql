-- meshca schema version 1: the records of store.Store.
--
-- Every record is kept as the JSON document meshca encodes (record, bytea:
-- the exact bytes, as the embedded bbolt store keeps them), next to the
-- columns its queries select and order by. Serials and alert keys are
-- bytea so that they order byte-wise, as in bbolt, whatever the
-- database's collation; text keys use COLLATE "C" for the same reason.

CREATE TABLE issuances (
    serial     bytea PRIMARY KEY,          -- the serial number's octets
    identity   text COLLATE "C" NOT NULL,  -- the SPIFFE ID
    generation bigint NOT NULL,            -- the CA generation that signed it
    not_after  bigint NOT NULL,            -- NotAfter, Unix seconds
    record     bytea NOT NULL              -- store.Issuance as JSON
);
CREATE INDEX issuances_by_identity ON issuances (identity, serial);
CREATE INDEX issuances_by_generation ON issuances (generation, serial);
CREATE INDEX issuances_by_expiry ON issuances (not_after, serial);

CREATE SEQUENCE generation_ids AS bigint START 1;
CREATE TABLE generations (
    id     bigint PRIMARY KEY,
    signer text COLLATE "C" NOT NULL,  -- the signer lineage ('' is the default signer)
    state  text NOT NULL CHECK (state IN ('prepared', 'active', 'retired')),
    record bytea NOT NULL              -- store.Generation as JSON
);
-- The invariant of the rotation journal, enforced by the database itself:
-- at most one active generation per signer lineage.
CREATE UNIQUE INDEX generations_one_active_per_lineage ON generations (signer) WHERE state = 'active';

-- counters holds the revocation sequence. Revoke updates its row in the
-- revocation's transaction, so the row lock orders the revocations of
-- every replica in commit order (delta CRLs list the revocations after a
-- base's Seq, RFC 5280 section 5.2.4), and a rolled-back revocation never
-- consumes a number.
CREATE TABLE counters (
    name  text COLLATE "C" PRIMARY KEY,
    value bigint NOT NULL CHECK (value >= 0)
);
INSERT INTO counters (name, value) VALUES ('revocation_seq', 0);

CREATE TABLE revocations (
    serial       bytea PRIMARY KEY,
    seq          bigint NOT NULL UNIQUE,
    not_after_s  bigint,   -- NotAfter (Unix seconds and nanoseconds); NULL when unknown
    not_after_ns integer,
    record       bytea NOT NULL   -- store.Revocation as JSON
);
CREATE INDEX revocations_by_expiry ON revocations (not_after_s, not_after_ns) WHERE not_after_s IS NOT NULL;

-- The last CRLNumber handed out per CRL scope (RFC 5280 section 5.2.3):
-- advanced by one UPDATE in its own committed transaction.
CREATE TABLE crl_numbers (
    scope text COLLATE "C" PRIMARY KEY,
    last  bigint NOT NULL CHECK (last > 0)
);

CREATE TABLE alert_states (
    key    bytea PRIMARY KEY,
    record bytea NOT NULL   -- store.AlertState as JSON
);

-- The current root-rotation journal: one row.
CREATE TABLE root_rotation (
    id     integer PRIMARY KEY CHECK (id = 1),
    record bytea NOT NULL   -- store.RootRotation as JSON
);
