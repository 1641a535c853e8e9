import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

/**
 * The dependency rules of DESIGN.md, checked on every import: services depend on libs only,
 * libs never on services, and the lowest libs (contracts, errors, netaddr) stay free of I/O.
 */
const root = join(__dirname, '..', '..', '..');
const dirs = (d: string) => readdirSync(join(root, d)).filter((f) => statSync(join(root, d, f)).isDirectory());
const services = dirs('services');
const libs = dirs('libs');

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) return f === 'node_modules' ? [] : sources(p);
    return /\.ts$/.test(f) ? [p] : [];
  });
}

function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/(?:from|import|require\()\s*['"]([^'"]+)['"]/g)].map((m) => m[1]!);
}

const allowedLibDeps: Record<string, string[]> = {
  netaddr: [],
  errors: [],
  contracts: ['netaddr'],
  log: [],
  bus: ['contracts', 'errors', 'log'],
  config: ['bus', 'contracts', 'errors', 'log'],
  'docker-cli': [],
  sync: [],
  'kernel-cmd': ['errors'],
  dns: ['netaddr'],
  metrics: ['errors', 'log'],
  testing: ['sync'],
};

test.each(services)('service %s imports no other service, and no relative path outside itself', (svc) => {
  for (const file of sources(join(root, 'services', svc))) {
    for (const imp of importsOf(file)) {
      const other = services.find((s) => s !== svc && imp === `@weave/${s}`);
      expect({ file: relative(root, file), imp, other }).toEqual({ file: relative(root, file), imp, other: undefined });
      if (imp.startsWith('.')) expect(join(file, '..', imp).startsWith(join(root, 'services', svc))).toBe(true);
    }
  }
});

test.each(libs)('lib %s depends only on the libs below it', (lib) => {
  const allowed = allowedLibDeps[lib];
  expect(allowed).toBeDefined();
  for (const file of sources(join(root, 'libs', lib, 'src'))) {
    for (const imp of importsOf(file).filter((i) => i.startsWith('@weave/'))) {
      expect({ file: relative(root, file), imp }).toEqual({ file: relative(root, file), imp: expect.stringMatching(new RegExp(`^@weave/(${[lib, ...allowed!].join('|')})$`)) });
    }
  }
});
