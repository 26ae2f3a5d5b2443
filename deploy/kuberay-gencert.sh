#!/bin/sh
# A Ray pod's TLS certificate (deploy/kuberay.yaml's init containers): a key made here and a
# certificate signed by the cluster's CA (/etc/ray/ca, a Secret) for this pod's IP, the loopback
# and the namespace's service names, good as server and as client (Ray's TLS is mutual). Writes
# tls.key, tls.crt and the CA's certificate (not its key) to /etc/ray/tls, the Ray container's.
set -eu
out=${OUT:-/etc/ray/tls}
ca=${CA_DIR:-/etc/ray/ca}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
umask 077
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$POD_IP" \
    -keyout "$out/tls.key" -out "$work/tls.csr"
printf 'subjectAltName=IP:%s,IP:127.0.0.1,DNS:localhost,DNS:*.%s.svc.cluster.local\nextendedKeyUsage=serverAuth,clientAuth\n' \
    "$POD_IP" "$POD_NAMESPACE" > "$work/ext.cnf"
openssl x509 -req -in "$work/tls.csr" -CA "$ca/ca.crt" -CAkey "$ca/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days 365 -extfile "$work/ext.cnf" -out "$out/tls.crt"
cp "$ca/ca.crt" "$out/ca.crt"
chmod 0444 "$out/tls.crt" "$out/ca.crt"
chmod 0400 "$out/tls.key"
