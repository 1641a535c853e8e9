import { join } from 'node:path';
import { EventPublisher, openBucket, rpcClient, serveRpc } from '@weave/bus';
import { runService } from '@weave/config';
import { Buckets, ipamRpc, netwireRpc, pluginApiRpc } from '@weave/contracts';
import { Catalogue } from './catalogue/catalogue';
import { SocketDockerEngine } from './catalogue/docker-engine';
import { waitFor } from '@weave/sync';
import { routes } from './driver';
import { PluginApiEnv, reconcileSettings } from './env';
import { DockerReconciler } from './reconcile/reconciler';
import { listenOnSocket, pluginServer } from './server';

/** True once every probe answers, false if they have not within `ms`. */
const waitForBackends = (probes: Array<() => Promise<unknown>>, ms: number): Promise<boolean> =>
  waitFor(() => Promise.all(probes.map((p) => p())), { what: 'ipam and netwire', timeoutMs: ms, intervalMs: 200 }).then(
    () => true,
    () => false,
  );

void runService('plugin-api', PluginApiEnv, async ({ env, log, nc }) => {
  const reconcile = reconcileSettings(env);
  const events = new EventPublisher(nc, env.WEAVE_HOST, 'plugin-api', log);
  const opts = { timeoutMs: env.WEAVE_RPC_TIMEOUT_MS };
  const ipam = rpcClient(nc, env.WEAVE_HOST, ipamRpc, opts);
  const netwire = rpcClient(nc, env.WEAVE_HOST, netwireRpc, opts);
  const table = routes({ ipam, netwire });
  const server = pluginServer(table, log, (c) => {
    log.debug({ method: c.method, status: c.status, ms: Math.round(c.ms * 10) / 10 }, 'docker call');
    if (c.error) events.publish('docker.call.failed', { method: c.method, message: c.error, status: c.status });
  });
  // Docker caches a failed handshake until it restarts, and retries a missing socket for 15 s, so
  // the socket appears only once NATS is connected (runService waited for it) and, within a
  // bound, once ipam and netwire answer: a start right after `compose up` then just works.
  const ready = await waitForBackends([() => ipam.status({}), () => netwire.status({})], env.WEAVE_BACKEND_WAIT_MS);
  if (!ready) log.warn({ waitedMs: env.WEAVE_BACKEND_WAIT_MS }, 'ipam or netwire not answering yet; listening anyway, calls will fail until they do');
  const socket = join(env.WEAVE_PLUGIN_DIR, `${env.WEAVE_PLUGIN_NAME}.sock`);
  await listenOnSocket(server, socket);
  log.info({ socket }, 'plugin listening');
  events.publish('service.started', { version: '0.1.0', pid: process.pid });
  const engine = new SocketDockerEngine(env.WEAVE_DOCKER_SOCKET);
  const reconciler = new DockerReconciler({ driver: env.WEAVE_PLUGIN_NAME, docker: engine, ipam, netwire, events, log, ...reconcile });
  reconciler.start();
  const rpc = serveRpc(nc, env.WEAVE_HOST, pluginApiRpc, { reconcile: () => reconciler.run() }, log);
  // After the socket: creating a network from the catalogue makes Docker call this plugin.
  const catalogue =
    env.WEAVE_CATALOGUE === 'on'
      ? new Catalogue({ host: env.WEAVE_HOST, driver: env.WEAVE_PLUGIN_NAME, engine, kv: await openBucket(nc, Buckets.catalogue, { replicas: env.WEAVE_KV_REPLICAS }), events, log })
      : null;
  await catalogue?.start();
  return async () => {
    rpc.unsubscribe();
    await reconciler.stop();
    await catalogue?.stop();
    await new Promise((r) => server.close(r));
  };
});
