#!/usr/bin/env bash
# Every shared library build/crmstream links must come from a Debian package
# that `make deps` installs (DEPS_PKGS in the Makefile) or from the base
# system those packages depend on (libc, and the runtime libraries the -dev
# packages pull in). Prints TAP.
set -u
build=${1:-build}
bin="$build/crmstream"
pkgs=$(make -s --no-print-directory -f Makefile -p 2>/dev/null | sed -n 's/^DEPS_PKGS := //p' | head -1)
# Allowed: DEPS_PKGS and everything they depend on, transitively (what
# apt-get install brings along), plus libc.
declare -A allowed=([libc6]=1)
queue=($pkgs)
while [ ${#queue[@]} -gt 0 ]; do
  p=${queue[0]}; queue=("${queue[@]:1}")
  [ -n "${allowed[$p]:-}" ] && [ "$p" != libc6 ] && continue
  allowed[$p]=1
  for d in $(dpkg-query -W -f='${Depends},${Pre-Depends}' "$p" 2>/dev/null | tr ',|' '\n\n' | sed 's/^ *//; s/ .*//; s/:.*//'); do
    [ -n "$d" ] && [ -z "${allowed[$d]:-}" ] && queue+=("$d")
  done
done
n=0 fail=0
echo "1..1"
while read -r lib path; do
  [ -n "$path" ] || continue
  real=$(readlink -f "$path")
  owner=$(dpkg -S "$real" 2>/dev/null | head -1 | cut -d: -f1)
  [ -n "$owner" ] || owner=$(dpkg -S "$path" 2>/dev/null | head -1 | cut -d: -f1)
  n=$((n + 1))
  if [ -z "$owner" ]; then
    echo "# $lib ($real) belongs to no Debian package"; fail=1
  elif [ -z "${allowed[$owner]:-}" ]; then
    echo "# $lib comes from $owner, which make deps does not install"; fail=1
  else
    echo "# $lib <- $owner"
  fi
done < <(ldd "$bin" | awk '/=>/ {print $1, $3}')
if [ "$fail" -eq 0 ] && [ "$n" -gt 3 ]; then echo "ok 1 - $n shared libraries, each from a package make deps installs"
else echo "not ok 1 - shared libraries not covered by make deps"; exit 1; fi
