import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { EventKinds, ServiceNames } from '@weave/contracts';

/**
 * Every event a service publishes is declared, with its payload schema, in the contracts lib, so
 * a subscriber (`nats sub 'weave.>'`, `weave events`) can rely on the documented shapes. The
 * publisher's types already demand it; this also catches a kind built at run time or published
 * under another service's name, by reading each service's sources.
 */
const root = join(__dirname, '..', '..', '..');

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) return sources(p);
    return /\.ts$/.test(f) ? [p] : [];
  });
}

test.each(ServiceNames)('every event %s publishes has a schema in libs/contracts', (service) => {
  const declared = Object.keys(EventKinds[service]);
  const published = new Set<string>();
  for (const file of sources(join(root, 'services', service, 'src'))) {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/\bevents\.publish\(\s*([^,)]+)/g)) {
      const arg = m[1]!.trim();
      // A literal kind, checked by name; anything else would escape this check, so it is refused.
      const literal = /^'([a-z.]+)'$/.exec(arg);
      expect({ file: relative(root, file), kind: literal ? literal[1] : arg }).toEqual({ file: relative(root, file), kind: expect.stringMatching(/^[a-z.]+$/) });
      published.add(literal![1]!);
    }
  }
  expect(published.size).toBeGreaterThan(0);
  for (const kind of published) expect({ service, kind, declared: declared.includes(kind) }).toEqual({ service, kind, declared: true });
});

test('the README lists every event kind', () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('### NATS subjects'), readme.indexOf('### Configuration'));
  for (const service of ServiceNames) {
    for (const kind of Object.keys(EventKinds[service])) expect({ service, kind, listed: section.includes(kind) }).toEqual({ service, kind, listed: true });
  }
});
