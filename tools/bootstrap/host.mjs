// Host prerequisites for weave: Docker engine + compose v2, nats-server, iproute2, iptables,
// mmdebstrap, busybox-static. Dependency-free (node: builtins only) because it runs before
// `npm ci`. Targets Debian 12 (bookworm) run as root without systemd; everything is idempotent.
//
//   ensureHostPackages(log)   install whatever is missing via apt (docker-compose from trixie)
//   ensureDockerd(log)        start dockerd in the background unless /var/run/docker.sock answers
//   ensureNatsServerBinary()  absolute path of nats-server (installs it if missing)
//   ensureBenchPackages(log)  iperf3 for `npm run bench:mesh`

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

export const DOCKER_SOCKET = '/var/run/docker.sock';
export const DOCKERD_LOG = '/var/log/weave-dockerd.log';
export const APT_LOG = '/var/log/weave-apt.log';
const DOCKERD_PIDFILE = '/var/run/docker.pid';
const DOCKERD_TIMEOUT_MS = 60_000;
const DEFAULT_MIRROR = 'http://deb.debian.org/debian';
const TRIXIE_SOURCES = '/etc/apt/sources.list.d/trixie.sources';
const TRIXIE_PIN = '/etc/apt/preferences.d/trixie-low';
const SBIN_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

const noop = () => {};

/** process.env with the sbin directories guaranteed on PATH (CI shells sometimes lack them). */
export function hostEnv(extra = {}) {
  const parts = (process.env.PATH || '').split(':').filter(Boolean);
  for (const d of SBIN_DIRS) if (!parts.includes(d)) parts.push(d);
  return { ...process.env, PATH: parts.join(':'), ...extra };
}

/** Absolute path of an executable found on (the sbin-extended) PATH, or null. */
export function which(name) {
  for (const dir of hostEnv().PATH.split(':')) {
    const p = path.join(dir, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      if (fs.statSync(p).isFile()) return p;
    } catch {
      /* not here */
    }
  }
  return null;
}

/** Run a command synchronously; never throws, returns { ok, status, stdout, stderr }. */
export function run(cmd, args = [], opts = {}) {
  const r = spawnSync(cmd, args, {
    encoding: 'utf8',
    env: hostEnv(opts.env),
    stdio: ['ignore', 'pipe', 'pipe'],
    maxBuffer: 64 * 1024 * 1024,
    timeout: opts.timeout,
    cwd: opts.cwd,
  });
  return {
    ok: r.status === 0,
    status: r.status,
    stdout: r.stdout || '',
    stderr: (r.stderr || '') + (r.error ? String(r.error.message) : ''),
  };
}

/** Run a command, appending its output to a log file; resolves on success, rejects with the tail. */
export function runLogged(cmd, args, logFile, opts = {}) {
  return new Promise((resolve, reject) => {
    fs.mkdirSync(path.dirname(logFile), { recursive: true });
    const fd = fs.openSync(logFile, 'a');
    fs.writeSync(fd, `\n### ${new Date().toISOString()} ${cmd} ${args.join(' ')}\n`);
    const child = spawn(cmd, args, { env: hostEnv(opts.env), stdio: ['ignore', fd, fd] });
    child.on('error', (err) => {
      fs.closeSync(fd);
      reject(new Error(`${cmd}: ${err.message}`));
    });
    child.on('exit', (code, signal) => {
      fs.closeSync(fd);
      if (code === 0) resolve();
      else
        reject(
          new Error(
            `${cmd} ${args.join(' ')} failed (${signal || 'exit ' + code}); last lines of ${logFile}:\n` +
              tail(logFile, 25),
          ),
        );
    });
  });
}

export function tail(file, lines = 20) {
  try {
    const buf = fs.readFileSync(file, 'utf8');
    return buf.split('\n').slice(-lines - 1).join('\n');
  } catch {
    return '(no log)';
  }
}

/** True if `file` is an ELF executable without a PT_INTERP program header (statically linked). */
export function isStaticElf(file) {
  let fd;
  try {
    fd = fs.openSync(file, 'r');
    const hdr = Buffer.alloc(64);
    fs.readSync(fd, hdr, 0, 64, 0);
    if (hdr.readUInt32BE(0) !== 0x7f454c46) return false;
    const is64 = hdr[4] === 2;
    const le = hdr[5] === 1;
    const u16 = (b, o) => (le ? b.readUInt16LE(o) : b.readUInt16BE(o));
    const u32 = (b, o) => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
    const phoff = is64 ? Number(le ? hdr.readBigUInt64LE(32) : hdr.readBigUInt64BE(32)) : u32(hdr, 28);
    const phentsize = u16(hdr, is64 ? 54 : 42);
    const phnum = u16(hdr, is64 ? 56 : 44);
    const ph = Buffer.alloc(phentsize * phnum);
    fs.readSync(fd, ph, 0, ph.length, phoff);
    for (let i = 0; i < phnum; i++) if (u32(ph, i * phentsize) === 3 /* PT_INTERP */) return false;
    return true;
  } catch {
    return false;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** Path of a statically linked busybox on this host, or null. */
export function staticBusybox() {
  for (const p of ['/bin/busybox', '/usr/bin/busybox', which('busybox')]) {
    if (p && isStaticElf(p)) return p;
  }
  return null;
}

/**
 * The Debian archive mirror the host's apt uses (main archive, not -security), taken from
 * deb822 .sources files or one-line .list files; defaults to deb.debian.org.
 */
export function debianMirror() {
  const files = [];
  const add = (f) => {
    try {
      if (fs.statSync(f).isFile()) files.push(f);
    } catch {
      /* absent */
    }
  };
  add('/etc/apt/sources.list');
  try {
    for (const f of fs.readdirSync('/etc/apt/sources.list.d').sort())
      if (f.endsWith('.list') || f.endsWith('.sources')) add(path.join('/etc/apt/sources.list.d', f));
  } catch {
    /* no dir */
  }
  const good = (uri, suites) =>
    /^https?:\/\//.test(uri) &&
    !/security/.test(uri) &&
    suites.some((s) => /^(bookworm|trixie|stable|testing|sid|unstable)$/.test(s));
  for (const f of files) {
    const text = fs.readFileSync(f, 'utf8');
    if (f.endsWith('.sources')) {
      for (const stanza of text.split(/\n\s*\n/)) {
        const field = (name) => {
          const m = stanza.match(new RegExp(`^${name}:\\s*(.+)$`, 'mi'));
          return m ? m[1].trim().split(/\s+/) : [];
        };
        if (/^Enabled:\s*no/im.test(stanza)) continue;
        if (!field('Types').includes('deb')) continue;
        const uri = field('URIs').find((u) => good(u, field('Suites')));
        if (uri) return uri.replace(/\/+$/, '');
      }
    } else {
      for (const line of text.split('\n')) {
        const m = line.match(/^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)/);
        if (m && good(m[1], [m[2]])) return m[1].replace(/\/+$/, '');
      }
    }
  }
  return DEFAULT_MIRROR;
}

/** Add the trixie source pinned at priority 100 (same content as the team's setup script). */
function ensureTrixieSource(log) {
  const mirror = debianMirror();
  const sources =
    `Types: deb\nURIs: ${mirror}\nSuites: trixie\nComponents: main\n` +
    `Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n`;
  const pin = `Package: *\nPin: release n=trixie\nPin-Priority: 100\n`;
  let changed = false;
  for (const [file, content] of [
    [TRIXIE_SOURCES, sources],
    [TRIXIE_PIN, pin],
  ]) {
    let cur = null;
    try {
      cur = fs.readFileSync(file, 'utf8');
    } catch {
      /* absent */
    }
    if (cur !== content) {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, content);
      changed = true;
    }
  }
  if (changed) log(`apt: added trixie source (${mirror}) pinned at priority 100`);
  return changed;
}

/** `docker compose version` with the first docker on PATH; returns the version line or null. */
function composeVersion() {
  if (!which('docker')) return null;
  const r = run('docker', ['compose', 'version'], { timeout: 20_000 });
  return r.ok ? r.stdout.trim() : null;
}

/** If the compose plugin is installed but the docker CLI on PATH does not find it, link it. */
function linkComposePlugin(log) {
  if (composeVersion()) return true;
  const candidates = [
    '/usr/libexec/docker/cli-plugins/docker-compose',
    '/usr/lib/docker/cli-plugins/docker-compose',
    '/usr/local/libexec/docker/cli-plugins/docker-compose',
  ];
  const plugin = candidates.find((p) => fs.existsSync(p));
  if (!plugin || !which('docker')) return false;
  for (const dir of ['/usr/local/lib/docker/cli-plugins', path.join(os.homedir(), '.docker', 'cli-plugins')]) {
    const link = path.join(dir, 'docker-compose');
    try {
      fs.mkdirSync(dir, { recursive: true });
      try {
        fs.unlinkSync(link);
      } catch {
        /* absent */
      }
      fs.symlinkSync(plugin, link);
      log(`docker compose: linked ${plugin} -> ${link}`);
    } catch (err) {
      log(`docker compose: could not link into ${dir}: ${err.message}`);
    }
    if (composeVersion()) return true;
  }
  return false;
}

/** What is missing on this host: [{ what, pkg, trixie }] */
export function missingHostPackages() {
  const missing = [];
  const need = (ok, what, pkg, trixie = false) => {
    if (!ok) missing.push({ what, pkg, trixie });
  };
  need(which('dockerd'), 'dockerd', 'docker.io');
  need(which('containerd'), 'containerd', 'containerd');
  need(which('runc'), 'runc', 'runc');
  need(which('docker'), 'docker CLI', 'docker.io');
  need(composeVersion() || linkComposePlugin(noop), 'docker compose v2', 'docker-compose', true);
  need(which('nats-server'), 'nats-server', 'nats-server');
  need(which('ip'), 'ip', 'iproute2');
  need(which('iptables'), 'iptables', 'iptables');
  // The router's fast-path guard (its tests run on the host); Debian's iptables package has it.
  need(which('ebtables'), 'ebtables', 'iptables');
  // The encrypted mesh's test looks at the underlay for plaintext.
  need(which('tcpdump'), 'tcpdump', 'tcpdump');
  need(which('mmdebstrap'), 'mmdebstrap', 'mmdebstrap');
  need(staticBusybox(), 'busybox (static)', 'busybox-static');
  return missing;
}

const APT_OPTS = ['-y', '-q', '-o', 'Dpkg::Use-Pty=0', '-o', 'DPkg::Lock::Timeout=600', '--no-install-recommends'];

/** Install whatever is missing; a no-op (a few ms) when everything is there. */
export async function ensureHostPackages(log = noop) {
  let missing = missingHostPackages();
  if (missing.length === 0) return;
  if (process.getuid && process.getuid() !== 0)
    throw new Error(`missing ${missing.map((m) => m.what).join(', ')}; run as root to install them`);
  if (!which('apt-get')) throw new Error(`missing ${missing.map((m) => m.what).join(', ')} and no apt-get`);

  const t0 = Date.now();
  log(`installing: ${[...new Set(missing.map((m) => m.pkg))].join(' ')} (apt log: ${APT_LOG})`);
  const env = { DEBIAN_FRONTEND: 'noninteractive' };
  ensureTrixieSource(log);
  await runLogged('apt-get', ['-q', '-o', 'DPkg::Lock::Timeout=600', 'update'], APT_LOG, { env });
  const stable = [...new Set(missing.filter((m) => !m.trixie).map((m) => m.pkg))];
  const fromTrixie = [...new Set(missing.filter((m) => m.trixie).map((m) => m.pkg))];
  if (stable.length) await runLogged('apt-get', ['install', ...APT_OPTS, ...stable], APT_LOG, { env });
  if (fromTrixie.length)
    await runLogged('apt-get', ['install', ...APT_OPTS, '-t', 'trixie', ...fromTrixie], APT_LOG, { env });

  linkComposePlugin(log);
  missing = missingHostPackages();
  if (missing.length)
    throw new Error(`still missing after apt install: ${missing.map((m) => m.what).join(', ')} (see ${APT_LOG})`);
  log(`host packages installed in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}

/** What `npm run bench:mesh` needs besides node and the addon: iperf3 (and iproute2's ip). */
export function ensureBenchPackages(log = noop) {
  return ensureCommands([
    ['iperf3', 'iperf3'],
    ['ip', 'iproute2'],
  ], log);
}

/** What `npm run fuzz` needs besides node and the addon: nats-server, and ip and iptables for netwire. */
export function ensureFuzzPackages(log = noop) {
  return ensureCommands([
    ['nats-server', 'nats-server'],
    ['ip', 'iproute2'],
    ['iptables', 'iptables'],
  ], log);
}

/** Installs the packages of the [command, package] pairs whose command is missing. */
async function ensureCommands(pairs, log) {
  const missing = pairs.filter(([bin]) => !which(bin));
  if (missing.length === 0) return;
  const pkgs = missing.map(([, pkg]) => pkg);
  if (process.getuid && process.getuid() !== 0) throw new Error(`missing ${pkgs.join(', ')}; run as root to install them`);
  if (!which('apt-get')) throw new Error(`missing ${pkgs.join(', ')} and no apt-get`);
  log(`installing: ${pkgs.join(' ')} (apt log: ${APT_LOG})`);
  const env = { DEBIAN_FRONTEND: 'noninteractive' };
  await runLogged('apt-get', ['-q', '-o', 'DPkg::Lock::Timeout=600', 'update'], APT_LOG, { env });
  await runLogged('apt-get', ['install', ...APT_OPTS, ...pkgs], APT_LOG, { env });
  const still = missing.filter(([bin]) => !which(bin));
  if (still.length) throw new Error(`still missing after apt install: ${still.map(([b]) => b).join(', ')} (see ${APT_LOG})`);
}

/** GET /_ping on the docker unix socket; resolves true if it answers OK. */
export function dockerPing(socketPath = DOCKER_SOCKET, timeoutMs = 2000) {
  return new Promise((resolve) => {
    if (!fs.existsSync(socketPath)) return resolve(false);
    const req = http.get({ socketPath, path: '/_ping', timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve(res.statusCode === 200 && body.trim() === 'OK'));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

function pidAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === 'EPERM';
  }
}

/** pid of a running dockerd according to its pidfile, or null. */
function runningDockerdPid() {
  try {
    const pid = Number(fs.readFileSync(DOCKERD_PIDFILE, 'utf8').trim());
    if (!pid || !pidAlive(pid)) return null;
    const comm = fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
    return comm === 'dockerd' ? pid : null;
  } catch {
    return null;
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Make sure the Docker engine answers on /var/run/docker.sock. Without systemd we start dockerd
 * ourselves, detached (own session, survives this process), logging to /var/log/weave-dockerd.log.
 * dockerd 20.10 launches and supervises its own containerd when no system containerd socket
 * exists, so containerd is not started separately.
 */
export async function ensureDockerd(log = noop) {
  if (await dockerPing()) return;
  const t0 = Date.now();
  let pid = runningDockerdPid();
  if (pid) {
    log(`dockerd (pid ${pid}) is running but not answering yet; waiting`);
  } else {
    const dockerd = which('dockerd');
    if (!dockerd) throw new Error('dockerd is not installed (run ensureHostPackages first)');
    fs.mkdirSync(path.dirname(DOCKERD_LOG), { recursive: true });
    const fd = fs.openSync(DOCKERD_LOG, 'a');
    fs.writeSync(fd, `\n### ${new Date().toISOString()} starting ${dockerd}\n`);
    const child = spawn(dockerd, [], {
      detached: true,
      stdio: ['ignore', fd, fd],
      env: hostEnv(),
      cwd: '/',
    });
    fs.closeSync(fd);
    pid = child.pid;
    let exited = null;
    child.on('exit', (code, signal) => (exited = signal || `exit ${code}`));
    child.on('error', (err) => (exited = err.message));
    child.unref();
    log(`starting dockerd (pid ${pid}, log ${DOCKERD_LOG})`);
    while (Date.now() - t0 < DOCKERD_TIMEOUT_MS) {
      if (await dockerPing()) break;
      if (exited) throw new Error(`dockerd exited (${exited}); last lines of ${DOCKERD_LOG}:\n${tail(DOCKERD_LOG, 25)}`);
      await sleep(100);
    }
  }
  while (!(await dockerPing())) {
    if (Date.now() - t0 > DOCKERD_TIMEOUT_MS)
      throw new Error(
        `dockerd did not answer on ${DOCKER_SOCKET} within ${DOCKERD_TIMEOUT_MS / 1000} s; last lines of ${DOCKERD_LOG}:\n` +
          tail(DOCKERD_LOG, 25),
      );
    if (pid && !pidAlive(pid))
      throw new Error(`dockerd (pid ${pid}) died; last lines of ${DOCKERD_LOG}:\n${tail(DOCKERD_LOG, 25)}`);
    await sleep(100);
  }
  log(`dockerd ready in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}

/** Absolute path of the nats-server binary (installed from Debian if missing). */
export async function ensureNatsServerBinary() {
  let p = which('nats-server');
  if (p) return p;
  await ensureHostPackages(noop);
  p = which('nats-server');
  if (!p) throw new Error('nats-server not found after installing host packages');
  return p;
}
