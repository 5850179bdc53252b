#!/usr/bin/env bash
# Makes the TLS files deploy/docker-compose.yml reads, in this directory (or in $1): a private
# CA (ca.pem) and, signed by it, PostgreSQL's certificate and key (postgres.crt, postgres.key)
# and MongoDB's certificate with its key (mongodb.pem), for the compose host names `postgres`
# and `mongodb`. The CA's own key is deleted once both are signed, so nothing else can ever be
# signed with it: to renew, run this again and restart the stack. None of these files belongs
# in version control (deploy/tls/.gitignore).
#
# With your own CA instead, put its certificate in ca.pem and the servers' files under the same
# names; the certificates must name `postgres` and `mongodb` (subjectAltName), which the
# services' URLs check (sslmode=verify-full, and MongoDB's driver always checks the name).
set -euo pipefail

out="${1:-$(dirname "$0")}"
days=397
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
umask 077

openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
  -keyout "$work/ca.key" -out "$out/ca.pem" -days "$days" -subj "/CN=myhealth compose CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"

# A server certificate for host name $1, written as $2.crt and $2.key.
server() {
  local host="$1" name="$2"
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
    -keyout "$out/$name.key" -out "$work/$name.csr" -subj "/CN=$host"
  printf '%s\n' \
    "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=serverAuth,clientAuth" \
    "subjectAltName=DNS:$host" >"$work/$name.ext"
  openssl x509 -req -in "$work/$name.csr" -CA "$out/ca.pem" -CAkey "$work/ca.key" \
    -CAcreateserial -CAserial "$work/serial" -days "$days" -extfile "$work/$name.ext" \
    -out "$out/$name.crt"
}

server postgres postgres
# mongod reads its certificate and key from one file (--tlsCertificateKeyFile); it also
# presents it as a client to the other members (here itself), hence clientAuth above.
server mongodb mongodb
cat "$out/mongodb.crt" "$out/mongodb.key" >"$out/mongodb.pem"
rm "$out/mongodb.crt" "$out/mongodb.key"

# Certificates are public; the containers' entrypoints copy the keys to files only the server
# user may read, so the host's files may stay private to you.
chmod 644 "$out/ca.pem" "$out/postgres.crt"
chmod 600 "$out/postgres.key" "$out/mongodb.pem"
echo "made $out/ca.pem, postgres.crt, postgres.key, mongodb.pem (valid $days days)"
