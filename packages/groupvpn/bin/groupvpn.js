#!/usr/bin/env -S node --max-semi-space-size=1 --v8-pool-size=1
// The installed `groupvpn` command (a file in git, so `pnpm install` links it before the build).
import "../dist/cli.js";
