// Command vault is the upstream HashiCorp Vault server and CLI, built from
// source at the version pinned in go.mod so that meshca's Vault PKI
// integration tests run against a real Vault in dev mode (see
// test/tools/testbin.sh and test/vaultenv).
package main

import (
	"os"

	"github.com/hashicorp/vault/command"
)

func main() {
	os.Exit(command.Run(os.Args[1:]))
}
