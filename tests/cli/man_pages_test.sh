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

finish
