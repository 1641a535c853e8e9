import { z } from 'zod';
import { CommonEnv, readEnv } from './env';

describe('readEnv', () => {
  it('applies defaults, also for variables set to the empty string', () => {
    const env = readEnv(CommonEnv, { WEAVE_HOST: '', WEAVE_NATS_URL: '' });
    expect(env.WEAVE_NATS_URL).toBe('nats://127.0.0.1:4222');
    expect(env.WEAVE_HOST).toMatch(/^[A-Za-z0-9_-]+$/);
  });
  it('refuses a replica count a NATS cluster cannot have', () => {
    expect(() => readEnv(CommonEnv, { WEAVE_KV_REPLICAS: '0' })).toThrow(/WEAVE_KV_REPLICAS/);
  });
  it('names every bad variable', () => {
    const schema = CommonEnv.extend({ PORT: z.coerce.number().int() });
    expect(() => readEnv(schema, { WEAVE_HOST: 'bad host!', PORT: 'x' })).toThrow(/WEAVE_HOST[\s\S]*PORT/);
  });
});
