import { ChildProcess, execFile, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { docker, DockerOptions } from '@weave/docker-cli';
import { waitFor } from '@weave/testing';

/**
 * A dockerd of the test's own, in the machine's network namespace (so a stack's netwire, which
 * works there, wires its containers), with its own data root, exec root, socket and containerd:
 * a test can kill it with SIGKILL and start it again without touching the machine's dockerd or
 * anything else running on it. It shares /run/docker/plugins, where each stack's plugin has a
 * name of its own. No iptables or forwarding changes: the machine's dockerd owns those.
 *
 * Its default bridge is one of its own, made here: a dockerd started with `--bridge=none` deletes
 * `docker0` (moby's removeDefaultBridgeInterface), which would take the machine's dockerd's
 * default network away from everything after the test (image builds with RUN steps, `docker run`).
 */
export class PrivateDockerd {
  private readonly dir = mkdtempSync(join(tmpdir(), 'weave-e2e-dockerd-'));
  readonly socket = join(this.dir, 'docker.sock');
  /** For the docker CLI helpers: `docker(args, dockerd.cli)`. */
  readonly cli: DockerOptions = { host: `unix://${this.socket}` };
  private readonly containerdSocket = join(this.dir, 'containerd.sock');
  private proc: ChildProcess | null = null;
  private containerd: ChildProcess | null = null;
  private readonly logFile = join(this.dir, 'dockerd.log');
  /** Its default bridge, named after its directory so parallel tests never share one. */
  private readonly bridge = `wvpd${this.dir.slice(-6).replace(/[^0-9a-zA-Z]/g, '0')}`;

  /** `config`: dockerd's daemon.json (`{"live-restore": true}`, say). */
  constructor(private readonly config: Record<string, unknown> = {}) {}

  /** Starts dockerd (again, after a kill: same state, same containerd) and waits until it answers. */
  async start(timeoutMs = 60_000): Promise<void> {
    if (this.alive()) throw new Error('this dockerd is already running');
    await this.ensureContainerd(timeoutMs);
    await this.ensureBridge();
    mkdirSync(join(this.dir, 'data'), { recursive: true });
    writeFileSync(join(this.dir, 'daemon.json'), `${JSON.stringify(this.config)}\n`);
    const proc = this.spawnLogged('dockerd', [
      '--config-file', join(this.dir, 'daemon.json'),
      '--containerd', this.containerdSocket,
      '--data-root', join(this.dir, 'data'),
      '--exec-root', join(this.dir, 'exec'),
      '--pidfile', join(this.dir, 'docker.pid'),
      '-H', `unix://${this.socket}`,
      `--bridge=${this.bridge}`, '--iptables=false', '--ip6tables=false', '--ip-forward=false', '--ip-masq=false',
    ]);
    this.proc = proc;
    await waitFor(() => (exited(proc) ? Promise.reject(new Error(`dockerd exited: ${this.logTail()}`)) : ping(this.socket)), {
      what: `the test's dockerd on ${this.socket}`,
      timeoutMs,
      intervalMs: 100,
    });
  }

  /** A bridge with an address of a test range, so dockerd neither picks a pool nor adds routes. */
  private async ensureBridge(): Promise<void> {
    if (existsSync(`/sys/class/net/${this.bridge}`)) return;
    await ip(['link', 'add', 'name', this.bridge, 'type', 'bridge']);
    await ip(['addr', 'add', '10.254.247.1/30', 'dev', this.bridge]);
  }

  /**
   * containerd runs apart from dockerd, as a system's containerd.service does: killing dockerd
   * leaves it and the containers' shims running. (A containerd that dockerd starts itself logs
   * through a pipe to dockerd, and one whose dockerd was killed stops answering.)
   */
  private async ensureContainerd(timeoutMs: number): Promise<void> {
    if (this.containerd && !exited(this.containerd)) return;
    const root = join(this.dir, 'containerd');
    mkdirSync(root, { recursive: true });
    const config = join(root, 'config.toml');
    writeFileSync(
      config,
      [
        'version = 2',
        `root = ${JSON.stringify(join(root, 'root'))}`,
        `state = ${JSON.stringify(join(root, 'state'))}`,
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
        '[grpc]',
        `  address = ${JSON.stringify(this.containerdSocket)}`,
        '',
      ].join('\n'),
    );
    const proc = this.spawnLogged('containerd', ['--config', config]);
    this.containerd = proc;
    await waitFor(() => (exited(proc) ? Promise.reject(new Error(`containerd exited: ${this.logTail()}`)) : existsSync(this.containerdSocket)), {
      what: `the test's containerd on ${this.containerdSocket}`,
      timeoutMs,
      intervalMs: 50,
    });
  }

  /** In a session of its own, so that killing one of them leaves the other running; output to the log file. */
  private spawnLogged(command: string, args: string[]): ChildProcess {
    const out = openSync(this.logFile, 'a');
    const proc = spawn(command, args, { detached: true, stdio: ['ignore', out, out], env: { ...process.env, PATH: `/usr/local/sbin:/usr/sbin:/sbin:${process.env.PATH ?? ''}` } });
    closeSync(out);
    return proc;
  }

  alive(): boolean {
    return !!this.proc && !exited(this.proc);
  }

  /** Kills dockerd alone, the hard way: no shutdown runs, its containerd and containers stay. */
  async kill(): Promise<void> {
    const p = this.proc;
    if (!p || !this.alive()) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await exited;
  }

  /** Stops dockerd as `systemctl stop docker` does (SIGTERM: it stops its containers first); its containerd stays. */
  async stop(): Promise<void> {
    await stopProcess(this.proc);
  }

  /** Copies images from the machine's dockerd (a private one starts with none). */
  async loadImages(images: string[]): Promise<void> {
    const tar = join(this.dir, 'images.tar');
    await docker(['save', '-o', tar, ...images]);
    await docker(['load', '-q', '-i', tar], this.cli);
    rmSync(tar, { force: true });
  }

  /** dockerd's and containerd's log, whole. */
  log(): string {
    try {
      return readFileSync(this.logFile, 'utf8');
    } catch {
      return '';
    }
  }

  logTail(lines = 30): string {
    return this.log().trim().split('\n').slice(-lines).join('\n') || '(no log)';
  }

  /**
   * Removes everything: its containers, dockerd, the containers' shims if dockerd could not
   * remove them, containerd, whatever stays mounted under its directory, and the directory.
   * Safe to call in any state.
   */
  async destroy(): Promise<void> {
    if (this.alive()) {
      const ids = (await docker(['ps', '-aq'], this.cli).catch(() => '')).split('\n').filter(Boolean);
      if (ids.length > 0) await docker(['rm', '-f', ...ids], this.cli).catch(() => '');
    }
    await stopProcess(this.proc);
    // Containers dockerd could not remove: their shims name our containerd's socket on their
    // command line, and each container's first process is a shim's child.
    const shims = processesWithArg(this.containerdSocket);
    for (const pid of [...childrenOf(shims), ...shims]) killQuietly(pid);
    await stopProcess(this.containerd);
    await ip(['link', 'del', this.bridge]).catch(() => undefined);
    await unmountUnder(this.dir);
    if (!process.env.WEAVE_E2E_KEEP_LOGS) rmSync(this.dir, { recursive: true, force: true });
  }
}

const ip = (args: string[]): Promise<void> =>
  new Promise((resolve, reject) => execFile('ip', args, (err, _out, stderr) => (err ? reject(new Error(`ip ${args.join(' ')}: ${stderr.trim() || err.message}`)) : resolve())));

const exited = (p: ChildProcess): boolean => p.exitCode !== null || p.signalCode !== null;

/** SIGTERM, then SIGKILL after 15 s; resolves once it exited. */
async function stopProcess(p: ChildProcess | null): Promise<void> {
  if (!p || exited(p)) return;
  const gone = new Promise((r) => p.once('exit', r));
  p.kill('SIGTERM');
  const timer = setTimeout(() => p.kill('SIGKILL'), 15_000);
  await gone;
  clearTimeout(timer);
}

/** Processes with `arg` among their command-line arguments. */
const processesWithArg = (arg: string): number[] => pids().filter((pid) => read(`/proc/${pid}/cmdline`).split('\0').includes(arg));

/** The processes whose parent is one of `parents`. */
function childrenOf(parents: number[]): number[] {
  const set = new Set(parents);
  // Field 4 of /proc/<pid>/stat, after the command in parentheses (which may hold spaces).
  return pids().filter((pid) => set.has(Number(read(`/proc/${pid}/stat`).split(') ')[1]?.split(' ')[1])));
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* gone meanwhile */
  }
}

const pids = (): number[] => readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number);

function read(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** Whether a Docker engine answers `GET /_ping` on this socket. */
function ping(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ socketPath, path: '/_ping', method: 'GET', timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => (req.destroy(), resolve(false)));
    req.end();
  });
}

/** Unmounts what is mounted at or under `dir` (overlays, shm, netns files), deepest first. */
async function unmountUnder(dir: string): Promise<void> {
  const mounts = readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[1]?.replace(/\\040/g, ' '))
    .filter((m): m is string => !!m && (m === dir || m.startsWith(`${dir}/`)))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) await new Promise((r) => execFile('umount', ['-l', m], () => r(null)));
}
