import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { AuthorizationError, connect } from '@nats-io/transport-node';
import { rpcClient, subscribeEvents } from '@weave/bus';
import { CommonEnv, DEFAULT_SECRETS_DIR, NATS_CLIENT_SECRET_FILE, natsAuth, readEnv } from '@weave/config';
import { ipamRpc, netwireRpc, routerRpc, Subjects } from '@weave/contracts';
import { UnavailableError } from '@weave/errors';
import { describeError } from '@weave/errors';
import { z } from 'zod';
import { eventLine, table } from './format';

/** Where compose/host.yml keeps the client credentials by default: run as root, the CLI finds them. */
const DEFAULT_CREDS = join(DEFAULT_SECRETS_DIR, NATS_CLIENT_SECRET_FILE);

const USAGE = `usage: weave <command>
  events [--json] [host|host.service|host.service.kind]   print events as they happen
  status [--json]                                         networks, endpoints and address pools on this host
environment: WEAVE_NATS_URL (default nats://127.0.0.1:4222), WEAVE_HOST (default: this machine),
  WEAVE_NATS_CREDS_FILE (default ${DEFAULT_CREDS} when it exists: the stack's, root's only)`;

const Args = z.discriminatedUnion('command', [
  z.object({ command: z.literal('events'), json: z.boolean(), filter: z.string().regex(/^[A-Za-z0-9_.*>-]+$/, 'filter must be NATS subject tokens').optional() }),
  z.object({ command: z.literal('status'), json: z.boolean() }),
]);

function parseArgs(argv: string[]): z.output<typeof Args> {
  const json = argv.includes('--json');
  const [command, filter, ...rest] = argv.filter((a) => a !== '--json');
  const unknownFlag = argv.find((a) => a.startsWith('-') && a !== '--json');
  if (unknownFlag || rest.length) throw new Error(`unexpected argument ${unknownFlag ?? rest[0]}\n${USAGE}`);
  const r = Args.safeParse({ command, json, ...(filter ? { filter } : {}) });
  if (!r.success) throw new Error(`${z.prettifyError(r.error)}\n${USAGE}`);
  return r.data;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const env = readEnv(CommonEnv);
  const auth = natsAuth({ WEAVE_NATS_CREDS_FILE: env.WEAVE_NATS_CREDS_FILE ?? (existsSync(DEFAULT_CREDS) ? DEFAULT_CREDS : undefined) });
  const nc = await connect({ servers: env.WEAVE_NATS_URL.split(','), ...auth }).catch((e) => {
    if (e instanceof AuthorizationError) {
      const fix = auth.user ? 'the file is not the one the stack uses' : `run as root (the stack's are in ${DEFAULT_CREDS}) or set WEAVE_NATS_CREDS_FILE`;
      throw new Error(`NATS at ${env.WEAVE_NATS_URL} refused ${auth.user ? `user ${auth.user}` : 'a connection without credentials'}: ${fix}`, { cause: e });
    }
    throw new Error(`cannot reach NATS at ${env.WEAVE_NATS_URL}: is the stack up (npm start)?`, { cause: e });
  });
  if (args.command === 'events') {
    const subject = args.filter ? `weave.events.${args.filter}${args.filter.split('.').length < 3 ? '.>' : ''}` : Subjects.allEvents;
    subscribeEvents(
      nc,
      (e) => console.log(args.json ? JSON.stringify(e) : eventLine(e)),
      (s, err) => console.error(`ignored a malformed event on ${s}: ${describeError(err)}`),
      subject,
    );
    process.on('SIGINT', () => void nc.close().then(() => process.exit(0)));
    return;
  }
  const [ipam, wire, router] = await Promise.all([
    rpcClient(nc, env.WEAVE_HOST, ipamRpc).status({}),
    rpcClient(nc, env.WEAVE_HOST, netwireRpc).status({}),
    // A single host runs without a router; its absence is not an error.
    rpcClient(nc, env.WEAVE_HOST, routerRpc, { timeoutMs: 2000 }).status({}).catch((e: unknown) => {
      if (e instanceof UnavailableError) return null;
      throw e;
    }),
  ]);
  if (args.json) console.log(JSON.stringify({ host: env.WEAVE_HOST, ipam, netwire: wire, router }, null, 2));
  else {
    console.log(`host ${env.WEAVE_HOST}${router ? ` (${router.address}:${router.port})` : ''}\n`);
    if (router) {
      console.log(
        table(
          ['PEER', 'ADDRESS', 'STATE', 'PATH', 'MTU', 'SINCE', 'LAST SEEN'],
          router.peers.map((p) => [p.host, `${p.address}:${p.port}`, p.state, p.path ?? '-', p.mtu === null ? '-' : String(p.mtu), p.since, p.lastSeen]),
        ),
      );
      const c = router.sleeve;
      const drops = Object.entries(c).filter(([k, v]) => /^(drop|malformed)/.test(k) && v !== '0');
      console.log(`\nsleeve: ${c.tapFramesIn ?? 0} frames out to peers, ${c.framesFromPeers ?? 0} in; dropped: ${drops.map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}\n`);
    }
    const tapOf = new Map((router?.networks ?? []).map((n) => [n.networkId, n]));
    console.log(
      table(
        ['NETWORK', 'BRIDGE', 'SUBNETS', 'MTU', 'INTERNAL', 'ENDPOINTS', 'WIRE ID', 'SLEEVE TAP'],
        wire.networks.map((n) => {
          const t = tapOf.get(n.networkId);
          return [n.networkId.slice(0, 12), n.bridge, n.subnets.join(','), String(n.mtu), String(n.internal), String(n.endpoints), `0x${n.wireId.toString(16).padStart(8, '0')}`, t ? `${t.tap}${t.attached ? '' : ' (not attached)'}` : '-'];
        }),
      ),
    );
    console.log();
    console.log(table(['POOL', 'RANGE', 'HOLDERS', 'BLOCKS (owner used/size)'], ipam.pools.map((p) => [p.pool, p.subPool ?? '-', Object.entries(p.holders).map(([h, n]) => `${h}:${n}`).join(','), p.blocks.map((b) => `${b.block} ${b.owner} ${b.used}/${b.size}`).join('; ')])));
  }
  await nc.close();
}

main().catch((e: Error) => {
  console.error(`weave: ${describeError(e)}`);
  process.exit(1);
});
