import { silentLogger } from '@weave/log';
import { BackendGate } from '../src/backend-gate';

/** A stand-in backend whose readiness the test flips; the gate only sees its probe and its calls. */
function backend() {
  let ready = false;
  const calls: unknown[] = [];
  return {
    setReady: () => (ready = true),
    probe: async () => {
      if (!ready) throw new Error('no responders');
    },
    client: {
      status: async (req: unknown) => {
        calls.push(req);
        if (!ready) throw new Error('the ipam service is not running');
        return { ok: true };
      },
    },
    calls,
  };
}

test('calls made while the backends are away wait for them, then go through', async () => {
  const b = backend();
  const gate = new BackendGate([b.probe], 10_000, silentLogger());
  const guarded = gate.guard(b.client as never) as unknown as typeof b.client;
  const first = guarded.status({ n: 1 });
  const second = guarded.status({ n: 2 });
  await new Promise((r) => setTimeout(r, 300));
  expect(b.calls).toEqual([]); // held at the gate, not failed
  b.setReady();
  await expect(Promise.all([first, second])).resolves.toEqual([{ ok: true }, { ok: true }]);
  expect(b.calls).toEqual([{ n: 1 }, { n: 2 }]);
});

test('past the bound a call goes ahead and fails with the backend\'s own error', async () => {
  const b = backend();
  const gate = new BackendGate([b.probe], 300, silentLogger());
  const guarded = gate.guard(b.client as never) as unknown as typeof b.client;
  await expect(guarded.status({})).rejects.toThrow('the ipam service is not running');
});

test('once open, the gate adds nothing', async () => {
  const b = backend();
  b.setReady();
  const gate = new BackendGate([b.probe], 300, silentLogger());
  await gate.open();
  const guarded = gate.guard(b.client as never) as unknown as typeof b.client;
  await expect(guarded.status({ n: 3 })).resolves.toEqual({ ok: true });
});
