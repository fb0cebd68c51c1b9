package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
)

// exportable reports whether key is an in-memory private key that can be
// written to ca-key.pem (as opposed to an HSM handle).
func exportable(key crypto.PrivateKey) bool {
	switch key.(type) {
	case *ecdsa.PrivateKey, *rsa.PrivateKey, ed25519.PrivateKey:
		return true
	}
	return false
}
