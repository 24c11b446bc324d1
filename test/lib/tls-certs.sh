#!/usr/bin/env bash
# Certificates for the TLS tests, in DIR (which must not hold them yet):
#   ca.crt, node-127.0.0.1.crt/.key, client.crt/.key   scripts/make-certs.sh DIR 127.0.0.1
#   other/...                                          the same from another CA (a wrong CA)
#   expired.crt/.key    a node certificate of the right CA, valid only in January 2020
#   localhost.crt/.key  a node certificate of the right CA naming "localhost" only
#   nonnode.crt/.key    a server and client certificate of the right CA for 127.0.0.1 whose
#                       subject is not a node's (OU=dledger-other)
# Usage: test/lib/tls-certs.sh SOURCE_DIR DIR
set -euo pipefail
src=$1 dir=$2
"$src/scripts/make-certs.sh" "$dir" 127.0.0.1 localhost >/dev/null
"$src/scripts/make-certs.sh" "$dir/other" 127.0.0.1 >/dev/null
mv "$dir/node-localhost.crt" "$dir/localhost.crt"
mv "$dir/node-localhost.key" "$dir/localhost.key"

# openssl 3.0's x509 has no -not_before/-not_after: `openssl ca` with a
# throw-away database sets both dates.
db=$(mktemp -d)
trap 'rm -rf "$db"' EXIT
touch "$db/index.txt"
echo 01 >"$db/serial"
cat >"$db/ca.cnf" <<EOF
[ca]
default_ca = test_ca
[test_ca]
database = $db/index.txt
new_certs_dir = $db
serial = $db/serial
default_md = sha256
policy = any
[any]
organizationName = optional
organizationalUnitName = optional
commonName = supplied
[ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = IP:127.0.0.1,DNS:127.0.0.1
EOF
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/expired.key" 2>/dev/null
openssl req -new -key "$dir/expired.key" -subj "/O=dledger/OU=dledger-node/CN=127.0.0.1" \
	-out "$db/expired.csr"
openssl ca -batch -config "$db/ca.cnf" -cert "$dir/ca.crt" -keyfile "$dir/ca.key" \
	-in "$db/expired.csr" -out "$dir/expired.crt" -extensions ext \
	-startdate 20200101000000Z -enddate 20200201000000Z >/dev/null 2>&1

# A certificate fit to serve 127.0.0.1, but not a node's.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/nonnode.key" 2>/dev/null
openssl req -new -key "$dir/nonnode.key" -subj "/O=dledger/OU=dledger-other/CN=127.0.0.1" \
	-out "$db/nonnode.csr"
openssl ca -batch -config "$db/ca.cnf" -cert "$dir/ca.crt" -keyfile "$dir/ca.key" \
	-in "$db/nonnode.csr" -out "$dir/nonnode.crt" -extensions ext -days 30 >/dev/null 2>&1
