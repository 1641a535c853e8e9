import { removeWeaveChains } from '../src/fastpath-guards';

/** After the last end-to-end suite, when no stack runs: the firewall chains the stacks left go too. */
export default async function globalTeardown(): Promise<void> {
  await removeWeaveChains();
}
