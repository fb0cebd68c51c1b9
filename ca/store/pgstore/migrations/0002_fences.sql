-- meshca schema version 2: the last lease fence (store.Fence) accepted by
-- a conditional activation (store.GenerationSwitcher). A write under an
-- older fence is refused, so a replica that lost its Kubernetes Lease
-- cannot overwrite what the new holder decided.
CREATE TABLE fences (
    name   text COLLATE "C" PRIMARY KEY,
    holder text NOT NULL,
    token  bigint NOT NULL CHECK (token >= 0)
);
INSERT INTO fences (name, holder, token) VALUES ('generations', '', 0);
