#!/usr/bin/env bash
# Builds the Debian package OUT/tincan_<version>_<arch>.deb (OUT: first argument, default out/)
# from the built workspace (`pnpm run build` first): production dependencies only (`pnpm deploy
# --prod`), the native TUN addon and node-datachannel's binary prebuilt, wrappers on PATH, systemd
# units, the polkit rule for SocialVPN's dns.resolved, sample configs as conffiles in /etc/tincan/. Where it is installed, no compiler is needed:
# only Node.js >= 20 (Depends: nodejs (>= 20)). Prints the path of the .deb on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
OUT=$(realpath -m "${1:-out}")
NODE_MAJOR=20

for f in packages/{protocol,controller,datapath,groupvpn,socialvpn}/dist/index.js packages/tuntap/build/Release/tuntap.node; do
  [[ -e $f ]] || { echo "build-deb: $f is missing: run 'pnpm run build' first" >&2; exit 2; }
done
VERSION=$(node -p 'require("./packages/datapath/package.json").version')
ARCH=$(dpkg --print-architecture)

STAGE=$(mktemp -d "${TMPDIR:-/tmp}/tincan-deb.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
ROOT=$STAGE/root
LIB=$ROOT/usr/lib/tincan

# One deploy of the workspace root (it depends on the four binary packages): its node_modules hold
# them and their production dependencies, with the patches applied, and nothing else of the repo.
pnpm --filter tincan-ts deploy --prod --legacy --config.confirmModulesPurge=false "$STAGE/deploy" >"$STAGE/deploy.log" 2>&1 ||
  { cat "$STAGE/deploy.log" >&2; exit 1; }
mkdir -p "$LIB"
mv "$STAGE/deploy/node_modules" "$LIB/node_modules"
NM=$LIB/node_modules
TUNTAP=$(echo "$NM"/.pnpm/@tincan+tuntap@*/node_modules/@tincan/tuntap)
# The TUN addon as built here, alone (the deploy does not run build scripts).
rm -rf "$TUNTAP/build"
install -D -m 0755 "$REPO/packages/tuntap/build/Release/tuntap.node" "$TUNTAP/build/Release/tuntap.node"
# Only what runs: no TypeScript sources or declarations, source maps, build inputs or package bins.
rm -rf "$NM/.bin" "$NM/.modules.yaml" "$TUNTAP"/{test-fixtures,binding.gyp}
find "$NM" \( -name '*.ts' -o -name '*.mts' -o -name '*.cts' -o -name '*.map' -o -name '*.tsbuildinfo' -o -name tsconfig.json \) -type f -delete
find "$NM"/.pnpm/@tincan+*/node_modules/@tincan/* -maxdepth 1 \( -name src -o -name scripts \) -type d -exec rm -rf {} +
find "$NM" -type d -empty -delete
for f in "$TUNTAP/build/Release/tuntap.node" "$NM"/.pnpm/@node-datachannel+linux-*/node_modules/@node-datachannel/*/node_datachannel.node; do
  [[ -f $f ]] || { echo "build-deb: $f is missing from the deploy" >&2; exit 1; }
done

mkdir -p "$ROOT/usr/bin"
wrapper() { # PROG ENTRY NODE_FLAGS
  sed -e "s|@PROG@|$1|g; s|@ENTRY@|$2|g; s|@NODE_FLAGS@|$3|g; s|@NODE_MAJOR@|$NODE_MAJOR|g" \
    packaging/debian/wrapper.sh >"$ROOT/usr/bin/$1"
  chmod 0755 "$ROOT/usr/bin/$1"
}
# The daemons' Node flags come from their bin files' shebang lines (README.md, "Running a node").
node_flags() { sed -n '1s|^#!/usr/bin/env -S node *||p' "$1" | sed 's/$/ /'; }
wrapper tincan "@tincan/datapath/dist/cli.js" "$(node_flags packages/datapath/bin/tincan.js)"
wrapper groupvpn "@tincan/groupvpn/dist/cli.js" "$(node_flags packages/groupvpn/bin/groupvpn.js)"
wrapper socialvpn "@tincan/socialvpn/dist/cli.js" "$(node_flags packages/socialvpn/bin/socialvpn.js)"
wrapper tincanctl "@tincan/controller/dist/tincanctl.js" ""

install -d "$ROOT/usr/lib/systemd/system" "$ROOT/etc/tincan" "$ROOT/usr/share/doc/tincan" "$ROOT/var/lib/tincan"
install -m 0644 packaging/systemd/*.service "$ROOT/usr/lib/systemd/system/"
install -D -m 0644 packaging/polkit/50-tincan.rules "$ROOT/usr/share/polkit-1/rules.d/50-tincan.rules"
install -m 0644 configs/tincan.json configs/groupvpn.json configs/socialvpn.json "$ROOT/etc/tincan/"
install -m 0644 README.md docs/deploy.md "$ROOT/usr/share/doc/tincan/"
install -m 0644 configs/README.md "$ROOT/usr/share/doc/tincan/configs.md"

install -d "$ROOT/DEBIAN"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$ROOT/DEBIAN/"
(cd "$ROOT" && find etc -type f | sed 's|^|/|' | sort) >"$ROOT/DEBIAN/conffiles"
SIZE=$(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)
sed -e "s|@VERSION@|$VERSION|; s|@ARCH@|$ARCH|; s|@SIZE@|$SIZE|" packaging/debian/control >"$ROOT/DEBIAN/control"

mkdir -p "$OUT"
DEB=$OUT/tincan_${VERSION}_${ARCH}.deb
dpkg-deb --root-owner-group -Zxz --build "$ROOT" "$DEB" >/dev/null
echo "build-deb: $(du -h "$DEB" | cut -f1) packed, ${SIZE} KiB installed"
echo "$DEB"
