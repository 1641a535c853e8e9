#!/usr/bin/env node
// Host preparation for CI (and fresh developer machines); dependency-free, runs before `npm ci`.
// Installs host packages, starts dockerd, builds the local base and workload images.
import fs from 'node:fs';
import { pathToFileURL } from 'node:url';

import { ensureDockerd, ensureHostPackages } from './host.mjs';
import { ensureBaseImage, ensureWorkloadImage } from '../images/images.mjs';

const log = (msg) => console.log(`[ci-prep] ${msg}`);

export async function ciPrep() {
  const t0 = Date.now();
  await ensureHostPackages(log);
  await ensureDockerd(log);
  const base = await ensureBaseImage(log);
  const workload = await ensureWorkloadImage(log);
  log(`ready in ${((Date.now() - t0) / 1000).toFixed(1)} s (base image ${base}, workload image ${workload})`);
  return { base, workload };
}

const invokedDirectly = process.argv[1] && import.meta.url === pathToFileURL(fs.realpathSync(process.argv[1])).href;
if (invokedDirectly) {
  ciPrep().catch((err) => {
    console.error(`[ci-prep] ERROR: ${err.message}`);
    process.exit(1);
  });
}
