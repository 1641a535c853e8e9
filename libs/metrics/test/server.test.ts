import { createServer } from 'node:net';
import { ConflictError } from '@weave/errors';
import { silentLogger } from '@weave/log';
import { z } from 'zod';
import { CallMetrics, timedHandlers } from '../src/calls';
import { MetricsPort } from '../src/env';
import { CONTENT_TYPE, parseSamples } from '../src/exposition';
import { Registry } from '../src/registry';
import { scrape } from '../src/scrape';
import { MetricsServer, serveMetrics } from '../src/server';

const log = silentLogger();
const variable = 'WEAVE_TEST_METRICS_PORT';

const http = async (port: number, path: string, method = 'GET') => {
  const r = await scrape(port, { path, method });
  return { status: r.status, type: r.headers['content-type'], allow: r.headers.allow, body: r.body };
};

describe('serveMetrics', () => {
  let server: MetricsServer | null = null;
  afterEach(async () => {
    await server?.close();
    server = null;
  });

  it('answers GET /metrics on loopback with the exposition, 404 elsewhere and 405 for other methods', async () => {
    const r = new Registry();
    const c = r.counter({ name: 'weave_hits_total', help: 'Hits' });
    server = await serveMetrics(r, { port: 0, log, variable });
    const port = server!.port;
    c.inc();
    const ok = await http(port, '/metrics?x=1');
    expect({ status: ok.status, type: ok.type }).toEqual({ status: 200, type: CONTENT_TYPE });
    expect(parseSamples(ok.body).weave_hits_total).toBe(1);
    expect((await http(port, '/metrics', 'HEAD')).status).toBe(200);
    expect((await http(port, '/')).status).toBe(404);
    expect((await http(port, '/metrics/x')).status).toBe(404);
    const post = await http(port, '/metrics', 'POST');
    expect({ status: post.status, allow: post.allow }).toEqual({ status: 405, allow: 'GET, HEAD' });
  });

  it('answers 500 with the reason when a collector fails', async () => {
    const r = new Registry();
    r.collect(() => {
      throw new Error('state not there');
    });
    server = await serveMetrics(r, { port: 0, log, variable });
    expect(await http(server!.port, '/metrics')).toMatchObject({ status: 500, body: expect.stringMatching(/state not there/) });
  });

  it('serves nothing when off, and runs on without metrics when the port is taken', async () => {
    expect(await serveMetrics(new Registry(), { port: null, log, variable })).toBeNull();
    const holder = createServer();
    await new Promise<void>((r) => holder.listen(0, '127.0.0.1', r));
    const taken = (holder.address() as { port: number }).port;
    try {
      expect(await serveMetrics(new Registry(), { port: taken, log, variable })).toBeNull();
    } finally {
      await new Promise((r) => holder.close(r));
    }
  });
});

test('MetricsPort: a port, 0 or off for none, the default when unset', () => {
  const schema = z.object({ P: MetricsPort(9781) });
  expect(schema.parse({}).P).toBe(9781);
  expect(schema.parse({ P: '9790' }).P).toBe(9790);
  expect(schema.parse({ P: '0' }).P).toBeNull();
  expect(schema.parse({ P: 'off' }).P).toBeNull();
  for (const bad of ['65536', '-1', 'on', '12.5']) expect(schema.safeParse({ P: bad }).success).toBe(false);
});

test('timedHandlers counts and times each call under its method, with the error code as outcome', async () => {
  const r = new Registry();
  const m = new CallMetrics(r, { calls: 'weave_t_calls_total', duration: 'weave_t_call_duration_seconds', what: 'test calls' });
  const h = timedHandlers(
    {
      ok: async (x: number) => x + 1,
      taken: async () => {
        throw new ConflictError('taken');
      },
      broken: async () => {
        throw new Error('bug');
      },
    },
    m,
  );
  expect(await h.ok(1)).toBe(2);
  await expect(h.taken()).rejects.toBeInstanceOf(ConflictError);
  await expect(h.broken()).rejects.toThrow('bug');
  expect(parseSamples(await r.text())).toMatchObject({
    'weave_t_calls_total{method="ok",outcome="ok"}': 1,
    'weave_t_calls_total{method="taken",outcome="conflict"}': 1,
    'weave_t_calls_total{method="broken",outcome="internal"}': 1,
    'weave_t_call_duration_seconds_count{method="ok"}': 1,
  });
});
