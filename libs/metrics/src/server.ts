import { createServer, IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describeError } from '@weave/errors';
import type { Logger } from '@weave/log';
import { CONTENT_TYPE } from './exposition';
import type { Registry } from './registry';

/** Loopback only: nothing of weave listens beyond it but the router's data port and NATS' cluster port. */
export const METRICS_HOST = '127.0.0.1';

export interface MetricsServer {
  /** The port it listens on (the one asked for, or the one the kernel chose for 0). */
  port: number;
  close(): Promise<void>;
}

export interface ServeMetricsOptions {
  /** null: no metrics (the variable said 0 or off); 0: any free port (tests). */
  port: number | null;
  log: Logger;
  /** The variable that sets the port, named when it cannot be used. */
  variable: string;
}

/**
 * Serves `GET /metrics` on 127.0.0.1:<port>. Metrics are optional: a port that cannot be had
 * (another process holds it) is logged with the fix, and the service runs on without them.
 */
export async function serveMetrics(registry: Registry, o: ServeMetricsOptions): Promise<MetricsServer | null> {
  if (o.port === null) {
    o.log.info(`metrics not served (${o.variable} is off)`);
    return null;
  }
  const server = createServer((req, res) => void answer(registry, req, res, o.log));
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(o.port!, METRICS_HOST, () => resolve());
    });
  } catch (err) {
    o.log.error({ err }, `metrics not served: cannot listen on ${METRICS_HOST}:${o.port} (${describeError(err)}); set ${o.variable} to a free port, or to off`);
    return null;
  }
  const port = (server.address() as AddressInfo).port;
  o.log.info({ url: `http://${METRICS_HOST}:${port}/metrics` }, 'metrics served');
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function answer(registry: Registry, req: IncomingMessage, res: ServerResponse, log: Logger): Promise<void> {
  const path = (req.url ?? '').split('?')[0];
  if (path !== '/metrics') return send(res, 404, 'not found: the metrics are at /metrics\n');
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('Allow', 'GET, HEAD');
    return send(res, 405, `method ${req.method} not allowed: GET /metrics\n`);
  }
  try {
    send(res, 200, await registry.text(), CONTENT_TYPE);
  } catch (err) {
    log.error({ err }, `collecting metrics failed: ${describeError(err)}`);
    send(res, 500, `collecting metrics failed: ${describeError(err)}\n`);
  }
}

function send(res: ServerResponse, status: number, text: string, type = 'text/plain; charset=utf-8'): void {
  // HEAD: Node sends the headers (with the length) and leaves the body out.
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}
