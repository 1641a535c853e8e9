import type { Logger } from '@weave/log';
import { describeError } from '@weave/errors';
import type { FastPath } from './datapath';
import { FastPathProbe } from './fastpath-probe';
import { peerIdOf } from './peer-id';
import { LinuxFastPathPlumbing } from './vxlan';
import { LinuxFastPathGuard } from './vxlan-guard';

export interface FastPathSetup {
  /** What the data path is given: the fast path, or why there is none. */
  fastPath: FastPath | { off: string };
  /** Calls back when a peer's VXLAN reachability changes. */
  onChange(cb: () => void): void;
  stop(): Promise<void>;
}

/**
 * The kernel fast path of this host: the probe, the VXLAN devices and the guards. Switched off
 * (`enabled` false) it also removes what an earlier run with it on left: devices and guard rules.
 */
export async function startFastPath(o: { enabled: boolean; offBecause?: string; host: string; address: string; vxlanPort: number; probePort: number; log: Logger }): Promise<FastPathSetup> {
  const vxlan = new LinuxFastPathPlumbing();
  const guard = new LinuxFastPathGuard();
  if (!o.enabled) {
    for (const name of await vxlan.list().catch(() => [])) await vxlan.remove(name).catch((err) => o.log.warn(`cannot remove ${name}: ${describeError(err)}`));
    await guard.remove().catch((err) => o.log.warn(`cannot remove the fast path's guard rules: ${describeError(err)}`));
    return { fastPath: { off: o.offBecause ?? 'the fast path is off on this host (WEAVE_FASTPATH=off)' }, onChange: () => undefined, stop: async () => undefined };
  }
  // Twice a second, down after 2.5 s of silence: a blocked port moves its peer to the sleeve in
  // about 3 s (the issue asks 5), for 80 bytes per peer and half-second.
  const probe = await FastPathProbe.start({ localAddress: o.address, localPeerId: peerIdOf(o.host), vxlanPort: o.vxlanPort, echoPort: o.probePort, intervalMs: 500, downAfterMs: 2500, log: o.log });
  return {
    fastPath: {
      vxlan,
      probe,
      // Every peer is let in, not only those on the fast path: the probe's own echoes ride VXLAN.
      guard: (want) => guard.guard({ local: o.address, port: o.vxlanPort, ...want }),
      local: o.address,
      port: o.vxlanPort,
    },
    onChange: (cb) => void probe.onChange(() => cb()),
    stop: () => probe.stop(),
  };
}
