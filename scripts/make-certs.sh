#!/usr/bin/env bash
# Makes the certificates for a cluster with mutual TLS (docs/OPERATIONS.md,
# "Securing a cluster"): a CA, one node certificate per host and one client
# certificate, all EC P-256, signed by the CA.
#
#   scripts/make-certs.sh DIR HOST...
#
# DIR/ca.crt, ca.key            the CA (keep ca.key offline once done)
# DIR/node-HOST.crt, .key       a node: subject CN=HOST, OU=dledger-node; the
#                               host as DNS name (and as IP address when it is
#                               one); serverAuth and clientAuth
# DIR/client.crt, client.key    a client: CN=dledger-client, OU=dledger-client;
#                               clientAuth only, so it cannot serve as a node
#
# A node's role comes from OU=dledger-node; anything else the CA signed is a
# client, which may append, read and ask for metadata but never speak Raft.
# Refuses to overwrite any file. Environment: DAYS (default 825) for the
# node and client certificates, CA_DAYS (default 3650).
set -euo pipefail

usage() { echo "usage: $0 DIR HOST..." >&2; exit 2; }
[ $# -ge 2 ] || usage
dir=$1; shift
days=${DAYS:-825}
ca_days=${CA_DAYS:-3650}
command -v openssl >/dev/null || { echo "$0: openssl not found" >&2; exit 1; }

# Every file we would write, checked before writing any.
files=("$dir/ca.crt" "$dir/ca.key" "$dir/client.crt" "$dir/client.key")
for h in "$@"; do
	case $h in
	'' | *[!A-Za-z0-9.:_-]*) echo "$0: '$h' is not a host name or IP address" >&2; exit 2 ;;
	esac
	files+=("$dir/node-$h.crt" "$dir/node-$h.key")
done
for f in "${files[@]}"; do
	[ ! -e "$f" ] || { echo "$0: $f exists; not overwriting anything" >&2; exit 1; }
done
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
umask 077

is_ip() { [[ $1 =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ || $1 == *:* ]]; }

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# sign KEY CRT SUBJECT EXTFILE
sign() {
	openssl req -new -key "$1" -subj "$3" -out "$tmp/req.csr"
	openssl x509 -req -in "$tmp/req.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
		-set_serial "0x$(openssl rand -hex 16)" -days "$days" -sha256 \
		-extfile "$4" -out "$2" 2>/dev/null
}

newkey "$dir/ca.key"
openssl req -new -x509 -key "$dir/ca.key" -subj "/O=dledger/CN=dledger CA" -days "$ca_days" \
	-sha256 -addext "basicConstraints=critical,CA:TRUE" \
	-addext "keyUsage=critical,keyCertSign,cRLSign" -out "$dir/ca.crt"
echo "CA       $dir/ca.crt"

for h in "$@"; do
	# mbedTLS 2.28 matches the server name against DNS names only: an IP
	# address is listed as a DNS name too.
	san="DNS:$h"
	if is_ip "$h"; then san="IP:$h,DNS:$h"; fi
	cat >"$tmp/node.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$san
EOF
	newkey "$dir/node-$h.key"
	sign "$dir/node-$h.key" "$dir/node-$h.crt" "/O=dledger/OU=dledger-node/CN=$h" "$tmp/node.ext"
	echo "node     $dir/node-$h.crt  (key node-$h.key; $san)"
done

cat >"$tmp/client.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
EOF
newkey "$dir/client.key"
sign "$dir/client.key" "$dir/client.crt" "/O=dledger/OU=dledger-client/CN=dledger-client" \
	"$tmp/client.ext"
echo "client   $dir/client.crt  (key client.key)"
chmod 644 "$dir"/*.crt
echo "valid for $days days; keys are mode 0600"
