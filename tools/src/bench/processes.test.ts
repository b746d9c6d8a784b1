import { describe, expect, it } from 'vitest';
import { problemKind, startProcess } from './processes.js';

describe('problemKind', () => {
  it('groups pino lines by level, message and error message, ignoring ids and times', () => {
    const line = (reqId: string, time: number): string =>
      JSON.stringify({ level: 50, time, reqId, msg: 'request failed', err: { type: 'Error', message: 'timeout exceeded when trying to connect', stack: 'Error: …' } });
    expect(problemKind(line('a', 1))).toBe('error: request failed: timeout exceeded when trying to connect');
    expect(problemKind(line('b', 2))).toBe(problemKind(line('a', 1)));
  });

  it('reads message fields from a truncated JSON line', () => {
    expect(problemKind('{"level":40,"msg":"slow upstream","err":{"message":"late"')).toBe('slow upstream: late');
  });

  it('groups plain text lines with numbers masked', () => {
    expect(problemKind('(node:123) Warning: x')).toBe(problemKind('(node:456) Warning: x'));
  });
});

describe('startProcess', () => {
  const node = process.execPath;

  it('waits for a line, keeps the tail, counts stderr lines as problems, and stops the process with SIGTERM', async () => {
    const child = startProcess(
      'child',
      node,
      ['-e', "console.log('booting'); console.error('a warning'); console.log('ready at http://127.0.0.1:1'); setInterval(() => {}, 1000);"],
      { env: process.env, cwd: process.cwd() },
    );
    expect(await child.waitForLine(/^ready at /, 10_000)).toBe('ready at http://127.0.0.1:1');
    const exit = await child.stop(5_000);
    expect(exit.signal).toBe('SIGTERM');
    expect(child.tail()).toContain('booting');
    expect(child.problems().count).toBe(1);
    expect(child.problems().kinds).toEqual([{ kind: 'a warning', count: 1 }]);
  });

  it('rejects the wait when the process exits without the line', async () => {
    const child = startProcess('quitter', node, ['-e', 'process.exit(3)'], { env: process.env, cwd: process.cwd() });
    await expect(child.waitForLine(/never/, 10_000)).rejects.toThrow(/quitter exited \(code 3\)/);
  });
});
