import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { EventPublisher, openBucket, rpcClient, serveRpc } from '@weave/bus';
import { runService } from '@weave/config';
import { Buckets, ipamRpc, netwireRpc, pluginApiRpc } from '@weave/contracts';
import { serveMetrics, serviceRegistry } from '@weave/metrics';
import { Catalogue } from './catalogue/catalogue';
import { SocketDockerEngine } from './catalogue/docker-engine';
import { BackendGate } from './backend-gate';
import { KvIpamHosts } from './dns/ipam-hosts';
import { DnsPublisher } from './dns/publisher';
import { KvDnsRecords } from './dns/record-store';
import { dockerPoolView } from './docker-pools';
import { routes } from './driver';
import { PluginApiEnv, reconcileSettings } from './env';
import { dockerCallMetrics } from './metrics';
import { DockerReconciler } from './reconcile/reconciler';
import { onIpamTriggers } from './reconcile/ipam-triggers';
import { Readdresser } from './reconcile/readdresser';
import { KvReaddressStore } from './reconcile/readdress-store';
import { internalPortsCheck } from './ports';
import { listenOnSocket, pluginServer } from './server';
import { stickToMac } from './sticky-macs';

void runService('plugin-api', PluginApiEnv, async ({ env, log, nc }) => {
  const reconcile = reconcileSettings(env);
  const events = new EventPublisher(nc, env.WEAVE_HOST, 'plugin-api', log);
  const opts = { timeoutMs: env.WEAVE_RPC_TIMEOUT_MS };
  const ipam = rpcClient(nc, env.WEAVE_HOST, ipamRpc, opts);
  const netwire = rpcClient(nc, env.WEAVE_HOST, netwireRpc, opts);
  const gate = new BackendGate([() => ipam.status({}), () => netwire.status({})], env.WEAVE_BACKEND_WAIT_MS, log);
  // RequestPool and ReleasePool name no network: ipam decides with Docker's list of them.
  const dockerPools = dockerPoolView({ docker: new SocketDockerEngine(env.WEAVE_DOCKER_SOCKET), driver: env.WEAVE_PLUGIN_NAME, graceMs: reconcile.graceMs, log });
  // A container publishing ports on internal networks alone is refused: Docker would drop them silently.
  const internalPorts = internalPortsCheck({ docker: new SocketDockerEngine(env.WEAVE_DOCKER_SOCKET), log });
  const sticky = env.WEAVE_STICKY_ADDRESSES === 'on' ? stickToMac(gate.guard(ipam), log) : undefined;
  const table = routes({ ipam: gate.guard(ipam), netwire: gate.guard(netwire), dockerPools, internalPorts, sticky });
  const metrics = serviceRegistry('plugin-api', env.WEAVE_HOST);
  const countCall = dockerCallMetrics(metrics, Object.keys(table));
  const server = pluginServer(table, log, (c) => {
    countCall(c);
    log.debug({ method: c.method, status: c.status, ms: Math.round(c.ms * 10) / 10 }, 'docker call');
    if (c.error) events.publish('docker.call.failed', { method: c.method, message: c.error, status: c.status });
  });
  // Listening at once: Docker looks for a missing socket for only 15 s, and caches a failed
  // handshake until it restarts; the handshake needs no backend, and calls wait at the gate.
  void gate.open();
  const socket = join(env.WEAVE_PLUGIN_DIR, `${env.WEAVE_PLUGIN_NAME}.sock`);
  await listenOnSocket(server, socket);
  log.info({ socket }, 'plugin listening');
  const served = await serveMetrics(metrics, { port: env.WEAVE_PLUGIN_API_METRICS_PORT, log, variable: 'WEAVE_PLUGIN_API_METRICS_PORT' });
  events.publish('service.started', { version: '0.1.0', pid: process.pid });
  const engine = new SocketDockerEngine(env.WEAVE_DOCKER_SOCKET);
  const readdressStore = new KvReaddressStore(() => openBucket(nc, Buckets.readdress, { replicas: env.WEAVE_KV_REPLICAS }), env.WEAVE_HOST, log);
  const readdress = new Readdresser({ driver: env.WEAVE_PLUGIN_NAME, docker: engine, ipam, netwire, store: readdressStore, events, log });
  const reconciler = new DockerReconciler({ driver: env.WEAVE_PLUGIN_NAME, docker: engine, ipam, netwire, events, log, ...reconcile, readdress });
  reconciler.start();
  const dnsRecords = new KvDnsRecords(() => openBucket(nc, Buckets.dns, { replicas: env.WEAVE_KV_REPLICAS }), env.WEAVE_HOST, log);
  const ipamHosts = new KvIpamHosts(() => openBucket(nc, Buckets.ipamHosts, { replicas: env.WEAVE_KV_REPLICAS }), log);
  const dns = new DnsPublisher({ host: env.WEAVE_HOST, driver: env.WEAVE_PLUGIN_NAME, docker: engine, store: dnsRecords, ipamHosts, events, log });
  // A reclaim found on ipam's side moves the containers at once, not at the next interval; the
  // names are published after the moves, so a container's name never comes back with an address
  // another host took.
  const triggers = onIpamTriggers(nc, env.WEAVE_HOST, (kind) => {
    void reconciler
      .run()
      .catch((err: unknown) => log.warn({ err, kind }, `reconciling after ipam's ${kind} failed`))
      .finally(() => dns.trigger());
  }, log);
  // Our ipam reclaimed a host: its containers' names go now (the hosts' watch may have seen it first).
  triggers.push(...onIpamTriggers(nc, env.WEAVE_HOST, () => void dns.trigger(), log, ['host.reclaimed']));
  const rpc = serveRpc(nc, env.WEAVE_HOST, pluginApiRpc, { reconcile: () => reconciler.run(), status: async () => ({ readdress: await readdress.status() }) }, log);
  // After the socket: creating a network from the catalogue makes Docker call this plugin.
  const catalogue =
    env.WEAVE_CATALOGUE === 'on'
      ? new Catalogue({ host: env.WEAVE_HOST, driver: env.WEAVE_PLUGIN_NAME, engine, kv: await openBucket(nc, Buckets.catalogue, { replicas: env.WEAVE_KV_REPLICAS }), events, log })
      : null;
  await catalogue?.start();
  dns.start();
  return async () => {
    // The socket goes first: the rest can take a while (a catalogue pass waiting on a JetStream
    // without quorum), and a socket file left behind would make Docker wait on a plugin that is gone.
    const closed = new Promise((r) => server.close(r));
    rmSync(socket, { force: true });
    await served?.close();
    rpc.unsubscribe();
    for (const t of triggers) t.unsubscribe();
    await reconciler.stop();
    await readdressStore.stop();
    await catalogue?.stop();
    // The records' watch first, so a pass waiting on it gives up now rather than at its timeout.
    const dnsStopped = dns.stop();
    await Promise.all([dnsRecords.stop(), ipamHosts.stop()]);
    await dnsStopped;
    await closed;
  };
});
