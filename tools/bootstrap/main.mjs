#!/usr/bin/env node
// `npm start`, `npm stop`, `npm test`, `npm run bench:attach`, `npm run bench:mesh`, `npm run fuzz`:
// each does its own set-up on a fresh machine (host packages, dockerd, node_modules, bundles,
// images) and is harmless to run again.
// Dependency-free until node_modules exists; the steps themselves live in the modules it calls.
import { existsSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ciPrep } from './ci-prep.mjs';
import { ensureBenchPackages, ensureFuzzPackages, ensureNatsServerBinary, hostEnv } from './host.mjs';
import { spawn, spawnSync } from 'node:child_process';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
// bench:mesh and fuzz print their results on stdout (bench:mesh's `--json` is for machines), so
// their set-up talks on stderr.
let setupStdio = 'inherit';
const log = (msg) => (setupStdio === 'inherit' ? console.log : console.error)(`[weave] ${msg}`);

// rustup puts cargo in ~/.cargo/bin, which a non-login shell's PATH may lack.
const cargoBin = join(homedir(), '.cargo', 'bin');
const withCargo = (env = {}) => {
  const base = hostEnv(env);
  return base.PATH.split(':').includes(cargoBin) ? base : { ...base, PATH: `${base.PATH}:${cargoBin}` };
};

/** Runs a set-up command with inherited stdio (stdout onto stderr for bench:mesh); throws with its exit code. */
function sh(cmd, args, env = {}) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: setupStdio, env: withCargo(env) });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited with ${r.status ?? r.signal}`);
}

function ensureNodeModules() {
  const marker = join(root, 'node_modules/.package-lock.json');
  if (existsSync(marker) && statSync(marker).mtimeMs >= statSync(join(root, 'package-lock.json')).mtimeMs) return;
  log('installing node modules (npm ci)');
  sh('npm', ['ci', '--no-audit', '--no-fund']);
}

/** Everything every command needs: host packages, dockerd, images, node_modules, bundles. */
async function prepare() {
  const { base } = await ciPrep();
  ensureNodeModules();
  buildNative();
  const { bundleAll, stageNatsServer } = await import('../build/bundle.mjs');
  await bundleAll(log);
  stageNatsServer(await ensureNatsServerBinary());
  return { WEAVE_BASE_IMAGE: base };
}

/** The router's packet engine (native/sleeve), a Rust napi-rs addon: needs cargo (rustup). */
function buildNative() {
  if (spawnSync('cargo', ['--version'], { env: withCargo(), stdio: 'ignore' }).status !== 0) {
    throw new Error('cargo is needed to build native/sleeve: install Rust with rustup (https://rustup.rs) or Debian\'s cargo');
  }
  log('building the native addon (native/sleeve)');
  sh('npm', ['run', 'build', '-w', '@weave/sleeve', '--silent']);
}

/**
 * Runs a command that cleans up after itself on a signal: passes SIGINT/SIGTERM/SIGHUP on to it
 * and waits for it instead of dying first. Resolves with its exit code.
 */
function shUntilDone(cmd, args) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: root, stdio: 'inherit', env: withCargo() });
    const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'];
    const forward = (sig) => child.kill(sig);
    for (const s of signals) process.on(s, forward);
    child.on('error', reject);
    child.on('exit', (code) => {
      for (const s of signals) process.off(s, forward);
      resolve(code ?? 1);
    });
  });
}

const compose = (env, ...args) => sh('docker', ['compose', '-f', 'compose/host.yml', ...args], env);

async function startStack() {
  const env = await prepare();
  log('building images and starting the stack (docker compose -f compose/host.yml up -d)');
  compose(env, 'build', '--quiet');
  compose(env, 'up', '-d', '--remove-orphans');
}

/**
 * A tool that needs the machine's packages, node_modules and the native addon but no Docker:
 * set-up output goes to stderr (its stdout may be JSON), and its exit status is the command's.
 */
async function runTool(ensurePackages, script) {
  setupStdio = ['inherit', 2, 2];
  await ensurePackages(log);
  ensureNodeModules();
  buildNative();
  const code = await shUntilDone('node', ['--import', 'tsx', script, ...process.argv.slice(3)]);
  if (code !== 0) process.exit(code);
}

const commands = {
  async up() {
    await startStack();
    sh('node', ['--import', 'tsx', 'tools/demo/src/main.ts']);
  },
  async down() {
    ensureNodeModules();
    // The demo's containers and network go first, while the plugin is still there to release them.
    spawnSync('node', ['--import', 'tsx', 'tools/demo/src/main.ts', '--remove'], { cwd: root, stdio: 'inherit', env: hostEnv() });
    compose({}, 'down', '--remove-orphans');
  },
  async test() {
    await prepare();
    sh('npx', ['tsc', '-p', 'tsconfig.json', '--noEmit']);
    const summary = join(mkdtempSync(join(tmpdir(), 'weave-test-')), 'summary.jsonl');
    // One project at a time: the end-to-end suites share the machine's dockerd.
    let failure = null;
    try {
      // `npm test -- meshsim ipam`: the same set-up, then only those projects.
      const only = process.argv.slice(3).map((p) => (p.startsWith('@') ? p : `@weave/${p}`));
      const projects = only.length ? [`--projects=${only.join(',')}`] : [];
      sh('npx', ['nx', 'run-many', '-t', 'test', ...projects, '--parallel=1', '--outputStyle=stream', '--skip-nx-cache'], { WEAVE_TEST_SUMMARY: summary, NX_DAEMON: 'false' });
    } catch (e) {
      failure = e;
    }
    const runs = existsSync(summary) ? readFileSync(summary, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)) : [];
    const total = (k) => runs.reduce((n, r) => n + r[k], 0);
    console.log(`\n${total('passed')} passed, ${total('failed')} failed, ${total('skipped')} skipped`);
    for (const f of runs.flatMap((r) => r.failures ?? [])) console.log(`failed: ${f.test}\n  ${f.message}`);
    if (failure) throw failure;
  },
  async 'bench-attach'() {
    await startStack();
    sh('node', ['--import', 'tsx', 'tools/bench/src/attach.ts', ...process.argv.slice(3)]);
  },
  async 'bench-mesh'() {
    // No Docker here: namespaces, iperf3 and the sleeve addon, built from the current source.
    await runTool(ensureBenchPackages, 'tools/bench/src/mesh.ts');
  },
  async fuzz() {
    // No Docker: a nats-server and the services as processes, netwire in a namespace of the
    // run's own, the router with its addon.
    await runTool(ensureFuzzPackages, 'tools/fuzz/src/main.ts');
  },
};

const name = process.argv[2] ?? '';
const command = commands[name];
if (!command) {
  console.error(`usage: node tools/bootstrap/main.mjs ${Object.keys(commands).join('|')}`);
  process.exit(2);
}
command().catch((e) => {
  console.error(`[weave] ${name} failed: ${e.message}`);
  process.exit(1);
});
