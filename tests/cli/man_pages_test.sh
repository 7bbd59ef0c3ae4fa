#!/usr/bin/env bash
# Every tool has a man page with the usual sections, and every long option that
# --help lists appears in it.
source "$(dirname "$0")/lib.sh"

for dir in "$MH_SOURCE"/tools/mh-*/; do
  tool=$(basename "$dir")
  page="$MH_SOURCE/man/$tool.1"
  begin "$tool man page"
  if [ ! -f "$page" ]; then fail "no man page $page"; continue; fi
  for section in NAME SYNOPSIS DESCRIPTION OPTIONS "EXIT STATUS" EXAMPLES "SEE ALSO"; do
    grep -q "^\.SH \"\?$section" "$page" && pass || fail "$page has no $section section"
  done
  options=$("$tool" --help | grep -oE -- '--[a-z][a-z-]*' | sort -u)
  [ -n "$options" ] && pass || fail "$tool --help lists no options"
  for option in $options; do
    grep -qF -- "$(sed 's/-/\\-/g' <<< "$option")" "$page" || grep -qF -- "$option" "$page" \
      && pass || fail "$page does not document $option"
  done
  if command -v man >/dev/null; then
    man -l "$page" > /dev/null 2>&1 && pass || fail "man cannot render $page"
  fi
done

# Section 5, the file formats: the usual sections, a tool's page that points to it, and it renders.
for page in "$MH_SOURCE"/man/*.5; do
  format=$(basename "$page" .5)
  begin "$format(5) man page"
  for section in NAME SYNOPSIS DESCRIPTION EXAMPLES "SEE ALSO"; do
    grep -q "^\.SH \"\?$section" "$page" && pass || fail "$page has no $section section"
  done
  grep -qF -- "$(sed 's/-/\\-/g' <<< "$format") (5)" "$MH_SOURCE"/man/*.1 || grep -qF -- "$format (5)" "$MH_SOURCE"/man/*.1 \
    && pass || fail "no tool's page refers to $format(5)"
  if command -v man >/dev/null; then
    man -l "$page" > /dev/null 2>&1 && pass || fail "man cannot render $page"
  fi
done

# The manifest page has a term for every key the loader accepts, in the section of its table.
# The loader says which keys those are when it meets one it does not know.
begin "mh-route-manifest(5) documents every table and key of the loader"
page="$MH_SOURCE/man/mh-route-manifest.5"
cat > unknown-keys.toml <<'TOML'
zz_unknown = 1
[channel]
zz = 1
[hosts]
h = { address = "10.0.0.1", zz = 1 }
[defaults]
zz = 1
[stage.s]
run = "mh-gen"
zz = 1
[stage.t]
run = "mh-store append --db x"
from = [{ stage = "s", zz = 1 }]
TOML
mh-route check unknown-keys.toml 2> unknown-keys.err
# The terms (.TP/.TQ items) of the part of the page from ".SS HEADING" to the next heading.
terms_of() {
  awk -v heading=".SS $1" '
    $0 == heading { inside = 1; next }
    inside && /^\.S[HS]/ { inside = 0 }
    inside && term { w = $2; gsub(/"/, "", w); print w; term = 0; next }
    inside && /^\.T[PQ]/ { term = 1 }' "$page"
}
tables=$(grep -o "a manifest has .* tables" unknown-keys.err | grep -oE '\[[a-z.A-Z]+\]')
[ "$(wc -w <<< "$tables")" -ge 4 ] && pass || fail "no list of tables from the loader: $(cat unknown-keys.err)"
for table in $tables; do
  grep -qxF ".SS $table" "$page" && pass || fail "$page has no section .SS $table"
done
while IFS= read -r line; do
  where=$(sed -E "s/.* in (.*); the keys there are: .*/\1/" <<< "$line")
  case "$where" in
    "[stage."*|"a from entry") section="[stage.NAME]" ;;
    host*) section="[hosts]" ;;
    *) section="$where" ;;
  esac
  for key in $(sed -E 's/.*the keys there are: //; s/,//g' <<< "$line"); do
    terms_of "$section" | grep -qxF -- "$key" && pass || fail "$page: no term for $key in its $section section"
  done
done < <(grep "the keys there are: " unknown-keys.err)
[ "$(grep -c "the keys there are: " unknown-keys.err)" -eq 5 ] && pass \
  || fail "expected the key lists of 5 tables: $(cat unknown-keys.err)"

finish
