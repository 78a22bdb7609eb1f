#!/usr/bin/env bash
# Generates TLS material for a haraft cluster: a cluster CA, and for each
# host a key and a certificate signed by it (server and client use, the
# host's name and IP as subject alternative names), plus client
# certificates for operators (haraftctl): `admin` (give it the admin role
# with [auth] admin_names = ["admin"]) and `reader` (reads only).
#
#   deploy/gen-tls.sh OUT_DIR NAME=IP [NAME=IP ...]
#   deploy/gen-tls.sh /etc/haraft/tls db1=10.0.0.11 db2=10.0.0.12 db3=10.0.0.13
#
# Writes OUT_DIR/ca.crt, ca.key (keep it offline), NAME.crt, NAME.key per
# host, admin.crt/.key and reader.crt/.key. Keys are mode 600. Refuses to
# overwrite an existing CA. Needs openssl.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 OUT_DIR NAME=IP [NAME=IP ...]" >&2
    exit 2
fi
out=$1
shift
command -v openssl >/dev/null || { echo "openssl not found: install it (apt-get install openssl)" >&2; exit 1; }
for pair in "$@"; do
    case $pair in
        *=*) ;;
        *) echo "bad host $pair: write NAME=IP, e.g. db1=10.0.0.11" >&2; exit 2 ;;
    esac
done
if [ -e "$out/ca.key" ]; then
    echo "$out/ca.key exists: refusing to replace the cluster CA (move it away first)" >&2
    exit 1
fi
mkdir -p "$out"
umask 077
days=825
openssl req -x509 -newkey rsa:3072 -nodes -days 3650 -subj "/CN=haraft cluster CA" \
    -keyout "$out/ca.key" -out "$out/ca.crt" 2>/dev/null
issue() { # name, subjectAltName
    local name=$1 san=$2
    openssl req -newkey rsa:3072 -nodes -subj "/CN=$name" -keyout "$out/$name.key" -out "$out/$name.csr" 2>/dev/null
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n' "$san" \
        >"$out/$name.ext"
    openssl x509 -req -in "$out/$name.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial \
        -days "$days" -extfile "$out/$name.ext" -out "$out/$name.crt" 2>/dev/null
    rm -f "$out/$name.csr" "$out/$name.ext"
}
for pair in "$@"; do
    name=${pair%%=*}
    ip=${pair#*=}
    issue "$name" "DNS:$name,IP:$ip"
    echo "$out/$name.crt  $out/$name.key  (host $name, $ip)"
done
issue admin "DNS:admin"
issue reader "DNS:reader"
rm -f "$out/ca.srl"
chmod 644 "$out"/*.crt
echo "$out/ca.crt (give to every host and operator); $out/ca.key (keep offline); admin.crt/.key and reader.crt/.key (haraftctl)"
