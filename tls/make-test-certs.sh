#!/usr/bin/env bash
# Makes certificates for trying TLS on one machine (never for production):
#   ca.pem, ca.key          a CA (RSA-2048, ten days)
#   server.pem, server.key  signed by it, for localhost and 127.0.0.1 (serverAuth)
#   client.pem, client.key  signed by it (clientAuth)
#   other-ca.pem            a second CA that signed nothing (to see a refusal)
#   server-encrypted.key, client-encrypted.key
#                           the same keys encrypted (PKCS#8, AES-256), password
#                           "test-password"
#   cadir/                  ca.pem under its hash name, as OpenSSL's capath wants
# Usage: tls/make-test-certs.sh DIR   (DIR is created; files in it are replaced)
set -euo pipefail
dir=${1:?usage: $0 DIR}
mkdir -p "$dir"
cd "$dir"
days=10

ca() { # name subject
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days "$days" -subj "/CN=$2" \
        -keyout "$1.key" -out "$1.pem" 2>/dev/null
}
leaf() { # name subject extensions
    openssl req -new -newkey rsa:2048 -nodes -sha256 -subj "/CN=$2" \
        -keyout "$1.key" -out "$1.csr" 2>/dev/null
    printf '%s\n' "$3" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -sha256 \
        -days "$days" -extfile "$1.ext" -out "$1.pem" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}

ca ca "E-Library test CA"
ca other-ca "E-Library other CA"
rm -f other-ca.key
leaf server localhost "subjectAltName=DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth"
leaf client "E-Library client" "extendedKeyUsage=clientAuth"
rm -f ca.srl
for name in server client; do
    openssl pkcs8 -topk8 -v2 aes-256-cbc -passout pass:test-password \
        -in "$name.key" -out "$name-encrypted.key"
done
mkdir -p cadir
cp ca.pem "cadir/$(openssl x509 -hash -noout -in ca.pem).0"
echo "made ca.pem, server.pem/.key, client.pem/.key, other-ca.pem, encrypted keys and cadir/ in $dir"
