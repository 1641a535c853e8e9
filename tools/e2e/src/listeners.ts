import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { docker } from '@weave/docker-cli';

/** A socket some process waits on: TCP in LISTEN, or UDP bound and not connected. */
export interface Listener {
  proto: 'tcp' | 'udp';
  address: string;
  port: number;
  /** The processes holding it (a socket can be shared across fork/exec). */
  commands: string[];
}

const TCP_LISTEN = '0A';
/** An unconnected UDP socket is in TCP_CLOSE (07); a connected one, ESTABLISHED (01), takes no one's datagrams. */
const UDP_UNCONNECTED = '07';

/**
 * The sockets processes `pids` listen on, from the kernel's own tables (/proc/<pid>/net/*, of
 * their network namespace) matched to their file descriptors: what they really bound, whatever
 * their configuration says. Needs root for other users' processes.
 */
export function listenersOf(pids: number[]): Listener[] {
  const owners = new Map<string, Set<string>>();
  for (const pid of pids) {
    const comm = readOr(`/proc/${pid}/comm`, '?').trim();
    for (const fd of readdirOr(`/proc/${pid}/fd`)) {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkOr(`/proc/${pid}/fd/${fd}`));
      if (m) owners.set(m[1]!, (owners.get(m[1]!) ?? new Set()).add(comm));
    }
  }
  const found = new Map<string, Listener>();
  for (const pid of pids) {
    for (const table of ['tcp', 'tcp6', 'udp', 'udp6'] as const) {
      for (const line of readOr(`/proc/${pid}/net/${table}`, '').split('\n').slice(1)) {
        const f = line.trim().split(/\s+/);
        const [local, state, inode] = [f[1], f[3], f[9]];
        if (!local || !inode || !owners.has(inode)) continue;
        const proto = table.startsWith('tcp') ? 'tcp' : 'udp';
        if (state !== (proto === 'tcp' ? TCP_LISTEN : UDP_UNCONNECTED)) continue;
        const [hexAddr, hexPort] = local.split(':') as [string, string];
        found.set(inode, { proto, address: procAddress(hexAddr), port: parseInt(hexPort, 16), commands: [...owners.get(inode)!].sort() });
      }
    }
  }
  return [...found.values()].sort((a, b) => a.port - b.port || a.proto.localeCompare(b.proto));
}

/** Every process of the running containers of a compose project (host pids, via `docker top`). */
export async function composePids(project: string, composeFile: string): Promise<number[]> {
  const ids = (await docker(['compose', '-p', project, '-f', composeFile, 'ps', '-q'])).split('\n').filter(Boolean);
  const pids: number[] = [];
  for (const id of ids) {
    const out = await docker(['top', id, '-eo', 'pid']);
    pids.push(...out.split('\n').slice(1).map(Number).filter((p) => p > 0));
  }
  return pids;
}

export function isLoopback(address: string): boolean {
  return /^127\./.test(address) || address === '::1' || /^::ffff:127\./.test(address);
}

/**
 * /proc/net's hex address: IPv4 is one 32-bit word in host (little-endian) order, IPv6 four
 * such words.
 */
function procAddress(hex: string): string {
  const words = hex.match(/.{8}/g) ?? [];
  const bytes = words.flatMap((w) => [6, 4, 2, 0].map((i) => parseInt(w.slice(i, i + 2), 16)));
  if (bytes.length === 4) return bytes.join('.');
  const groups = Array.from({ length: 8 }, (_, i) => ((bytes[2 * i]! << 8) | bytes[2 * i + 1]!).toString(16));
  const v6 = groups.join(':').replace(/(^|:)0(:0)+(:|$)/, '::').replace(/:{3,}/, '::');
  return /^::ffff:[0-9a-f]+:[0-9a-f]+$/.test(v6) ? `::ffff:${bytes.slice(12).join('.')}` : v6;
}

function readOr(path: string, dflt: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return dflt;
  }
}

function readdirOr(path: string): string[] {
  try {
    return readdirSync(path);
  } catch {
    return [];
  }
}

function readlinkOr(path: string): string {
  try {
    return readlinkSync(path);
  } catch {
    return '';
  }
}
