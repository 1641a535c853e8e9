import { parseArgs } from '../src/args';

/** The command line as the user types it: what it becomes, and what it says when it is wrong. */
const now = new Date('2026-01-01T12:00:00.000Z');
const parse = (line: string) => parseArgs(line.split(' ').filter(Boolean), now);
const refusal = (line: string): string => {
  try {
    parse(line);
  } catch (e) {
    return (e as Error).message.split('\nusage:')[0]!;
  }
  throw new Error(`${line} was accepted`);
};
/** One test per line: it is refused with a message that contains the text beside it. */
const refuses = (cases: Array<[string, string]>) => test.each(cases)('%s is refused: %s', (line, message) => expect(refusal(line)).toContain(message));

describe('events --since', () => {
  test.each([
    ['events --since 90s', '2026-01-01T11:58:30.000Z'],
    ['events --since 15m', '2026-01-01T11:45:00.000Z'],
    ['events --since=1h30m', '2026-01-01T10:30:00.000Z'],
    ['events --since 2d', '2025-12-30T12:00:00.000Z'],
    ['events --since 1500ms', '2026-01-01T11:59:58.500Z'],
    ['events --since 2026-01-01T11:00:00Z', '2026-01-01T11:00:00.000Z'],
    ['events --since 2026-01-01T12:30:00.250+01:00', '2026-01-01T11:30:00.250Z'],
  ])('%s starts at %s', (line, iso) => {
    expect(parse(line)).toEqual({ command: 'events', json: false, since: new Date(iso) });
  });

  test('with a filter and --json, in any order', () => {
    expect(parse('events --json --since 5m h1.ipam')).toEqual({ command: 'events', json: true, filter: 'h1.ipam', since: new Date('2026-01-01T11:55:00.000Z') });
  });

  refuses([
    ['events --since', '--since needs a value'],
    ['events --since --json', '--since needs a value'],
    ['events --since 5', 'expected a duration (90s, 15m, 1h30m, 2d) or an RFC3339 time'],
    ['events --since 5w', 'expected a duration'],
    ['events --since -5m', '--since needs a value, not -5m'],
    ['events --since 0s', 'must be longer than 0'],
    ['events --since yesterday', 'expected a duration'],
    ['events --since 2026-01-01', 'expected a duration'],
    ['events --since 2026-01-01T11:00:00', 'expected a duration'],
    ['events --since 2026-01-01T13:00:00Z', '2026-01-01T13:00:00.000Z is in the future'],
    ['status --since 5m', 'unexpected argument --since'],
  ]);

  test('a refusal names the value and ends with the usage', () => {
    expect(() => parse('events --since soon')).toThrow(/--since "soon": expected a duration[^]*\nusage: weave <command>/);
  });
});

describe('status --graph', () => {
  test.each([
    ['status --graph mesh.svg', 'mesh.svg'],
    ['status --graph=/tmp/mesh.svg', '/tmp/mesh.svg'],
    ['status --graph -', '-'],
    ['status --all --graph -', '-'],
  ])('%s draws to %s', (line, graph) => {
    expect(parse(line)).toMatchObject({ command: 'status', graph });
  });

  test('is left out when not asked for', () => {
    expect(parse('status --all')).toEqual({ command: 'status', json: false, all: true });
  });

  refuses([
    ['status --graph', '--graph needs a value'],
    ['status --graph=', '--graph needs a file name, or - for stdout'],
    ['status --graph - --json', '--graph writes a picture; it does not take --json'],
    ['peers --graph x.svg', 'unexpected argument --graph'],
    ['status x.svg', 'unexpected argument x.svg'],
  ]);
});

test('the other commands parse as before', () => {
  expect(parse('rmpeer host3 --force')).toEqual({ command: 'rmpeer', json: false, host: 'host3', force: true });
  expect(parse('ps --json')).toEqual({ command: 'ps', json: true });
  expect(parse('events h1')).toEqual({ command: 'events', json: false, filter: 'h1' });
  expect(refusal('rmpeer host3 --all')).toContain('unexpected argument --all');
  expect(refusal('events a/b')).toContain('filter must be NATS subject tokens');
});
