#!/usr/bin/env node
// The installed `tincanctl` command (a file in git, so `pnpm install` links it before the build).
import "../dist/tincanctl.js";
