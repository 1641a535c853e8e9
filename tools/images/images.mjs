// Local container images for machines without a container registry. Dependency-free ESM
// (node: builtins only; runs before `npm ci`). Requires a running dockerd and the host packages
// from tools/bootstrap/host.mjs (mmdebstrap, busybox-static).
//
//   ensureBaseImage(log)      -> image name for the services' base (Debian trixie + nodejs,
//                                iproute2, iptables, ca-certificates)
//   ensureWorkloadImage(log)  -> 'weave-bbox:local', busybox-static + applet symlinks
//
// Both return immediately (one `docker image inspect`) when the image exists and matches the
// current recipe.

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { debianMirror, hostEnv, run, staticBusybox, tail, which } from '../bootstrap/host.mjs';

export const BASE_IMAGE = 'weave-base:local';
export const WORKLOAD_IMAGE = 'weave-bbox:local';
export const BASE_IMAGE_LOG = '/var/log/weave-base-image.log';

const BASE_SUITE = 'trixie';
const BASE_PACKAGES = ['nodejs', 'iproute2', 'iptables', 'ca-certificates'];
const PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const RECIPE_LABEL = 'weave.image.recipe';
const BACKEND_LABEL = 'weave.iptables.backend';
// Bump when the way an image is built changes; images with another recipe label are rebuilt.
const BASE_RECIPE_VERSION = 1;
const WORKLOAD_RECIPE_VERSION = 1;

const noop = () => {};
const secs = (t0) => ((Date.now() - t0) / 1000).toFixed(1);

function recipeHash(obj) {
  return createHash('sha256').update(JSON.stringify(obj)).digest('hex').slice(0, 16);
}

function docker(args, opts = {}) {
  return run('docker', args, { timeout: opts.timeout ?? 120_000 });
}

/** Labels of a local image, or null when the image does not exist. */
function imageLabels(name) {
  const r = docker(['image', 'inspect', '--format', '{{json .Config.Labels}}', name], { timeout: 30_000 });
  if (!r.ok) return null;
  try {
    return JSON.parse(r.stdout.trim()) || {};
  } catch {
    return {};
  }
}

/**
 * iptables backend the host uses ('nft' or 'legacy'). dockerd 20.10 runs the `iptables` found on
 * its PATH, so that binary's backend is the one whose tables hold dockerd's rules.
 */
export function hostIptablesBackend() {
  const r = run('iptables', ['-V']);
  if (/nf_tables/.test(r.stdout)) return 'nft';
  if (/legacy/.test(r.stdout)) return 'legacy';
  throw new Error(`cannot tell the host's iptables backend from: ${r.stdout.trim() || r.stderr.trim()}`);
}

/** True if dockerd has set up its iptables chains (i.e. it runs with --iptables=true). */
function hostHasDockerChains() {
  const r = run('iptables', ['-S', 'FORWARD']);
  return r.ok && /DOCKER/.test(r.stdout);
}

/** Run `producer | docker import ... - tag`; producer stderr goes to logFile. */
function pipeIntoImport(producerCmd, producerArgs, importArgs, logFile) {
  return new Promise((resolve, reject) => {
    fs.mkdirSync(path.dirname(logFile), { recursive: true });
    const fd = fs.openSync(logFile, 'a');
    fs.writeSync(fd, `\n### ${new Date().toISOString()} ${producerCmd} ${producerArgs.join(' ')}\n`);
    const env = hostEnv();
    const producer = spawn(producerCmd, producerArgs, { env, stdio: ['ignore', 'pipe', fd] });
    const importer = spawn('docker', ['import', ...importArgs], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let importOut = '';
    importer.stdout.on('data', (c) => (importOut += c));
    importer.stderr.on('data', (c) => (importOut += c));
    producer.stdout.pipe(importer.stdin);
    let pStatus;
    let iStatus;
    let failed = false;
    const fail = (msg) => {
      if (failed) return;
      failed = true;
      try {
        producer.kill('SIGTERM');
      } catch {
        /* gone */
      }
      try {
        importer.kill('SIGTERM');
      } catch {
        /* gone */
      }
      fs.closeSync(fd);
      reject(new Error(msg));
    };
    const done = () => {
      if (pStatus === undefined || iStatus === undefined || failed) return;
      fs.closeSync(fd);
      resolve(importOut.trim());
    };
    producer.on('error', (e) => fail(`${producerCmd}: ${e.message}`));
    importer.on('error', (e) => fail(`docker import: ${e.message}`));
    producer.on('exit', (code, sig) => {
      pStatus = code;
      if (code !== 0)
        fail(`${producerCmd} failed (${sig || 'exit ' + code}); last lines of ${logFile}:\n${tail(logFile, 25)}`);
      else done();
    });
    importer.on('exit', (code, sig) => {
      iStatus = code;
      if (code !== 0) fail(`docker import failed (${sig || 'exit ' + code}): ${importOut.trim()}`);
      else done();
    });
  });
}

/**
 * Image to use as the services' base: $WEAVE_BASE_IMAGE if set and present locally, else
 * weave-base:local (built with mmdebstrap + docker import when missing or outdated).
 */
export async function ensureBaseImage(log = noop) {
  const wanted = process.env.WEAVE_BASE_IMAGE;
  if (wanted) {
    if (imageLabels(wanted)) return wanted;
    log(`WEAVE_BASE_IMAGE=${wanted} is not present locally; using ${BASE_IMAGE}`);
  }

  const backend = hostIptablesBackend();
  const mirror = debianMirror();
  const recipe = recipeHash({ v: BASE_RECIPE_VERSION, suite: BASE_SUITE, pkgs: BASE_PACKAGES, backend });
  const labels = imageLabels(BASE_IMAGE);
  if (labels) {
    // An image without our label was made by hand: respect it.
    if (!labels[RECIPE_LABEL] || labels[RECIPE_LABEL] === recipe) return BASE_IMAGE;
    log(`${BASE_IMAGE} was built from another recipe (or for iptables-${labels[BACKEND_LABEL]}); rebuilding`);
  }

  if (!which('mmdebstrap')) throw new Error('mmdebstrap is not installed (run ensureHostPackages first)');
  const t0 = Date.now();
  log(`building ${BASE_IMAGE}: mmdebstrap ${BASE_SUITE} + ${BASE_PACKAGES.join(', ')} from ${mirror} (~30 s, log ${BASE_IMAGE_LOG})`);

  const hooks = [
    // No apt lists/caches in the image; keep docs' copyright files only.
    'rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/cache/apt/archives/*.deb',
  ];
  if (backend === 'legacy') {
    // The container manipulates the host's tables: use the same backend as dockerd.
    hooks.push(
      'chroot "$1" update-alternatives --set iptables /usr/sbin/iptables-legacy',
      'chroot "$1" update-alternatives --set ip6tables /usr/sbin/ip6tables-legacy',
    );
  }
  const mmArgs = [
    '--variant=minbase',
    '--format=tar',
    `--include=${BASE_PACKAGES.join(',')}`,
    '--dpkgopt=path-exclude=/usr/share/man/*',
    '--dpkgopt=path-exclude=/usr/share/locale/*',
    '--dpkgopt=path-exclude=/usr/share/doc/*',
    '--dpkgopt=path-include=/usr/share/doc/*/copyright',
    ...hooks.map((h) => `--customize-hook=${h}`),
    BASE_SUITE,
    '-',
    mirror,
  ];
  const tmpTag = `weave-base:building-${process.pid}`;
  const importArgs = [
    '--change', `ENV ${PATH_ENV}`,
    '--change', 'ENV LANG=C.UTF-8',
    '--change', `LABEL ${RECIPE_LABEL}=${recipe}`,
    '--change', `LABEL ${BACKEND_LABEL}=${backend}`,
    '--change', 'CMD ["node"]',
    '-',
    tmpTag,
  ];
  try {
    await pipeIntoImport('mmdebstrap', mmArgs, importArgs, BASE_IMAGE_LOG);
    const tBuild = secs(t0);

    // Tools present and the container's iptables talks to the same backend as the host's dockerd.
    const v = docker(['run', '--rm', tmpTag, 'sh', '-c', 'node --version && ip -V && iptables -V']);
    if (!v.ok) throw new Error(`${BASE_IMAGE} self-check failed: ${v.stdout}${v.stderr}`);
    const inner = /nf_tables/.test(v.stdout) ? 'nft' : /legacy/.test(v.stdout) ? 'legacy' : '?';
    if (inner !== backend)
      throw new Error(`image iptables backend is ${inner} but the host's is ${backend}:\n${v.stdout}`);
    if (hostHasDockerChains()) {
      const f = docker(['run', '--rm', '--network', 'host', '--cap-add', 'NET_ADMIN', tmpTag, 'iptables', '-S', 'FORWARD']);
      if (!f.ok || !/DOCKER/.test(f.stdout))
        throw new Error(`the image's iptables does not see dockerd's FORWARD rules:\n${f.stdout}${f.stderr}`);
    }
    const tag = docker(['tag', tmpTag, BASE_IMAGE]);
    if (!tag.ok) throw new Error(`docker tag: ${tag.stderr}`);
    const size = docker(['image', 'inspect', '--format', '{{.Size}}', BASE_IMAGE]).stdout.trim();
    log(
      `${BASE_IMAGE} ready in ${secs(t0)} s (mmdebstrap+import ${tBuild} s, ${Math.round(Number(size) / 1e6)} MB; ` +
        `${v.stdout.trim().replace(/^ip utility, /m, '').split('\n').map((l) => l.split(',')[0]).join(' | ')})`,
    );
  } finally {
    docker(['rmi', tmpTag], { timeout: 60_000 });
  }
  return BASE_IMAGE;
}

const UDHCPC_SCRIPT = `#!/bin/sh
# Minimal udhcpc hook: configure the address, default route and resolv.conf.
case "$1" in
  deconfig) ip -4 addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/\${mask:-24}" \${broadcast:+broadcast $broadcast} dev "$interface"
    for r in $router; do ip route replace default via "$r" dev "$interface"; break; done
    if [ -n "$dns" ]; then : > /etc/resolv.conf; for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done; fi
    ;;
esac
exit 0
`;

/** weave-bbox:local: /bin/busybox (static) and a symlink per applet, imported from a tarball. */
export async function ensureWorkloadImage(log = noop) {
  const busybox = staticBusybox();
  if (!busybox) throw new Error('a statically linked busybox is needed (apt-get install busybox-static)');
  const applets = run(busybox, ['--list-full']);
  if (!applets.ok) throw new Error(`busybox --list-full failed: ${applets.stderr}`);
  const list = applets.stdout.split('\n').map((s) => s.trim()).filter(Boolean);
  const bbHash = createHash('sha256').update(fs.readFileSync(busybox)).digest('hex').slice(0, 12);
  const recipe = recipeHash({ v: WORKLOAD_RECIPE_VERSION, bbHash, list, UDHCPC_SCRIPT });
  const labels = imageLabels(WORKLOAD_IMAGE);
  if (labels && (!labels[RECIPE_LABEL] || labels[RECIPE_LABEL] === recipe)) return WORKLOAD_IMAGE;

  const t0 = Date.now();
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'weave-bbox-'));
  const tmpTag = `weave-bbox:building-${process.pid}`;
  try {
    for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'etc', 'root', 'var/run', 'var/www', 'proc', 'sys', 'dev', 'usr/share/udhcpc'])
      fs.mkdirSync(path.join(root, d), { recursive: true });
    fs.mkdirSync(path.join(root, 'tmp'), { mode: 0o1777 });
    fs.chmodSync(path.join(root, 'tmp'), 0o1777);
    fs.copyFileSync(busybox, path.join(root, 'bin/busybox'));
    fs.chmodSync(path.join(root, 'bin/busybox'), 0o755);
    // Same result as `busybox --install -s`, but with the applets' canonical directories and
    // links to /bin/busybox inside the image (not the host's realpath).
    for (const rel of list) {
      const dst = path.join(root, rel);
      if (rel === 'bin/busybox' || fs.existsSync(dst)) continue;
      fs.mkdirSync(path.dirname(dst), { recursive: true });
      fs.symlinkSync('/bin/busybox', dst);
    }
    fs.writeFileSync(path.join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n');
    fs.writeFileSync(path.join(root, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
    for (const f of ['etc/hosts', 'etc/hostname', 'etc/resolv.conf']) fs.writeFileSync(path.join(root, f), '');
    fs.writeFileSync(path.join(root, 'usr/share/udhcpc/default.script'), UDHCPC_SCRIPT, { mode: 0o755 });

    await pipeIntoImport(
      'tar',
      ['-C', root, '--numeric-owner', '--owner=0', '--group=0', '-c', '.'],
      ['--change', `ENV ${PATH_ENV}`, '--change', `LABEL ${RECIPE_LABEL}=${recipe}`, '--change', 'CMD ["sh"]', '-', tmpTag],
      '/var/log/weave-bbox-image.log',
    );
    const v = docker(['run', '--rm', tmpTag, 'ping', '-c1', '-W2', '127.0.0.1']);
    if (!v.ok || !/1 packets received/.test(v.stdout))
      throw new Error(`${WORKLOAD_IMAGE} self-check (ping -c1 127.0.0.1) failed: ${v.stdout}${v.stderr}`);
    const tag = docker(['tag', tmpTag, WORKLOAD_IMAGE]);
    if (!tag.ok) throw new Error(`docker tag: ${tag.stderr}`);
    log(`${WORKLOAD_IMAGE} ready in ${secs(t0)} s (${list.length} applets)`);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
    docker(['rmi', tmpTag], { timeout: 60_000 });
  }
  return WORKLOAD_IMAGE;
}
