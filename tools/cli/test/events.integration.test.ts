import { ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, NatsConnection } from '@nats-io/transport-node';
import { ensureEventHistory, EventPublisher } from '@weave/bus';
import { EventEnvelope } from '@weave/contracts';
import { silentLogger } from '@weave/log';
import { NatsServer, startNatsServer, waitFor } from '@weave/testing';

/**
 * `weave events --since`, the real command against a real nats-server (with client credentials,
 * as the stack has them): the history first, then live events, each exactly once.
 */
const BIN = join(__dirname, '..', 'bin', 'weave.mjs');
const credentials = { user: 'weave', password: 'p'.repeat(43) };
let server: NatsServer;
let nc: NatsConnection;
let dir: string;
const running: ChildProcess[] = [];

beforeAll(async () => {
  server = await startNatsServer({ credentials });
  nc = await connect({ servers: server.url, user: credentials.user, pass: credentials.password });
  dir = mkdtempSync(join(tmpdir(), 'weave-cli-'));
  writeFileSync(join(dir, 'creds'), JSON.stringify(credentials), { mode: 0o600 });
});
afterAll(async () => {
  await nc?.close();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});
afterEach(async () => {
  await Promise.all(running.splice(0).map(stop));
});

interface Cli {
  lines: string[];
  stderr(): string;
  exited: Promise<number | null>;
}

function weave(...args: string[]): Cli {
  const p = spawn(process.execPath, [BIN, ...args], {
    env: { ...process.env, WEAVE_NATS_URL: server.url, WEAVE_NATS_CREDS_FILE: join(dir, 'creds'), WEAVE_HOST: 'tester' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.push(p);
  const cli: Cli = { lines: [], stderr: () => err, exited: new Promise((r) => p.once('exit', (code) => r(code))) };
  let out = '';
  let err = '';
  p.stdout!.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    const cut = out.lastIndexOf('\n');
    if (cut < 0) return;
    cli.lines.push(...out.slice(0, cut).split('\n'));
    out = out.slice(cut + 1);
  });
  p.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  return cli;
}

async function stop(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise((r) => p.once('exit', r));
  p.kill('SIGINT');
  await exited;
}

const publisher = (host: string) => new EventPublisher(nc, host, 'ipam', silentLogger());
const started = (p: EventPublisher<'ipam'>) => p.publish('service.started', { version: '1', pid: 1 });
const seqs = (lines: string[]) => lines.map((l) => (JSON.parse(l) as EventEnvelope).seq);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('without the history (a stack older than --since), it says so', async () => {
  const cli = weave('events', '--since', '5m');
  expect(await cli.exited).toBe(1);
  expect(cli.stderr()).toMatch(/^weave: no event history: JetStream has no stream WEAVE_EVENTS \(netwire makes it at start/);
}, 20_000);

describe('with the history', () => {
  beforeAll(() => ensureEventHistory(nc, { replicas: 1, log: silentLogger() }));

  test('--since: the stored events, then the live ones, with events published all through the start: none missed, none twice', async () => {
    const h = publisher('seam');
    for (let i = 0; i < 5; i++) started(h);
    await nc.flush();
    // Publish without pause while the command starts, reads the history and goes live.
    let publishing = true;
    let published = 5;
    const pump = (async () => {
      while (publishing) {
        started(h);
        published++;
        await sleep(5);
      }
    })();
    const cli = weave('events', 'seam', '--since', '1m', '--json');
    await waitFor(() => cli.lines.length >= 10, { what: 'the history and the first live events', timeoutMs: 20_000 });
    await sleep(300);
    publishing = false;
    await pump;
    await nc.flush();
    await waitFor(() => cli.lines.length >= published, { what: `all ${published} events` });
    await sleep(200);
    expect(seqs(cli.lines)).toEqual(Array.from({ length: published }, (_, i) => i + 1));
  }, 30_000);

  test('--since <RFC3339 time> with a filter: only what was stored since then and matches, in the usual format', async () => {
    const [a, b] = [publisher('a'), publisher('b')];
    started(a), started(b);
    await nc.flush();
    await sleep(50);
    const since = new Date().toISOString();
    await sleep(50);
    started(a), started(b);
    await nc.flush();
    const cli = weave('events', 'b.ipam', '--since', since);
    await waitFor(() => cli.lines.length >= 1, { what: 'the history', timeoutMs: 20_000 });
    started(a), started(b);
    await waitFor(() => cli.lines.length >= 2, { what: 'a live event' });
    await sleep(200);
    expect(cli.lines.map((l) => l.replace(/^\S+/, '<time>'))).toEqual(['<time>  b  ipam  service.started  version=1 pid=1', '<time>  b  ipam  service.started  version=1 pid=1']);
  }, 30_000);
});

test('a bad --since is refused before connecting, saying what it takes', async () => {
  const cli = weave('events', '--since', 'yesterday');
  expect(await cli.exited).toBe(1);
  expect(cli.stderr()).toMatch(/^weave: ✖ --since "yesterday": expected a duration \(90s, 15m, 1h30m, 2d\) or an RFC3339 time/);
}, 20_000);
