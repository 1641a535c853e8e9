import { notProbed, type PeerProbe, type PeerVerdict, type ProbePeer } from './fastpath-probe';
import type { FastPathGuard } from './vxlan-guard';
import type { FastPathPlumbing, FastPathSpec } from './vxlan';

/** In-memory fakes of the fast path's kernel seams, for testing the data path without root. */

export class FakeFastPathPlumbing implements FastPathPlumbing {
  readonly devices = new Map<string, FastPathSpec & { peers: string[] }>();
  readonly isolated = new Set<string>();
  /** Thrown by the next call, once (a kernel that refuses). */
  failNext: Error | null = null;

  async ensure(spec: FastPathSpec): Promise<void> {
    this.maybeFail();
    this.devices.set(spec.name, { ...spec, peers: this.devices.get(spec.name)?.peers ?? [] });
    this.isolated.add(spec.name);
  }

  async setPeers(name: string, peers: readonly string[]): Promise<void> {
    this.maybeFail();
    const d = this.devices.get(name);
    if (!d) throw new Error(`no VXLAN device ${name}`);
    d.peers = [...new Set(peers)].sort();
  }

  async remove(name: string): Promise<void> {
    this.maybeFail();
    this.devices.delete(name);
    this.isolated.delete(name);
  }

  async list(): Promise<string[]> {
    this.maybeFail();
    return [...this.devices.keys()].sort();
  }

  async isolate(port: string): Promise<void> {
    this.maybeFail();
    this.isolated.add(port);
  }

  private maybeFail(): void {
    const e = this.failNext;
    this.failNext = null;
    if (e) throw e;
  }
}

export class FakeFastPathGuard implements FastPathGuard {
  /** What the last guard() installed, or null before any or after remove(). */
  installed: { local: string; port: number; peers: string[] } | null = null;

  async guard(o: { local: string; port: number; peers: readonly string[] }): Promise<void> {
    this.installed = { local: o.local, port: o.port, peers: [...new Set(o.peers)].sort() };
  }

  async remove(): Promise<void> {
    this.installed = null;
  }
}

/** A probe whose verdicts the test sets; `set` reports a change as the real one does. */
export class FakePeerProbe implements PeerProbe {
  peers: ProbePeer[] = [];
  stopped = false;
  private readonly verdicts = new Map<string, PeerVerdict>();
  private readonly listeners = new Set<(host: string, up: boolean, reason: string) => void>();

  constructor(private readonly now: () => number = Date.now) {}

  async setPeers(peers: readonly ProbePeer[]): Promise<void> {
    this.peers = [...peers];
    for (const host of this.verdicts.keys()) if (!peers.some((p) => p.host === host)) this.verdicts.delete(host);
    for (const p of peers) if (!this.verdicts.has(p.host)) this.verdicts.set(p.host, { up: false, reason: `probing VXLAN to ${p.host}`, since: this.now() });
  }

  state(host: string): PeerVerdict {
    return this.verdicts.get(host) ?? notProbed(host, this.now());
  }

  onChange(cb: (host: string, up: boolean, reason: string) => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  async stop(): Promise<void> {
    this.stopped = true;
  }

  set(host: string, up: boolean, reason: string): void {
    const was = this.verdicts.get(host);
    if (was && was.up === up && was.reason === reason) return;
    this.verdicts.set(host, { up, reason, since: was && was.up === up ? was.since : this.now() });
    for (const cb of this.listeners) cb(host, up, reason);
  }
}
