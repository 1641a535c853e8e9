/**
 * A simulated mesh of N Docker hosts on this machine, each a real dockerd running weave's stack.
 *
 *   netns wvunder        holds the underlay: bridge wvunder0 and one veth wvu<i> per host. Its
 *                        own netns, so the machine's iptables (FORWARD DROP + br_netfilter) never
 *                        sees underlay frames and nothing of the mesh appears in the root netns.
 *   netns wvh<i>         host i: lo, eth0 = 10.254.254.<10+i>/24 (UNDERLAY_CIDR, reserved for this
 *                        simulation), and a dockerd (+ its own containerd) in a private mount
 *                        namespace where /run/docker/plugins, /run/docker.sock, /run/containerd
 *                        and /etc/machine-id are host i's own (sources under /run/wvh<i>/).
 *   /var/lib/wvh<i>      host i's data root; /run/wvh<i> its exec root, socket, pidfile, plugins.
 *
 * Each host runs `docker compose -f compose/host.yml -p weave up -d` with WEAVE_HOST=host<i>,
 * WEAVE_PEERS=<the other hosts' underlay addresses> and WEAVE_SECRETS_DIR=/run/wvh<i>/weave (its
 * NATS client credentials, and cluster.secret: one per mesh, copied to every host): services on
 * network_mode host land in wvh<i>, its nats-server joins the others' as a cluster. Images come
 * from the machine's engine (`docker save`, cached in IMAGE_CACHE by image ids, then `docker
 * load` on each host).
 */
import { ChildProcess, spawn, execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';

export const ROOT = join(__dirname, '..', '..', '..');
export const UNDERLAY_NS = 'wvunder';
export const UNDERLAY_BRIDGE = 'wvunder0';
/** Used nowhere else on this machine or in the project: the simulated hosts' underlay. */
export const UNDERLAY_CIDR = '10.254.254.0/24';
export const IMAGE_CACHE = '/var/cache/weave-mesh';
export const LOG_DIR = '/var/log/weave-mesh';
/** Besides the images of compose/host.yml's services: the workload image tests run. */
export const WORKLOAD_IMAGE = 'weave-bbox:local';
const COMPOSE_FILE = join(ROOT, 'compose', 'host.yml');
const MAIN_ENGINE = { DOCKER_HOST: 'unix:///var/run/docker.sock', WEAVE_BASE_IMAGE: process.env.WEAVE_BASE_IMAGE || 'weave-base:local' };
const PROJECT = 'weave';
const MAX_HOSTS = 200;

export const hostNs = (n: number): string => `wvh${n}`;
export const hostRun = (n: number): string => `/run/wvh${n}`;
export const hostData = (n: number): string => `/var/lib/wvh${n}`;
export const hostSocket = (n: number): string => `${hostRun(n)}/docker.sock`;
/** DOCKER_HOST for simulated host n (1-based). */
export const hostDocker = (n: number): string => `unix://${hostSocket(n)}`;
export const hostName = (n: number): string => `host${n}`;
export const hostAddress = (n: number): string => `10.254.254.${10 + n}`;
export const pluginSocket = (n: number, plugin = 'weave'): string => `${hostRun(n)}/plugins/${plugin}.sock`;

export interface MeshOptions {
  hosts?: number;
  log?: (msg: string) => void;
  /** Extra environment for every host's `docker compose up` (e.g. WEAVE_LOG_LEVEL). */
  env?: Record<string, string>;
  /**
   * Bundle the services and `docker compose build` the images on the machine's engine first, so
   * the mesh runs this checkout (~3 s when nothing changed). Default true.
   */
  build?: boolean;
  /** The mesh password of each host (its secrets dir's `password` file); a host left out has none. */
  passwords?: Record<number, string>;
}

export interface MeshTimings {
  total: number;
  [step: string]: number;
}

// ---------------------------------------------------------------------------------------------
// small process helpers

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function exec(cmd: string, args: readonly string[], o: { env?: Record<string, string>; timeoutMs?: number; cwd?: string } = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(
      cmd,
      args,
      { env: { ...process.env, PATH: sbinPath(), ...o.env }, timeout: o.timeoutMs ?? 120_000, maxBuffer: 64 << 20, cwd: o.cwd ?? ROOT },
      (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout: String(stdout), stderr: String(stderr) || (err ? err.message : '') }),
    );
  });
}

async function must(cmd: string, args: readonly string[], o: Parameters<typeof exec>[2] = {}): Promise<string> {
  const r = await exec(cmd, args, o);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout.trim();
}

function sbinPath(): string {
  const parts = (process.env.PATH ?? '').split(':').filter(Boolean);
  for (const d of ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin']) if (!parts.includes(d)) parts.push(d);
  return parts.join(':');
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitUntil<T>(probe: () => Promise<T | null | undefined | false>, what: string, timeoutMs: number, intervalMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last instanceof Error ? `: ${last.message}` : ''}`);
    await sleep(intervalMs);
  }
}

/** docker CLI against simulated host n. */
export function hostDockerCli(n: number, args: readonly string[], o: { timeoutMs?: number; env?: Record<string, string> } = {}): Promise<string> {
  return must('docker', args, { timeoutMs: o.timeoutMs, env: { ...o.env, DOCKER_HOST: hostDocker(n) } });
}

function dockerPing(socketPath: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    if (!existsSync(socketPath)) return resolve(false);
    const req = request({ socketPath, path: '/_ping', timeout: timeoutMs }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('timeout', () => (req.destroy(), resolve(false)));
    req.on('error', () => resolve(false));
    req.end();
  });
}

function pluginAnswers(socketPath: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ socketPath, path: '/Plugin.Activate', method: 'POST', timeout: timeoutMs, headers: { 'Content-Length': 0 } }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('timeout', () => (req.destroy(), resolve(false)));
    req.on('error', () => resolve(false));
    req.end();
  });
}

/** Runs a command in host n's network namespace (and, when `mount`, its dockerd's mount namespace). */
export function inHost(n: number, cmd: string, args: readonly string[], o: { mount?: boolean; timeoutMs?: number; env?: Record<string, string> } = {}): Promise<RunResult> {
  const ns = [`--net=/run/netns/${hostNs(n)}`];
  if (o.mount) {
    const pid = dockerdPid(n);
    if (!pid) return Promise.resolve({ code: -1, stdout: '', stderr: `dockerd of ${hostName(n)} is not running` });
    ns.push(`--mount=/proc/${pid}/ns/mnt`);
  }
  return exec('nsenter', [...ns, '--', cmd, ...args], { timeoutMs: o.timeoutMs, env: o.env });
}

function dockerdPid(n: number): number | null {
  try {
    const pid = Number(readFileSync(`${hostRun(n)}/docker.pid`, 'utf8').trim());
    if (pid > 0 && readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'dockerd') return pid;
  } catch {
    /* not running */
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// NATS, seen from inside a host (its monitoring port listens on 127.0.0.1 of that netns)

export interface NatsView {
  server: string;
  /** The server's id, as other servers' `routes` name it. */
  id: string;
  /** The remote server ids of this server's routes. */
  routes: string[];
  jetstream: { leader: string | null; clusterSize: number | null };
}

/** nats-server's /routez and /jsz of host n, fetched from inside its netns. */
export async function natsView(n: number): Promise<NatsView> {
  const script = `
    const http = require('node:http');
    const get = (p) => new Promise((res, rej) => http.get({ host: '127.0.0.1', port: 8222, path: p, timeout: 2000 }, (r) => {
      let b = ''; r.setEncoding('utf8'); r.on('data', (c) => (b += c)); r.on('end', () => { try { res(JSON.parse(b)); } catch (e) { rej(e); } });
    }).on('error', rej));
    Promise.all([get('/routez'), get('/jsz'), get('/varz')]).then(([r, j, v]) => console.log(JSON.stringify({
      server: v.server_name, id: v.server_id, routes: (r.routes || []).map((x) => x.remote_name || x.remote_id || x.ip),
      jetstream: { leader: (j.meta_cluster && j.meta_cluster.leader) || null, clusterSize: (j.meta_cluster && j.meta_cluster.cluster_size) || null },
    })), (e) => { console.error(String(e && e.message || e)); process.exit(1); });`;
  const r = await inHost(n, process.execPath, ['-e', script], { timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`NATS monitoring of ${hostName(n)}: ${r.stderr.trim()}`);
  return JSON.parse(r.stdout) as NatsView;
}

/** Runs `weave <args>` (the CLI in the plugin-api image) against host n's NATS. */
export function weaveCli(n: number, args: readonly string[]): Promise<string> {
  return hostDockerCli(n, pluginApiExec(['weave', ...args]), { timeoutMs: 30_000 });
}

/** Like weaveCli, with the exit code and both outputs: `weave status` exits 1, its report printed, while a host does not answer. */
export function weaveCliResult(n: number, args: readonly string[]): Promise<RunResult> {
  return exec('docker', pluginApiExec(['weave', ...args]), { env: { DOCKER_HOST: hostDocker(n) }, timeoutMs: 30_000 });
}

/**
 * docker arguments (with DOCKER_HOST = hostDocker(n)) that run `cmd` in a host's plugin-api
 * container, where the weave CLI is: for a caller that reads its output as it comes.
 */
export const pluginApiExec = (cmd: readonly string[]): string[] => ['compose', '-p', PROJECT, '-f', COMPOSE_FILE, 'exec', '-T', 'plugin-api', ...cmd];

// ---------------------------------------------------------------------------------------------
// mesh up

/** Numbers of the simulated hosts present on this machine (from /run/wvh*, netns and data dirs). */
export function presentHosts(): number[] {
  const found = new Set<number>();
  const scan = (dir: string, re: RegExp) => {
    try {
      for (const e of readdirSync(dir)) {
        const m = re.exec(e);
        if (m) found.add(Number(m[1]));
      }
    } catch {
      /* absent */
    }
  };
  scan('/run', /^wvh(\d+)$/);
  scan('/run/netns', /^wvh(\d+)$/);
  scan('/var/lib', /^wvh(\d+)$/);
  return [...found].sort((a, b) => a - b);
}

export async function meshUp(o: MeshOptions = {}): Promise<MeshTimings> {
  const hosts = o.hosts ?? 3;
  const log = o.log ?? (() => {});
  if (!Number.isInteger(hosts) || hosts < 1 || hosts > MAX_HOSTS) throw new Error(`hosts must be 1..${MAX_HOSTS}, not ${hosts}`);
  if (process.getuid?.() !== 0) throw new Error('the mesh needs root (namespaces, dockerd)');
  const extra = presentHosts().filter((n) => n > hosts);
  if (extra.length) throw new Error(`hosts ${extra.join(', ')} exist beyond ${hosts}: run mesh down first`);
  const t: MeshTimings = { total: 0 };
  const t0 = Date.now();
  const step = async <T>(name: string, f: () => Promise<T>): Promise<T> => {
    const s = Date.now();
    const v = await f();
    t[name] = Date.now() - s;
    log(`${name}: ${((Date.now() - s) / 1000).toFixed(1)} s`);
    return v;
  };
  const ns = Array.from({ length: hosts }, (_, i) => i + 1);

  if (o.build ?? true) await step('build', () => buildImages());
  const ids = await step('check images', () => localImageIds());
  await step('underlay', async () => {
    await ensureUnderlay();
    for (const n of ns) await ensureHostNetns(n);
  });
  await step('dockerds', () => Promise.all(ns.map((n) => ensureDockerd(n))));
  await step('images', () => loadImages(ns, ids, log));
  await step('secrets', async () => {
    shareClusterSecret(ns);
    setPasswords(ns, o.passwords ?? {});
  });
  await step('stacks', () => Promise.all(ns.map((n) => composeUp(n, ns, o.env ?? {}))));
  await step('ready', () => Promise.all(ns.map((n) => waitReady(n, hosts))));
  t.total = Date.now() - t0;
  log(`mesh of ${hosts} host(s) up in ${(t.total / 1000).toFixed(1)} s; underlay ${UNDERLAY_CIDR}: ${ns.map((n) => `${hostName(n)}=${hostAddress(n)}`).join(' ')}`);
  return t;
}

/** dist/ bundles from the sources, then the stack's images on the machine's engine (layer-cached). */
async function buildImages(): Promise<void> {
  await must(process.execPath, [join(ROOT, 'tools/build/bundle.mjs')], { timeoutMs: 120_000 });
  const nats = join(ROOT, 'dist/nats/nats-server');
  if (!existsSync(nats)) {
    const bin = (await exec('sh', ['-c', 'command -v nats-server'])).stdout.trim();
    if (!bin) throw new Error('nats-server is not installed (npm start installs it)');
    mkdirSync(join(ROOT, 'dist/nats'), { recursive: true });
    copyFileSync(bin, nats);
  }
  await must('docker', ['compose', '-f', COMPOSE_FILE, 'build', '--quiet'], { env: MAIN_ENGINE, timeoutMs: 600_000 });
}

/** The images every host needs: compose/host.yml's and the workload image. */
async function neededImages(): Promise<string[]> {
  const out = await must('docker', ['compose', '-f', COMPOSE_FILE, 'config', '--images'], { env: MAIN_ENGINE });
  return [...new Set([...out.split('\n').map((l) => l.trim()).filter(Boolean), WORKLOAD_IMAGE])].sort();
}

async function localImageIds(): Promise<Record<string, string>> {
  const ids: Record<string, string> = {};
  for (const img of await neededImages()) {
    const r = await exec('docker', ['image', 'inspect', '-f', '{{.Id}}', img], { env: MAIN_ENGINE });
    if (r.code !== 0) throw new Error(`image ${img} is missing on this machine's engine: run \`npm start\` (or tools/mesh up without --no-build) first`);
    ids[img] = r.stdout.trim();
  }
  return ids;
}

async function linkExists(ns: string, dev: string): Promise<boolean> {
  return (await exec('ip', ['-n', ns, 'link', 'show', dev])).code === 0;
}

async function netnsExists(name: string): Promise<boolean> {
  return existsSync(`/run/netns/${name}`) && (await exec('ip', ['-n', name, 'link', 'show', 'lo'])).code === 0;
}

async function ensureUnderlay(): Promise<void> {
  if (!(await netnsExists(UNDERLAY_NS))) {
    await exec('ip', ['netns', 'del', UNDERLAY_NS]);
    await must('ip', ['netns', 'add', UNDERLAY_NS]);
  }
  if (!(await linkExists(UNDERLAY_NS, UNDERLAY_BRIDGE))) await must('ip', ['-n', UNDERLAY_NS, 'link', 'add', UNDERLAY_BRIDGE, 'type', 'bridge']);
  await must('ip', ['-n', UNDERLAY_NS, 'link', 'set', UNDERLAY_BRIDGE, 'up']);
  await must('ip', ['-n', UNDERLAY_NS, 'link', 'set', 'lo', 'up']);
}

async function ensureHostNetns(n: number): Promise<void> {
  const ns = hostNs(n);
  if (!(await netnsExists(ns))) {
    await exec('ip', ['netns', 'del', ns]);
    await must('ip', ['netns', 'add', ns]);
  }
  const uplink = `wvu${n}`;
  if (!(await linkExists(ns, 'eth0'))) {
    await exec('ip', ['-n', UNDERLAY_NS, 'link', 'del', uplink]);
    await must('ip', ['-n', UNDERLAY_NS, 'link', 'add', uplink, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
  }
  await must('ip', ['-n', UNDERLAY_NS, 'link', 'set', uplink, 'master', UNDERLAY_BRIDGE, 'up']);
  await must('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  await must('ip', ['-n', ns, 'addr', 'replace', `${hostAddress(n)}/24`, 'dev', 'eth0']);
  await must('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
}

async function ensureDockerd(n: number, readyMs = 60_000): Promise<void> {
  const run = hostRun(n);
  if (dockerdPid(n) && (await dockerPing(hostSocket(n)))) return;
  if (dockerdPid(n)) {
    await waitUntil(() => dockerPing(hostSocket(n)), `dockerd of ${hostName(n)}`, 60_000);
    return;
  }
  for (const d of ['plugins', 'exec', 'containerd']) mkdirSync(join(run, d), { recursive: true });
  mkdirSync(hostData(n), { recursive: true });
  mkdirSync(LOG_DIR, { recursive: true });
  mkdirSync('/run/docker/plugins', { recursive: true });
  mkdirSync('/run/containerd', { recursive: true });
  if (!existsSync(`${run}/machine-id`)) writeFileSync(`${run}/machine-id`, randomBytes(16).toString('hex') + '\n');
  writeFileSync(`${run}/daemon.json`, '{}\n');
  // The host's resolver is the simulation's own (withResolver), never the machine's.
  writeFileSync(`${run}/resolv.conf`, `nameserver ${RESOLVER_ADDRESS}\n`);
  // /run/docker.sock: a placeholder now, bound over by this host's own socket once it exists,
  // so containers that mount /var/run/docker.sock (plugin-api) reach their own engine.
  const logFile = `${LOG_DIR}/${hostNs(n)}-dockerd.log`;
  const fd = openSync(logFile, 'a');
  // The mount namespace is private (unshare's default propagation), so none of these binds is
  // visible outside, and they vanish with the last process of the namespace.
  const script = [
    'set -e',
    `mount --bind ${run}/plugins /run/docker/plugins`,
    `mount --bind ${run}/containerd /run/containerd`,
    `mount --bind ${run}/machine-id /etc/machine-id`,
    `mount --bind ${run}/resolv.conf /etc/resolv.conf`,
    `exec nsenter --net=/run/netns/${hostNs(n)} dockerd --config-file ${run}/daemon.json --data-root ${hostData(n)} --exec-root ${run}/exec` +
      ` -H unix://${hostSocket(n)} --pidfile ${run}/docker.pid --bridge=none --iptables=false --ip6tables=false --ip-forward=false` +
      ` --cgroup-parent=/${hostNs(n)} --containerd-namespace=${hostNs(n)} --containerd-plugins-namespace=${hostNs(n)}-plugins`,
  ].join('\n');
  const child: ChildProcess = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script], {
    detached: true,
    stdio: ['ignore', fd, fd],
    env: { ...process.env, PATH: sbinPath() },
    cwd: '/',
  });
  closeSync(fd);
  let exited: string | null = null;
  child.on('exit', (code, sig) => (exited = sig ?? `exit ${code}`));
  child.unref();
  await waitUntil(
    async () => {
      if (exited) throw new Error(`dockerd of ${hostName(n)} exited (${exited}); see ${logFile}`);
      return dockerPing(hostSocket(n));
    },
    `dockerd of ${hostName(n)} on ${hostSocket(n)} (log ${logFile})`,
    readyMs,
    100,
  );
  const r = await inHost(n, 'mount', ['--bind', hostSocket(n), '/run/docker.sock'], { mount: true });
  if (r.code !== 0) throw new Error(`binding ${hostSocket(n)} over /run/docker.sock for ${hostName(n)}: ${r.stderr.trim()}`);
}

async function hostImageIds(n: number, images: string[]): Promise<Record<string, string>> {
  const ids: Record<string, string> = {};
  for (const img of images) {
    const r = await exec('docker', ['image', 'inspect', '-f', '{{.Id}}', img], { env: { DOCKER_HOST: hostDocker(n) } });
    if (r.code === 0) ids[img] = r.stdout.trim();
  }
  return ids;
}

/**
 * Gives every host the machine's images. A host that already has them (same ids) is skipped; the
 * `docker save` tarball is kept in IMAGE_CACHE under a hash of the ids, so a cold mesh after a
 * `mesh down` only loads.
 */
async function loadImages(ns: number[], ids: Record<string, string>, log: (m: string) => void): Promise<void> {
  const images = Object.keys(ids).sort();
  const stale = [];
  for (const n of ns) {
    const have = await hostImageIds(n, images);
    if (images.some((i) => have[i] !== ids[i])) stale.push(n);
  }
  if (!stale.length) return;
  const key = createHash('sha256').update(images.map((i) => `${i}=${ids[i]}`).join('\n')).digest('hex').slice(0, 16);
  const tar = `${IMAGE_CACHE}/images-${key}.tar`;
  if (!existsSync(tar)) {
    mkdirSync(IMAGE_CACHE, { recursive: true });
    for (const f of readdirSync(IMAGE_CACHE)) if (/^images-.*\.tar(\.part)?$/.test(f)) rmSync(join(IMAGE_CACHE, f), { force: true });
    log(`saving ${images.join(', ')} to ${tar}`);
    await must('docker', ['save', '-o', `${tar}.part`, ...images], { timeoutMs: 300_000, env: MAIN_ENGINE });
    await must('mv', [`${tar}.part`, tar]);
  }
  log(`loading images into ${stale.map(hostName).join(', ')}`);
  await Promise.all(stale.map((n) => must('docker', ['load', '-q', '-i', tar], { timeoutMs: 300_000, env: { DOCKER_HOST: hostDocker(n) } })));
}

/** Host n's WEAVE_SECRETS_DIR: its NATS client credentials, and the mesh's cluster secret. */
const hostSecrets = (n: number): string => `${hostRun(n)}/weave`;

/**
 * Gives every host the mesh's cluster secret, as an operator copies one file to each host: the one
 * a host of this mesh already has (so a second `up` keeps the running servers' secret), else a new
 * one. Root's only, like the rest of the secrets directory.
 */
function shareClusterSecret(ns: number[]): void {
  const file = (n: number) => `${hostSecrets(n)}/cluster.secret`;
  const existing = presentHosts().map(file).find((f) => existsSync(f));
  const secret = existing ? readFileSync(existing, 'utf8').trim() : randomBytes(32).toString('hex');
  for (const n of ns) {
    mkdirSync(hostSecrets(n), { recursive: true, mode: 0o700 });
    if (!existsSync(file(n))) writeFileSync(file(n), `${secret}\n`, { mode: 0o600 });
  }
}

/** Each host's password file as `passwords` says: written root-only, or removed (no encryption). */
function setPasswords(ns: number[], passwords: Record<number, string>): void {
  for (const n of ns) {
    const file = `${hostSecrets(n)}/password`;
    rmSync(file, { force: true });
    if (passwords[n] !== undefined) writeFileSync(file, `${passwords[n]}\n`, { mode: 0o600 });
  }
}

function composeEnv(n: number, ns: number[], extra: Record<string, string>): Record<string, string> {
  return {
    WEAVE_HOST: hostName(n),
    WEAVE_SECRETS_DIR: hostSecrets(n),
    WEAVE_BASE_IMAGE: 'weave-base:local',
    WEAVE_PEERS: ns.filter((m) => m !== n).map(hostAddress).join(','),
    WEAVE_ADVERTISE_ADDR: hostAddress(n),
    // Its own engine's socket by a path that is right from the moment dockerd starts: the bind
    // over /run/docker.sock (below) comes only once dockerd answers, after it restarted the stack,
    // and a plugin-api started before it would reconcile against the machine's own dockerd.
    WEAVE_DOCKER_SOCKET: hostSocket(n),
    ...extra,
    DOCKER_HOST: hostDocker(n),
  };
}

async function composeUp(n: number, ns: number[], extra: Record<string, string>): Promise<void> {
  await must('docker', ['compose', '-f', COMPOSE_FILE, '-p', PROJECT, 'up', '-d', '--no-build', '--pull', 'never', '--quiet-pull'], {
    env: composeEnv(n, ns, extra),
    timeoutMs: 180_000,
  });
}

async function waitReady(n: number, hosts: number): Promise<void> {
  await waitUntil(() => pluginAnswers(pluginSocket(n)), `weave plugin of ${hostName(n)} on ${pluginSocket(n)}`, 60_000);
  if (hosts > 1) {
    await waitUntil(
      async () => {
        const v = await natsView(n);
        return v.routes.length >= hosts - 1 && v.jetstream.leader ? v : null;
      },
      `NATS of ${hostName(n)} to route to ${hosts - 1} peer(s) and see a JetStream leader`,
      60_000,
      300,
    );
  }
  // ipam and netwire answer once their KV buckets are open (they need JetStream, clustered or not);
  // ipam allocates once it has registered this host (a write that needs the KV's quorum).
  await waitUntil(
    async () => {
      const r = await exec('docker', ['compose', '-p', PROJECT, '-f', COMPOSE_FILE, 'exec', '-T', 'plugin-api', 'weave', 'status', '--json'], {
        env: { DOCKER_HOST: hostDocker(n), WEAVE_HOST: hostName(n) },
        timeoutMs: 15_000,
      });
      if (r.code !== 0) return false;
      const hosts = (JSON.parse(r.stdout) as { ipam?: { hosts?: Array<{ host: string; state: string }> } }).ipam?.hosts ?? [];
      return hosts.some((h) => h.host === hostName(n) && h.state === 'live');
    },
    `ipam and netwire of ${hostName(n)} to answer \`weave status\`, ipam registered`,
    90_000,
    500,
  );
}

/**
 * Runs the machine's `cmd` inside the network namespace of container `name` on host n: for
 * traffic the workload image has no tool for (busybox's nc has no UDP).
 */
export async function inContainerNet(n: number, name: string, cmd: string, args: readonly string[], o: { timeoutMs?: number } = {}): Promise<RunResult> {
  const pid = (await hostDockerCli(n, ['inspect', '-f', '{{.State.Pid}}', name])).trim();
  if (!/^[1-9]\d*$/.test(pid)) throw new Error(`container ${name} on ${hostName(n)} is not running`);
  return exec('nsenter', [`--net=/proc/${pid}/ns/net`, '--', cmd, ...args], { timeoutMs: o.timeoutMs });
}

// ---------------------------------------------------------------------------------------------
// a machine on the underlay that is not a weave host

export const INTRUDER_NS = 'wvintruder';
export const INTRUDER_ADDRESS = '10.254.254.200';

/**
 * Runs `f` with a namespace plugged into the underlay at INTRUDER_ADDRESS, which no weave host
 * knows as a peer, and removes it afterwards (also when `f` fails).
 */
export async function withIntruder<T>(f: (ns: string) => Promise<T>): Promise<T> {
  await removeIntruder();
  await must('ip', ['netns', 'add', INTRUDER_NS]);
  try {
    await must('ip', ['-n', UNDERLAY_NS, 'link', 'add', 'wvuintr', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', INTRUDER_NS]);
    await must('ip', ['-n', UNDERLAY_NS, 'link', 'set', 'wvuintr', 'master', UNDERLAY_BRIDGE, 'up']);
    await must('ip', ['-n', INTRUDER_NS, 'addr', 'add', `${INTRUDER_ADDRESS}/24`, 'dev', 'eth0']);
    await must('ip', ['-n', INTRUDER_NS, 'link', 'set', 'eth0', 'up']);
    return await f(INTRUDER_NS);
  } finally {
    await removeIntruder();
  }
}

// ---------------------------------------------------------------------------------------------
// the hosts' upstream resolver

export const RESOLVER_NS = 'wvresolver';
/** Every simulated host's `nameserver` (its /etc/resolv.conf, bound over the machine's for its dockerd). */
export const RESOLVER_ADDRESS = '10.254.254.2';
const RESOLVER_LOG = `${LOG_DIR}/resolver.jsonl`;

export interface ResolverQuery {
  from: string;
  name: string;
  type: number;
}

/**
 * Runs `f` with the hosts' resolver up at RESOLVER_ADDRESS on the underlay (src/resolver.ts:
 * `*.upstream.test` resolves, nothing else does); `queries()` lists what it was asked. Removed
 * afterwards, also when `f` fails.
 */
export async function withResolver<T>(f: (r: { queries(): ResolverQuery[] }) => Promise<T>): Promise<T> {
  await removeResolver();
  mkdirSync(LOG_DIR, { recursive: true });
  writeFileSync(RESOLVER_LOG, '');
  await must('ip', ['netns', 'add', RESOLVER_NS]);
  const lines = (): Array<ResolverQuery & { ready?: boolean }> =>
    readFileSync(RESOLVER_LOG, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as ResolverQuery & { ready?: boolean });
  try {
    await must('ip', ['-n', UNDERLAY_NS, 'link', 'add', 'wvures', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', RESOLVER_NS]);
    await must('ip', ['-n', UNDERLAY_NS, 'link', 'set', 'wvures', 'master', UNDERLAY_BRIDGE, 'up']);
    await must('ip', ['-n', RESOLVER_NS, 'addr', 'add', `${RESOLVER_ADDRESS}/24`, 'dev', 'eth0']);
    await must('ip', ['-n', RESOLVER_NS, 'link', 'set', 'eth0', 'up']);
    const loader = join(ROOT, 'node_modules/tsx/dist/loader.mjs');
    const child = spawn('nsenter', [`--net=/run/netns/${RESOLVER_NS}`, '--', process.execPath, '--import', loader, join(__dirname, 'resolver.ts'), RESOLVER_ADDRESS, RESOLVER_LOG], {
      detached: true,
      stdio: 'ignore',
      cwd: ROOT,
    });
    child.unref();
    await waitUntil(async () => lines().some((l) => l.ready), `the hosts' resolver on ${RESOLVER_ADDRESS}`, 20_000, 100);
    return await f({ queries: () => lines().filter((l) => !l.ready) });
  } finally {
    await removeResolver();
  }
}

async function removeResolver(): Promise<void> {
  if (existsSync(`/run/netns/${RESOLVER_NS}`)) {
    await killNetnsProcesses(RESOLVER_NS);
    await exec('ip', ['netns', 'del', RESOLVER_NS]);
  }
  rmSync(RESOLVER_LOG, { force: true });
}

async function removeIntruder(): Promise<void> {
  if (existsSync(`/run/netns/${INTRUDER_NS}`)) {
    await killNetnsProcesses(INTRUDER_NS);
    await exec('ip', ['netns', 'del', INTRUDER_NS]);
  }
}

/**
 * Captures the underlay's UDP while `f` runs (tcpdump on the underlay bridge, which every host's
 * traffic crosses) and returns the payloads of the UDP datagrams to or from `port`.
 */
export async function captureUnderlay(port: number, f: () => Promise<void>): Promise<UdpDatagram[]> {
  const file = join(LOG_DIR, `capture-${process.pid}-${Date.now()}.pcap`);
  mkdirSync(LOG_DIR, { recursive: true });
  const dump = spawn('nsenter', [`--net=/run/netns/${UNDERLAY_NS}`, '--', 'tcpdump', '-i', UNDERLAY_BRIDGE, '-U', '-s', '0', '-w', file, 'udp', 'port', String(port)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let said = '';
  dump.stderr!.on('data', (d: Buffer) => (said += d.toString()));
  try {
    await waitUntil(async () => /listening on/.test(said) || dump.exitCode !== null, 'tcpdump to listen', 10_000, 50);
    if (dump.exitCode !== null) throw new Error(`tcpdump exited: ${said.trim()}`);
    await f();
  } finally {
    const gone = new Promise((r) => dump.once('exit', r));
    dump.kill('SIGINT');
    await gone;
  }
  const payloads = udpPayloads(readFileSync(file));
  rmSync(file, { force: true });
  return payloads;
}

export interface UdpDatagram {
  from: string;
  to: string;
  payload: Buffer;
}

/** The UDP datagrams in a pcap file of Ethernet frames with IPv4 (what tcpdump -w writes here). */
export function udpPayloads(pcap: Buffer): UdpDatagram[] {
  const out: UdpDatagram[] = [];
  for (let at = 24; at + 16 <= pcap.length; ) {
    const caught = pcap.readUInt32LE(at + 8);
    const frame = pcap.subarray(at + 16, at + 16 + caught);
    at += 16 + caught;
    if (frame.length < 42 || frame.readUInt16BE(12) !== 0x0800 || frame[23] !== 17) continue;
    const ihl = (frame[14]! & 0x0f) * 4;
    const ipEnd = 14 + frame.readUInt16BE(16);
    const ip = (at: number) => [...frame.subarray(at, at + 4)].join('.');
    out.push({ from: ip(26), to: ip(30), payload: frame.subarray(14 + ihl + 8, Math.min(ipEnd, frame.length)) });
  }
  return out;
}

/**
 * Sends `datagram` from the intruder's namespace as if from `from` (address:port of a weave host)
 * to `to`: the intruder takes the address and a static neighbour entry for `to`, so no ARP of it
 * reaches the underlay to confuse the real owner's neighbours.
 */
export async function sendAs(ns: string, from: { address: string; port: number }, to: { address: string; port: number; mac: string }, datagram: Buffer): Promise<void> {
  // Never answer ARP for the borrowed address: the real owner keeps it.
  await must('nsenter', [`--net=/run/netns/${ns}`, '--', 'sysctl', '-q', '-w', 'net.ipv4.conf.eth0.arp_ignore=8']);
  await must('ip', ['-n', ns, 'addr', 'add', `${from.address}/32`, 'dev', 'eth0']);
  await must('ip', ['-n', ns, 'neigh', 'replace', to.address, 'lladdr', to.mac, 'dev', 'eth0', 'nud', 'permanent']);
  const script = `const s = require('node:dgram').createSocket('udp4');
    s.bind(${from.port}, '${from.address}', () => s.send(Buffer.from('${datagram.toString('hex')}', 'hex'), ${to.port}, '${to.address}', (e) => (e ? (console.error(e.message), process.exit(1)) : s.close())));`;
  const r = await exec('nsenter', [`--net=/run/netns/${ns}`, '--', process.execPath, '-e', script], { timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`sending as ${from.address}:${from.port} from ${ns}: ${r.stderr.trim()}`);
}

/** The MAC of host n's underlay interface. */
export async function hostUnderlayMac(n: number): Promise<string> {
  const out = await must('ip', ['-n', hostNs(n), '-j', 'link', 'show', 'dev', 'eth0']);
  return (JSON.parse(out) as Array<{ address: string }>)[0]!.address;
}

/**
 * Sends `count` hostile UDP datagrams from namespace `ns` to address:port, alternating random
 * bytes and a sleeve header cut short, the two kinds a router must drop without harm.
 */
export async function sendGarbage(ns: string, address: string, port: number, count: number): Promise<void> {
  const script = `
    const s = require('node:dgram').createSocket('udp4');
    const crypto = require('node:crypto');
    const header = Buffer.from([0x57, 0x56, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0, 2]);
    let left = ${count};
    const next = () => {
      if (left-- === 0) return s.close();
      const d = left % 2 ? crypto.randomBytes(1 + (left % 200)) : header.subarray(0, 4 + (left % 14));
      s.send(d, ${port}, '${address}', (err) => (err ? (console.error(err.message), process.exit(1)) : next()));
    };
    next();`;
  const r = await exec('nsenter', [`--net=/run/netns/${ns}`, '--', process.execPath, '-e', script], { timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`sending garbage from ${ns}: ${r.stderr.trim()}`);
}

// ---------------------------------------------------------------------------------------------
// restarting one host

/**
 * Restarts simulated host n's Docker engine as a host's `systemctl restart docker` would: dockerd
 * stops (taking weave's stack and every other container down), starts again and restarts what has
 * a restart policy, weave's stack included. The network namespace, and so the kernel's links, stay.
 */
export async function restartHost(n: number, o: { hosts: number; log?: (msg: string) => void; env?: Record<string, string> }): Promise<void> {
  const log = o.log ?? (() => {});
  const pid = dockerdPid(n);
  if (!pid) throw new Error(`dockerd of ${hostName(n)} is not running`);
  process.kill(pid, 'SIGTERM');
  await waitUntil(async () => dockerdPid(n) === null, `dockerd of ${hostName(n)} to stop`, 30_000, 100);
  log(`${hostName(n)}: stack and dockerd stopped`);
  const ns = Array.from({ length: o.hosts }, (_, i) => i + 1);
  // A restarting dockerd cleans up the endpoints its containers had before it serves its API,
  // and looks for the weave plugin for each (15 s of retries per lookup) while weave's stack,
  // being containers of that same dockerd, is not up yet: allow for it.
  await ensureDockerd(n, 180_000);
  await composeUp(n, ns, o.env ?? {});
  await waitReady(n, o.hosts);
  log(`${hostName(n)}: dockerd and stack back`);
}

// ---------------------------------------------------------------------------------------------
// mesh down

/** Removes every simulated host and the underlay: stacks, dockerds, namespaces, veths, dirs. */
export async function meshDown(o: { log?: (msg: string) => void; purgeCache?: boolean } = {}): Promise<void> {
  const log = o.log ?? (() => {});
  const ns = presentHosts();
  await Promise.all(ns.map((n) => downHost(n, log)));
  await removeIntruder();
  await removeResolver();
  if (existsSync(`/run/netns/${UNDERLAY_NS}`)) {
    await killNetnsProcesses(UNDERLAY_NS);
    await exec('ip', ['netns', 'del', UNDERLAY_NS]);
  }
  try {
    if (readdirSync(LOG_DIR).length === 0) rmSync(LOG_DIR, { recursive: true });
  } catch {
    /* absent */
  }
  if (o.purgeCache) rmSync(IMAGE_CACHE, { recursive: true, force: true });
  if (ns.length) log(`removed ${ns.map(hostName).join(', ')} and the underlay`);
}

async function downHost(n: number, log: (m: string) => void): Promise<void> {
  const pid = dockerdPid(n);
  if (pid && (await dockerPing(hostSocket(n)))) {
    // Stop the stack gracefully (netwire tidies up), after removing whatever else runs there.
    const others = await exec('docker', ['ps', '-aq', '--filter', `label=com.docker.compose.project=${PROJECT}`], { env: { DOCKER_HOST: hostDocker(n) } });
    const all = await exec('docker', ['ps', '-aq'], { env: { DOCKER_HOST: hostDocker(n) } });
    const ours = new Set(others.stdout.split('\n').filter(Boolean));
    const workload = all.stdout.split('\n').filter((id) => id && !ours.has(id));
    if (workload.length) await exec('docker', ['rm', '-f', ...workload], { env: { DOCKER_HOST: hostDocker(n) }, timeoutMs: 120_000 });
    const r = await exec('docker', ['compose', '-f', COMPOSE_FILE, '-p', PROJECT, 'down', '--remove-orphans', '-t', '5'], {
      env: { DOCKER_HOST: hostDocker(n), WEAVE_HOST: hostName(n) },
      timeoutMs: 120_000,
    });
    if (r.code !== 0) log(`${hostName(n)}: compose down failed (continuing): ${r.stderr.trim()}`);
  }
  if (pid) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      /* gone */
    }
    const deadline = Date.now() + 20_000;
    while (dockerdPid(n) && Date.now() < deadline) await sleep(100);
    if (dockerdPid(n)) {
      log(`${hostName(n)}: dockerd did not stop in 20 s; killing it`);
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
  // Anything left in the host's netns (shims, containers) was started by the mesh: stop it.
  if (existsSync(`/run/netns/${hostNs(n)}`)) {
    await killNetnsProcesses(hostNs(n));
    await exec('ip', ['netns', 'del', hostNs(n)]);
  }
  await killMountNsLeftovers(n);
  rmSync(hostRun(n), { recursive: true, force: true });
  await exec('rm', ['-rf', '--one-file-system', hostData(n)], { timeoutMs: 300_000 });
  rmSync(`${LOG_DIR}/${hostNs(n)}-dockerd.log`, { force: true });
}

async function killNetnsProcesses(name: string): Promise<void> {
  for (const sig of ['TERM', 'KILL']) {
    const r = await exec('ip', ['netns', 'pids', name]);
    const pids = r.stdout.split('\n').map(Number).filter((p) => p > 1);
    if (!pids.length) return;
    for (const p of pids) {
      try {
        process.kill(p, `SIG${sig}` as NodeJS.Signals);
      } catch {
        /* gone */
      }
    }
    await sleep(sig === 'TERM' ? 2000 : 300);
  }
}

/**
 * Processes whose mount namespace holds host n's binds (e.g. a containerd-shim outside the netns)
 * would keep /var/lib/wvh<n> mounted there: find them by their mountinfo and stop them.
 */
async function killMountNsLeftovers(n: number): Promise<void> {
  const marker = `${hostData(n)}/`;
  const pids: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      const info = readFileSync(`/proc/${e}/mountinfo`, 'utf8');
      if (info.includes(marker)) pids.push(Number(e));
    } catch {
      /* gone or not ours to read */
    }
  }
  for (const p of pids) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  if (pids.length) await sleep(300);
}
