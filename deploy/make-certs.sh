#!/usr/bin/env bash
# Makes a private CA and certificates for Meridian brokers and clients with openssl.
#
#   deploy/make-certs.sh [--out DIR] [--days N] [--client NAME]... [SERVER_NAME[=HOST,...]...]
#
# Writes DIR/ca.pem + DIR/ca.key (kept if they already exist), and for every SERVER_NAME a server
# certificate DIR/NAME.pem + DIR/NAME.key, and for every --client NAME a client certificate (for
# mTLS, e.g. mirror-eu-west for the mirror of eu-west). Server certificates carry SANs for localhost
# and 127.0.0.1 (and ::1), so clients that verify hostnames accept them on this machine, plus every
# HOST after '=' (the host names or addresses of the broker's listeners in topology.json:
# us-east-broker-1=10.0.1.5,kafka1.us-east.example.com). Existing certificates are left alone: run it again to add
# names. Defaults: DIR=deploy/certs; SERVER_NAME=broker unless only clients are named; one client
# named "client" unless --client is given.
set -euo pipefail

out="deploy/certs"
days=825
clients=()
servers=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --days) days="$2"; shift 2 ;;
    --client) clients+=("$2"); shift 2 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "make-certs: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) servers+=("$1"); shift ;;
  esac
done
# Defaults: a server "broker" when neither servers nor clients are named; a client "client" when none is named.
[ ${#servers[@]} -gt 0 ] || [ ${#clients[@]} -gt 0 ] || servers=(broker)
[ ${#clients[@]} -gt 0 ] || clients=(client)
command -v openssl >/dev/null || { echo "make-certs: openssl is not installed (apt-get install -y openssl)" >&2; exit 1; }
mkdir -p "$out"
umask 077

if [ ! -f "$out/ca.pem" ] || [ ! -f "$out/ca.key" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days "$days" -sha256 \
    -subj "/CN=Meridian test CA" -keyout "$out/ca.key" -out "$out/ca.pem" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  echo "make-certs: created CA $out/ca.pem"
fi

issue() { # name[=host,...] kind
  local name="${1%%=*}" kind="$2" ext sans="DNS:localhost,IP:127.0.0.1,IP:::1" hosts h
  [ "$name" != "$1" ] && hosts="${1#*=}" || hosts=""
  [ -f "$out/$name.pem" ] && [ -f "$out/$name.key" ] && return 0
  ext="$(mktemp)"
  if [ "$kind" = server ]; then
    sans="$sans,DNS:$name"
    IFS=',' read -r -a extra <<< "$hosts"
    for h in "${extra[@]}"; do
      [ -z "$h" ] && continue
      if [[ "$h" =~ ^[0-9.]+$ || "$h" == *:* ]]; then sans="$sans,IP:$h"; else sans="$sans,DNS:$h"; fi
    done
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n' "$sans" > "$ext"
  else
    printf 'extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n' > "$ext"
  fi
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$name" -keyout "$out/$name.key" -out "$out/$name.csr" 2>/dev/null
  openssl x509 -req -in "$out/$name.csr" -CA "$out/ca.pem" -CAkey "$out/ca.key" -CAcreateserial \
    -days "$days" -sha256 -extfile "$ext" -out "$out/$name.pem" 2>/dev/null
  rm -f "$out/$name.csr" "$ext"
  echo "make-certs: created $kind certificate $out/$name.pem"
}

for s in "${servers[@]}"; do issue "$s" server; done
for c in "${clients[@]}"; do issue "$c" client; done
chmod 644 "$out"/*.pem
