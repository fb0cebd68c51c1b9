# meshca's Vault policy: the least privilege for the Vault root source
# (root.source: vault). Replace "pki" with root.vault.mount.
#
#   vault policy write meshca deploy/examples/vault-policy.hcl
#   vault write auth/approle/role/meshca token_policies=meshca \
#       token_no_default_policy=true token_ttl=1h token_max_ttl=24h
#
# meshca generates its intermediate's key in its own key store and sends
# Vault only a CSR; this policy cannot read or export any key.

# Sign meshca's intermediate from a CSR. With root.vault.issuerRef set, grant
# "pki/issuer/<issuerRef>/sign-intermediate" instead.
path "pki/root/sign-intermediate" {
  capabilities = ["update"]
}

# Trust material: the root chain, the issuer and the root's CRL (needed in
# Istio's ca-crl.pem). Vault's PKI engine serves these to anyone; they are
# listed so that the policy states everything meshca reads. With issuerRef
# set, meshca reads "pki/issuer/<issuerRef>/json" and
# "pki/issuer/<issuerRef>/crl/pem" instead.
path "pki/ca_chain" {
  capabilities = ["read"]
}
path "pki/cert/ca" {
  capabilities = ["read"]
}
path "pki/crl/pem" {
  capabilities = ["read"]
}

# Token upkeep, normally granted by Vault's default policy; listed so that
# the role works with token_no_default_policy=true. capabilities-self lets
# meshca check at start-up that it may call sign-intermediate.
path "auth/token/renew-self" {
  capabilities = ["update"]
}
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
path "sys/capabilities-self" {
  capabilities = ["update"]
}
