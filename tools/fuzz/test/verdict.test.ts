import type { Case, Expect } from '../src/cases';
import type { Outcome } from '../src/send';
import { differences } from '../src/state';
import { verdict } from '../src/verdict';

const withExpect = (expect: Expect): Case => ({ to: 'plugin-raw', bytes: Buffer.alloc(0), index: 0, target: 't', what: 'w', expect });
const http = (status: number, body: string): Outcome => ({ kind: 'http', status, body });
const reply = (v: unknown): Outcome => ({ kind: 'reply', data: Buffer.from(JSON.stringify(v)) });

test.each([
  ['an IPAM refusal in Error', { kind: 'docker-refusal', iface: 'IpamDriver' }, http(200, '{"Error":"weave: no"}'), null],
  ['an IPAM refusal in Err, which Docker ignores on a 200', { kind: 'docker-refusal', iface: 'IpamDriver' }, http(200, '{"Err":"weave: no"}'), /200 without Error/],
  ['a network refusal in Err', { kind: 'docker-refusal', iface: 'NetworkDriver' }, http(200, '{"Err":"weave: no"}'), null],
  ['a broken request with a 400 and Err', { kind: 'docker-refusal', iface: 'IpamDriver' }, http(400, '{"Err":"weave: empty"}'), null],
  ['garbage accepted', { kind: 'docker-refusal', iface: 'NetworkDriver' }, http(200, '{}'), /200 without Err/],
  ['an empty error', { kind: 'docker-refusal', iface: 'NetworkDriver' }, http(500, '{"Err":""}'), /without Err/],
  ['a body that is not JSON', { kind: 'docker-404' }, http(404, 'not found'), /expected 404/],
  ['a 404 with Err', { kind: 'docker-404' }, http(404, '{"Err":"weave: no such plugin method"}'), null],
  ['a bare 400', { kind: 'docker-broken' }, http(400, ''), /4xx with Err/],
  ['an RPC refusal', { kind: 'rpc-refusal', codes: ['invalid'] }, reply({ ok: false, error: { code: 'invalid', message: 'bad' } }), null],
  ['an RPC refusal with another code', { kind: 'rpc-refusal', codes: ['invalid'] }, reply({ ok: false, error: { code: 'internal', message: 'oops' } }), /code internal/],
  ['an RPC success', { kind: 'rpc-refusal', codes: ['invalid'] }, reply({ ok: true, result: {} }), /accepted/],
  ['an RPC reply of another shape', { kind: 'rpc-refusal', codes: ['invalid'] }, reply({ error: 'x' }), /not \{ok/],
  ['no answer', { kind: 'rpc-refusal', codes: ['invalid'] }, { kind: 'failed', error: 'timeout' } as Outcome, /no answer/],
  ['a publish', { kind: 'no-reply' }, { kind: 'sent' } as Outcome, null],
] as Array<[string, Expect, Outcome, RegExp | null]>)('%s', (_name, expect_, outcome, problem) => {
  const v = verdict(withExpect(expect_), outcome);
  if (problem === null) expect(v).toBeNull();
  else expect(v).toMatch(problem);
});

test('differences name the paths that changed', () => {
  expect(differences({ a: { b: 1, c: [1, 2] } }, { a: { b: 1, c: [1, 2] } })).toEqual([]);
  expect(differences({ a: { b: 1, c: [1, 2] } }, { a: { b: 2, c: [1] } })).toEqual(['a.b: 1 → 2', 'a.c.1: 2 → absent']);
});
