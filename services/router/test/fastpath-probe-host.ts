import { createInterface } from 'node:readline';
import { silentLogger } from '@weave/log';
import { FastPathProbe } from '../src/fastpath-probe';

/**
 * One simulated host's fast path probe, run by `ip netns exec <ns> node --import tsx <this>
 * '<options>'` (a socket cannot enter another namespace). Speaks JSON lines: prints
 * {"ready":…} once started and {"change":{host,up,reason,at}} on every verdict change; reads
 * {"peers":[{host,address,peerId}]} (peer ids as decimal strings) and answers {"peersSet":true}.
 * Stops, removing its device, when stdin closes or on SIGTERM.
 */
async function main(): Promise<void> {
  const o = JSON.parse(process.argv[2] ?? '{}');
  const say = (x: unknown) => process.stdout.write(JSON.stringify(x) + '\n');
  const probe = await FastPathProbe.start({ ...o, localPeerId: BigInt(o.localPeerId), log: silentLogger() });
  probe.onChange((host, up, reason) => say({ change: { host, up, reason, at: Date.now() } }));
  let stopping: Promise<void> | null = null;
  const stop = () => (stopping ??= probe.stop().then(() => process.exit(0)));
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (l) => {
    const m = JSON.parse(l) as { peers: Array<{ host: string; address: string; peerId: string }> };
    probe.setPeers(m.peers.map((p) => ({ ...p, peerId: BigInt(p.peerId) }))).then(
      () => say({ peersSet: true }),
      (e: Error) => say({ error: e.message }),
    );
  });
  lines.on('close', stop);
  process.on('SIGTERM', stop);
  say({ ready: true, unavailable: probe.unavailable });
}

main().catch((e) => {
  process.stderr.write(`fastpath-probe-host: ${(e as Error).stack}\n`);
  process.exit(1);
});
