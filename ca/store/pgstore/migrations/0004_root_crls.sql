-- meshca schema version 4: the root CRL meshca took last per issuer
-- (store.RootCRLs), so that no replica, restarted or not, takes one with a
-- lower CRLNumber than was taken before. number is the CRLNumber as an
-- unsigned big-endian integer of 21 bytes (NULL: the CRL has none), so
-- that comparing the bytes compares the numbers.
CREATE TABLE root_crls (
    issuer text COLLATE "C" PRIMARY KEY,
    number bytea CHECK (number IS NULL OR length(number) = 21),
    der    bytea NOT NULL CHECK (length(der) > 0)
);
