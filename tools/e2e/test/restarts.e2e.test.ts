import { containerIp, docker } from '@weave/docker-cli';
import { ProcessStack, useStack } from '../src';

/**
 * Each service killed with SIGKILL between container starts, as a crash would. Docker never
 * re-activates a plugin and never replays CreateNetwork, so everything must come from the
 * services' persisted state: existing containers keep their addresses, new starts work, and no
 * address is handed out twice.
 */
let stack: ProcessStack;
const scope = useStack((s) => (stack = s));

test.each(['ipam', 'netwire', 'plugin-api'] as const)('after %s is killed and restarted, old containers keep working and new ones start', async (svc) => {
  const net = await scope.network(stack.plugin, ['--subnet', `10.251.${['ipam', 'netwire', 'plugin-api'].indexOf(svc) + 10}.0/24`]);
  const before = [await scope.run([`--net=${net}`]), await scope.run([`--net=${net}`])];
  const ipsBefore = await Promise.all(before.map((c) => containerIp(c, net)));

  await stack.kill(svc);
  expect(stack.isAlive(svc)).toBe(false);
  await stack.startService(svc);

  const after = await scope.run([`--net=${net}`]);
  const ipAfter = await containerIp(after, net);
  expect(await Promise.all(before.map((c) => containerIp(c, net)))).toEqual(ipsBefore);
  expect(new Set([...ipsBefore, ipAfter]).size).toBe(3);
  for (const ip of ipsBefore) expect(await docker(['exec', after, 'ping', '-c', '1', '-W', '2', ip])).toMatch(/1 packets received/);

  // Teardown after the restart goes through the restarted service too.
  await scope.removeContainer(before[0]!);
  const reused = await scope.run([`--net=${net}`]);
  const all = await Promise.all([before[1]!, after, reused].map((c) => containerIp(c, net)));
  expect(new Set(all).size).toBe(3);
});
