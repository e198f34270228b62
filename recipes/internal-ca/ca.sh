#!/bin/sh
# The CA: created once, never overwritten. Safe to run twice.
set -eu
: "${CA_NAME:=Internal Root CA}" "${DAYS:=825}"
dir=/etc/internal-ca
umask 077
mkdir -p "$dir"
if [ ! -f "$dir/ca.key" ]; then
    openssl ecparam -name prime256v1 -genkey -noout -out "$dir/ca.key"
    openssl req -x509 -new -key "$dir/ca.key" -sha256 -days 3650 \
        -subj "/CN=$CA_NAME" -out "$dir/ca.crt" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign"
    chmod 0644 "$dir/ca.crt"
fi
umask 022
signer="#!/bin/sh
# Signs the CSR on stdin for the DNS names given as arguments; prints the certificate.
set -eu
[ \$# -ge 1 ] || { echo 'usage: ca-sign NAME [NAME...] < request.csr' >&2; exit 2; }
work=\$(mktemp -d); trap 'rm -rf \"\$work\"' EXIT
cat > \"\$work/req.csr\"
san=\$(printf 'DNS:%s,' \"\$@\"); san=\${san%,}
printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n' \"\$san\" > \"\$work/ext\"
openssl x509 -req -in \"\$work/req.csr\" -CA $dir/ca.crt -CAkey $dir/ca.key -CAcreateserial \\
    -days $DAYS -sha256 -extfile \"\$work/ext\" -out \"\$work/cert.pem\" 2>/dev/null
cat \"\$work/cert.pem\""
if [ "$(cat /usr/local/sbin/ca-sign 2>/dev/null)" != "$signer" ]; then
    printf '%s\n' "$signer" > /usr/local/sbin/ca-sign
    chmod 0755 /usr/local/sbin/ca-sign
fi
