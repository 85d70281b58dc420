#!/bin/sh
# @PROG@ of TinCan-TS: runs @ENTRY@ from the package with Node.js >= @NODE_MAJOR@.
# The library is found beside this script (../lib/tincan), so an unpacked package runs in place.
lib="$(dirname "$(readlink -f "$0")")/../lib/tincan/node_modules"
node="${TINCAN_NODE:-node}"
version="$("$node" --version 2>/dev/null)" || {
  echo "@PROG@: Node.js >= @NODE_MAJOR@ is needed and '$node' was not found (install the nodejs package, or set TINCAN_NODE)" >&2
  exit 1
}
major="${version#v}"
major="${major%%.*}"
if [ "$major" -lt @NODE_MAJOR@ ] 2>/dev/null; then
  echo "@PROG@: Node.js >= @NODE_MAJOR@ is needed, '$node' is $version (Debian 12 ships 18: use NodeSource's nodejs 20 or 22, or Debian 13)" >&2
  exit 1
fi
exec "$node" @NODE_FLAGS@"$lib/@ENTRY@" "$@"
