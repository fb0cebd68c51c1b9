module github.com/meshca/meshca/test/pqverify

go 1.27

toolchain go1.27.0
