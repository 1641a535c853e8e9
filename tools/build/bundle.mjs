#!/usr/bin/env node
// Bundles each service, the `weave` CLI and the NATS image's entry point into one self-contained JS file under dist/, so the
// images need nothing but node: no npm, no node_modules, no registry at image build time.
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const bundles = {
  'dist/services/plugin-api/main.js': 'services/plugin-api/src/main.ts',
  'dist/services/ipam/main.js': 'services/ipam/src/main.ts',
  'dist/services/netwire/main.js': 'services/netwire/src/main.ts',
  'dist/services/router/main.js': 'services/router/src/main.ts',
  'dist/tools/cli/weave.js': 'tools/cli/src/main.ts',
  'dist/nats/entrypoint.js': 'compose/nats/entrypoint.ts',
};

const nativeAddons = {
  'dist/services/router/main.js': `native/sleeve/sleeve.${process.platform}-${process.arch}-gnu.node`,
};

export async function bundleAll(log = () => {}) {
  const t0 = Date.now();
  await Promise.all(
    Object.entries(bundles).map(([out, entry]) =>
      build({
        entryPoints: [join(root, entry)],
        outfile: join(root, out),
        bundle: true,
        platform: 'node',
        target: 'node20',
        format: 'cjs',
        sourcemap: 'inline',
        logLevel: 'warning',
      }),
    ),
  );
  // The router's sleeve is a native addon, loaded from next to the code that requires it; the
  // bundle inlines that code, so the addon goes next to the bundle.
  for (const [out, addon] of Object.entries(nativeAddons)) {
    if (!existsSync(join(root, addon))) throw new Error(`${addon} is missing: build it with \`npm run build -w @weave/sleeve\``);
    copyFileSync(join(root, addon), join(root, dirname(out), basename(addon)));
  }
  log(`bundled ${Object.keys(bundles).length} programs in ${Date.now() - t0} ms`);
}

/** The NATS image is the host's own nats-server binary (a static Go program) on the base image. */
export function stageNatsServer(natsServerPath) {
  mkdirSync(join(root, 'dist/nats'), { recursive: true });
  copyFileSync(natsServerPath, join(root, 'dist/nats/nats-server'));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  bundleAll(console.log).catch((e) => {
    console.error(e.message);
    process.exit(1);
  });
}
