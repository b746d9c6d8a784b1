import { describe, expect, it } from 'vitest';
import { parseRedisUrl } from './redis-url.js';

describe('parseRedisUrl', () => {
  it('parses standalone URLs', () => {
    expect(parseRedisUrl('redis://127.0.0.1:6380/2')).toEqual({ host: '127.0.0.1', port: 6380, db: 2 });
    expect(parseRedisUrl('rediss://user:p%40ss@cache:6379')).toMatchObject({ host: 'cache', username: 'user', password: 'p@ss', tls: {} });
  });

  it('parses the Sentinel form', () => {
    const options = parseRedisUrl('redis-sentinel://:secret@a:26379,b:26380/mymaster?db=1');
    expect(options).toMatchObject({
      sentinels: [
        { host: 'a', port: 26379 },
        { host: 'b', port: 26380 },
      ],
      name: 'mymaster',
      password: 'secret',
      db: 1,
      failoverDetector: true,
    });
    // A write refused by a demoted master reconnects (to the new master) and is sent again; other errors do not.
    expect(options.reconnectOnError?.(new Error("READONLY You can't write against a read only replica."))).toBe(2);
    expect(options.reconnectOnError?.(new Error('ERR wrong number of arguments'))).toBe(false);
  });

  it('refuses what it cannot use', () => {
    expect(() => parseRedisUrl('redis-sentinel://a:26379')).toThrow(/master/);
    expect(() => parseRedisUrl('redis://h:6379/zero')).toThrow(/number/);
    expect(() => parseRedisUrl('memcached://h')).toThrow(/scheme/);
  });
});
