import { request } from 'node:http';
import { METRICS_HOST } from './server';

export interface ScrapeResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One request to a metrics port on loopback, as Prometheus would scrape it (no keep-alive). */
export function scrape(port: number, o: { path?: string; method?: string; host?: string } = {}): Promise<ScrapeResult> {
  return new Promise((resolve, reject) => {
    const req = request({ host: o.host ?? METRICS_HOST, port, path: o.path ?? '/metrics', method: o.method ?? 'GET', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject).end();
  });
}
