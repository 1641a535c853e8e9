import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureNatsCredentials, NATS_CLIENT_SECRET_FILE, natsAuth, readClusterSecret, readMeshPassword, readNatsCredentials, routeCredentials } from '../src';

const SECRET = 'a'.repeat(16) + 'b'.repeat(16) + 'c'.repeat(32);
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'weave-secrets-test-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const mode = (p: string) => statSync(p).mode & 0o777;

describe('ensureNatsCredentials (the `secrets` service at install)', () => {
  it('makes the directory and the file root-only, and never replaces an existing file', () => {
    const secrets = join(dir, 'weave');
    const first = ensureNatsCredentials(secrets);
    expect(first.user).toBe('weave');
    expect(first.password).toMatch(/^[0-9a-f]{64}$/);
    expect(mode(secrets)).toBe(0o700);
    expect(mode(join(secrets, NATS_CLIENT_SECRET_FILE))).toBe(0o600);
    expect(ensureNatsCredentials(secrets)).toEqual(first);
    expect(readNatsCredentials(join(secrets, NATS_CLIENT_SECRET_FILE))).toEqual(first);
  });

  it('closes a directory Docker made for the bind mount (0755) to everyone but its owner', () => {
    const secrets = join(dir, 'weave');
    mkdirSync(secrets, { mode: 0o755 });
    chmodSync(secrets, 0o755);
    ensureNatsCredentials(secrets);
    expect(mode(secrets)).toBe(0o700);
  });

  it('reports a broken existing file instead of overwriting it', () => {
    writeFileSync(join(dir, NATS_CLIENT_SECRET_FILE), '{"user":"weave"}', { mode: 0o600 });
    expect(() => ensureNatsCredentials(dir)).toThrow(/malformed.*password.*remove it and run `docker compose/);
    expect(readFileSync(join(dir, NATS_CLIENT_SECRET_FILE), 'utf8')).toBe('{"user":"weave"}');
  });
});

describe('readNatsCredentials (every service at start)', () => {
  const file = () => join(dir, NATS_CLIENT_SECRET_FILE);
  it('says how to make a missing file, or how to run without one', () => {
    expect(() => readNatsCredentials(file())).toThrow(/does not exist: `docker compose -f compose\/host.yml up -d` makes it.*unset/);
  });
  it('refuses a file others can read, saying how to close it', () => {
    writeFileSync(file(), JSON.stringify({ user: 'weave', password: 'x'.repeat(40) }), { mode: 0o644 });
    chmodSync(file(), 0o644);
    expect(() => readNatsCredentials(file())).toThrow(`mode 0644): chmod 600 ${file()}`);
  });
  it.each([
    ['not JSON', 'weave:secret', /is not JSON/],
    ['a short password', JSON.stringify({ user: 'weave', password: 'short' }), /malformed.*at least 32/],
    ['characters that would need quoting', JSON.stringify({ user: 'weave', password: `${'x'.repeat(32)}"@` }), /malformed/],
    ['unknown fields', JSON.stringify({ user: 'weave', password: 'x'.repeat(32), token: 'y' }), /malformed/],
  ])('refuses %s', (_, text, why) => {
    writeFileSync(file(), text, { mode: 0o600 });
    expect(() => readNatsCredentials(file())).toThrow(why);
  });
  it('natsAuth: none without WEAVE_NATS_CREDS_FILE, the file’s user and password with it', () => {
    expect(natsAuth({})).toEqual({});
    const c = ensureNatsCredentials(dir);
    expect(natsAuth({ WEAVE_NATS_CREDS_FILE: file() })).toEqual({ user: 'weave', pass: c.password });
  });
});

describe('readClusterSecret', () => {
  const file = () => join(dir, 'cluster.secret');
  it('is null when there is neither variable nor file', () => {
    expect(readClusterSecret({ dir })).toBeNull();
    expect(readClusterSecret({ dir, env: '' })).toBeNull();
  });
  it('takes the variable or the file (trimmed, as `openssl rand -hex 32 >` writes it)', () => {
    expect(readClusterSecret({ dir, env: SECRET })).toBe(SECRET);
    writeFileSync(file(), `${SECRET}\n`, { mode: 0o600 });
    expect(readClusterSecret({ dir })).toBe(SECRET);
    expect(readClusterSecret({ dir, env: SECRET })).toBe(SECRET);
  });
  it('refuses a variable and a file that differ', () => {
    writeFileSync(file(), SECRET, { mode: 0o600 });
    expect(() => readClusterSecret({ dir, env: SECRET.replace('a', 'd') })).toThrow(/WEAVE_CLUSTER_SECRET and .*cluster.secret differ/);
  });
  it('refuses a weak secret with the command that makes a good one', () => {
    expect(() => readClusterSecret({ dir, env: 'password' })).toThrow(/at least 32 characters.*openssl rand -hex 32/);
  });
  it('refuses a file others can read', () => {
    writeFileSync(file(), SECRET, { mode: 0o640 });
    chmodSync(file(), 0o640);
    expect(() => readClusterSecret({ dir })).toThrow(/chmod 600/);
  });
  it('derives route credentials from the secret, not the secret itself', () => {
    const r = routeCredentials(SECRET);
    expect(r.password).toMatch(/^[0-9a-f]{64}$/);
    expect(r.password).not.toContain(SECRET);
    expect(routeCredentials(SECRET)).toEqual(r);
    expect(routeCredentials(SECRET.replace('a', 'd')).password).not.toBe(r.password);
  });
});

describe('readMeshPassword', () => {
  const file = () => join(dir, 'password');
  it('is null without variable or file: the mesh is not encrypted', () => {
    expect(readMeshPassword({ dir })).toBeNull();
  });
  it('takes the variable or the root-only file, trimmed, and refuses the two differing', () => {
    expect(readMeshPassword({ dir, env: 'correct horse' })).toBe('correct horse');
    writeFileSync(file(), 'correct horse\n', { mode: 0o600 });
    expect(readMeshPassword({ dir })).toBe('correct horse');
    expect(() => readMeshPassword({ dir, env: 'battery staple' })).toThrow(/WEAVE_PASSWORD and .*password differ/);
  });
  it('refuses an unusable one without saying it', () => {
    const long = 'x'.repeat(1025);
    expect(() => readMeshPassword({ dir, env: long })).toThrow(/longer than 1024 bytes/);
    try {
      readMeshPassword({ dir, env: long });
    } catch (e) {
      expect((e as Error).message).not.toContain(long);
    }
  });
});
