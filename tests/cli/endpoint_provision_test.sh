#!/usr/bin/env bash
# mh-endpoint's provisioning subcommands, checked with openssl itself: the CA and the
# certificates verify, the printed fingerprints are openssl's, a mutual-TLS handshake
# between openssl s_server and s_client with them completes (and fails without a client
# certificate or with one from another CA), tokens carry the HMAC openssl computes, and
# mistakes end with the documented exit codes.
source "$(dirname "$0")/lib.sh"

begin "keygen prints 32 random bytes as hex"
key1=$(mh-endpoint keygen); code=$?
expect_eq "exit code" 0 "$code"
[[ "$key1" =~ ^[0-9a-f]{64}$ ]] && pass || fail "not 64 hex digits: $key1"
key2=$(mh-endpoint keygen)
[ "$key1" != "$key2" ] && pass || fail "two keys are equal"

begin "ca makes a self-signed CA with a private key file"
ca_fingerprint=$(mh-endpoint ca --dir ca 2> ca.err); code=$?
expect_eq "exit code" 0 "$code"
expect_contains "says what it wrote" "wrote ca/ca.crt and ca/ca.key" "$(cat ca.err)"
expect_eq "key file mode" 600 "$(stat -c %a ca/ca.key)"
expect_eq "CA directory mode" 700 "$(stat -c %a ca)"
expect_contains "self-signed CA verifies" "ca/ca.crt: OK" "$(openssl verify -CAfile ca/ca.crt ca/ca.crt 2>&1)"
text=$(openssl x509 -in ca/ca.crt -noout -text)
expect_contains "CA:TRUE" "CA:TRUE, pathlen:0" "$text"
expect_contains "ECDSA P-256" "NIST CURVE: P-256" "$text"
expect_contains "signed with SHA-256" "ecdsa-with-SHA256" "$text"
expect_eq "printed fingerprint is openssl's" "sha256 Fingerprint=$ca_fingerprint" \
  "$(openssl x509 -in ca/ca.crt -noout -fingerprint -sha256)"

begin "cert makes a gateway client certificate signed by the CA"
fingerprint=$(mh-endpoint cert --ca ca --gateway gw-0001 --out gateways 2> cert.err); code=$?
expect_eq "exit code" 0 "$code"
expect_contains "verifies against the CA as a TLS client" "gateways/gw-0001.crt: OK" \
  "$(openssl verify -CAfile ca/ca.crt -purpose sslclient gateways/gw-0001.crt 2>&1)"
expect_eq "printed fingerprint is openssl's" "sha256 Fingerprint=$fingerprint" \
  "$(openssl x509 -in gateways/gw-0001.crt -noout -fingerprint -sha256)"
expect_contains "stderr gives the registry line" "cert_sha256 = \"$fingerprint\"" "$(cat cert.err)"
expect_eq "CN is the gateway id" "subject=CN = gw-0001" "$(openssl x509 -in gateways/gw-0001.crt -noout -subject)"
expect_eq "key file mode" 600 "$(stat -c %a gateways/gw-0001.key)"
expect_contains "the key is the certificate's" "$(openssl x509 -in gateways/gw-0001.crt -noout -pubkey)" \
  "$(openssl pkey -in gateways/gw-0001.key -pubout)"
openssl verify -CAfile ca/ca.crt -purpose sslserver gateways/gw-0001.crt > /dev/null 2>&1 \
  && fail "a gateway certificate passes as a server certificate" || pass

begin "server-cert makes a server certificate with the host names"
mh-endpoint server-cert --ca ca --host localhost 127.0.0.1 ::1 --out server > server.fingerprint 2> /dev/null
code=$?
expect_eq "exit code" 0 "$code"
expect_contains "verifies for localhost" "server/server.crt: OK" \
  "$(openssl verify -CAfile ca/ca.crt -purpose sslserver -verify_hostname localhost server/server.crt 2>&1)"
expect_contains "verifies for 127.0.0.1" "server/server.crt: OK" \
  "$(openssl verify -CAfile ca/ca.crt -verify_ip 127.0.0.1 server/server.crt 2>&1)"
openssl verify -CAfile ca/ca.crt -verify_hostname example.org server/server.crt > /dev/null 2>&1 \
  && fail "verifies for a host it does not name" || pass
expect_contains "subjectAltName" "DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1" \
  "$(openssl x509 -in server/server.crt -noout -ext subjectAltName)"
expect_eq "printed fingerprint is openssl's" "sha256 Fingerprint=$(cat server.fingerprint)" \
  "$(openssl x509 -in server/server.crt -noout -fingerprint -sha256)"

# handshake CLIENT_OPTIONS...: openssl s_server (mutual TLS: a client certificate is required
# and verified against the CA) on a port of its choosing, and one s_client connection that
# sends a line; the server (-rev) sends it back reversed. Sets CLIENT_CODE, leaves c.out, s.out.
handshake() {
  rm -f s.out c.out
  openssl s_server -rev -naccept 1 -accept 127.0.0.1:0 -cert server/server.crt -key server/server.key \
    -CAfile ca/ca.crt -Verify 1 -verify_return_error > s.out 2>&1 &
  local server=$!
  BACKGROUND_PIDS+=("$server")
  local port
  port=$(wait_log_port 20 s.out '^ACCEPT') || { fail "s_server did not start: $(cat s.out)"; return; }
  printf 'hello-mtls\nCLOSE\n' | timeout 20 openssl s_client -quiet -connect "127.0.0.1:$port" \
    -CAfile ca/ca.crt -verify_return_error -verify_hostname localhost "$@" > c.out 2>&1
  CLIENT_CODE=$?
  wait_pid_exit 20 "$server"
}

begin "mutual TLS with the made certificates (openssl s_server and s_client)"
handshake -cert gateways/gw-0001.crt -key gateways/gw-0001.key
expect_eq "s_client exit code" 0 "$CLIENT_CODE"
expect_contains "data went both ways" "sltm-olleh" "$(cat c.out)"
expect_contains "server saw the gateway's certificate" "Peer certificate: CN = gw-0001" "$(cat s.out)"
expect_contains "server verified it" "Verification: OK" "$(cat s.out)"

begin "mutual TLS refuses a client without a certificate"
handshake
expect_contains "server refused" "peer did not return a certificate" "$(cat s.out)"
[[ "$(cat c.out)" != *"sltm-olleh"* ]] && pass || fail "data went through without a client certificate"

begin "mutual TLS refuses a certificate from another CA"
mh-endpoint ca --dir other-ca > /dev/null 2>&1
mh-endpoint cert --ca other-ca --gateway gw-0001 --out foreign > /dev/null 2>&1
handshake -cert foreign/gw-0001.crt -key foreign/gw-0001.key
expect_contains "server refused" "certificate verify failed" "$(cat s.out)"
[[ "$(cat c.out)" != *"sltm-olleh"* ]] && pass || fail "data went through with a foreign certificate"

begin "--backdate makes an expired certificate"
mh-endpoint cert --ca ca --gateway gw-old --out gateways --days 1 --backdate 2d > /dev/null 2>&1; code=$?
expect_eq "exit code" 0 "$code"
expect_contains "openssl calls it expired" "certificate has expired" \
  "$(openssl verify -CAfile ca/ca.crt gateways/gw-old.crt 2>&1)"
handshake -cert gateways/gw-old.crt -key gateways/gw-old.key
expect_contains "s_server refuses it" "certificate verify failed" "$(cat s.out)"

begin "token: signed with the registry's key, as openssl computes the HMAC"
key=$(mh-endpoint keygen)
cat > gateways.toml <<EOF
[gateway.gw-0001]
token_key = "$key"
cert_sha256 = "$fingerprint"
sources = ["sensor-0001-*"]

[gateway."site.a.gw-2"]
cert_sha256 = "$(cat server.fingerprint)"
EOF
before=$(date +%s)
token=$(mh-endpoint token --registry gateways.toml --gateway gw-0001 --valid 2h); code=$?
after=$(date +%s)
expect_eq "exit code" 0 "$code"
if [[ "$token" =~ ^mh1\.gw-0001\.([0-9]+)\.([A-Za-z0-9_-]{43})$ ]]; then
  pass
  expiry=${BASH_REMATCH[1]} signature=${BASH_REMATCH[2]}
  [ "$expiry" -ge $((before + 7200)) ] && [ "$expiry" -le $((after + 7200)) ] && pass \
    || fail "expiry $expiry is not two hours after $before..$after"
  expected=$(printf 'mh1\ngw-0001\n%s' "$expiry" \
    | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$key" -binary | base64 -w0 | tr '+/' '-_' | tr -d '=')
  expect_eq "signature is HMAC-SHA256 over id and expiry" "$expected" "$signature"
else
  fail "token has not the form mh1.<gateway>.<expiry>.<signature>: $token"
fi
default_token=$(mh-endpoint token --registry gateways.toml --gateway gw-0001)
default_expiry=$(cut -d. -f3 <<< "$default_token")
[ "$default_expiry" -ge $((before + 30 * 86400)) ] && pass || fail "default validity is not 30 days: $default_token"

begin "token refusals"
mh-endpoint token --registry gateways.toml --gateway gw-9 > out 2> err; code=$?
expect_eq "unknown gateway: exit code" 78 "$code"
expect_contains "unknown gateway: message" "no gateway 'gw-9' in the registry" "$(cat err)"
mh-endpoint token --registry gateways.toml --gateway site.a.gw-2 > out 2> err; code=$?
expect_eq "certificate-only gateway: exit code" 78 "$code"
expect_contains "certificate-only gateway: message" "has no token_key" "$(cat err)"
printf '[gateway.a]\ntoken_key = "%s"\nsources = "x"\n' "$key" > bad.toml
mh-endpoint token --registry bad.toml --gateway a > out 2> err; code=$?
expect_eq "bad registry: exit code" 78 "$code"
expect_eq "bad registry: message with line and column" \
  "mh-endpoint: error: bad.toml:3:11: sources must be an array of glob patterns" "$(cat err)"
mh-endpoint token --registry missing.toml --gateway a > out 2> err; code=$?
expect_eq "missing registry: exit code" 78 "$code"
mh-endpoint token --registry gateways.toml --gateway gw-0001 --valid soon > out 2> err; code=$?
expect_eq "bad --valid: exit code" 64 "$code"
expect_eq "nothing on stdout after a refusal" "" "$(cat out)"

begin "certificate refusals"
mh-endpoint cert --ca ca --gateway gw-0001 --out gateways > out 2> err; code=$?
expect_eq "existing files: exit code" 74 "$code"
expect_contains "existing files: message" "gateways/gw-0001.crt exists; it is not overwritten" "$(cat err)"
expect_eq "existing certificate unchanged" "sha256 Fingerprint=$fingerprint" \
  "$(openssl x509 -in gateways/gw-0001.crt -noout -fingerprint -sha256)"
mh-endpoint ca --dir ca > out 2> err; code=$?
expect_eq "existing CA: exit code" 74 "$code"
mh-endpoint cert --ca no-ca --gateway gw-2 --out gateways > out 2> err; code=$?
expect_eq "missing CA: exit code" 74 "$code"
expect_contains "missing CA: message" "cannot read no-ca/ca.crt" "$(cat err)"
for bad in 'a/b' 'a+b' 'a#' 'a b' "$(printf 'a\tb')" "$(printf 'g%.0s' {1..65})"; do
  mh-endpoint cert --ca ca --gateway "$bad" --out gateways > out 2> err; code=$?
  expect_eq "bad gateway id '$bad': exit code" 64 "$code"
done
mh-endpoint server-cert --ca ca --host 'localhost,DNS:evil.example' --out server2 > out 2> err; code=$?
expect_eq "host with a comma: exit code" 64 "$code"
expect_contains "host with a comma: message" "is neither a DNS name nor an IP address" "$(cat err)"
mh-endpoint cert --ca ca --gateway gw-3 --out gateways --days 0 > out 2> err; code=$?
expect_eq "--days 0: exit code" 64 "$code"
mh-endpoint cert --ca ca --out gateways > out 2> err; code=$?
expect_eq "no --gateway: exit code" 64 "$code"

finish
