-- meshca schema version 3: the spiffe_sequence of each SPIFFE bundle meshca
-- serves (store.BundleSequences), with the SHA-256 of the content it
-- numbers, so that replicas serving the same content agree on the number
-- and a changed content always gets a higher one.
CREATE TABLE bundle_sequences (
    name   text COLLATE "C" PRIMARY KEY,
    seq    bigint NOT NULL CHECK (seq > 0),
    digest bytea NOT NULL CHECK (length(digest) = 32)
);
