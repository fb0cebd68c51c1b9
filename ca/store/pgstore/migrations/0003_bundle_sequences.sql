-- meshca schema version 3: the spiffe_sequence of each SPIFFE bundle meshca
-- serves (store.BundleSequences), with the SHA-256 of the content it
-- numbers and that content, so that replicas serving the same content
-- agree on the number, a changed content always gets a higher one, and
-- every replica can serve the content last numbered.
CREATE TABLE bundle_sequences (
    name    text COLLATE "C" PRIMARY KEY,
    seq     bigint NOT NULL CHECK (seq > 0),
    digest  bytea NOT NULL CHECK (length(digest) = 32),
    content bytea NOT NULL
);
