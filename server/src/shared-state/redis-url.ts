import type { RedisOptions } from 'ioredis';

/**
 * Parses REDIS_URL into ioredis options. Besides redis:// and rediss://, a
 * Sentinel deployment is written
 * `redis-sentinel://[:password@]host:port[,host:port…]/masterName[?db=0&sentinelPassword=…]`.
 */
export function parseRedisUrl(value: string): RedisOptions {
  if (value.startsWith('redis-sentinel://')) {
    const rest = value.slice('redis-sentinel://'.length);
    const slash = rest.indexOf('/');
    if (slash < 0) throw new Error('a redis-sentinel:// URL must name the master: redis-sentinel://host:26379/mymaster');
    let authority = rest.slice(0, slash);
    const [pathPart = '', query = ''] = rest.slice(slash + 1).split('?');
    const name = decodeURIComponent(pathPart);
    if (!name) throw new Error('a redis-sentinel:// URL must name the master: redis-sentinel://host:26379/mymaster');
    let password: string | undefined;
    const at = authority.lastIndexOf('@');
    if (at >= 0) {
      const userInfo = authority.slice(0, at);
      authority = authority.slice(at + 1);
      const colon = userInfo.indexOf(':');
      password = decodeURIComponent(colon >= 0 ? userInfo.slice(colon + 1) : userInfo) || undefined;
    }
    const sentinels = authority.split(',').map((hostPort) => {
      const m = /^([^:]+|\[[^\]]+\])(?::(\d+))?$/.exec(hostPort.trim());
      if (!m?.[1]) throw new Error(`bad sentinel address "${hostPort}"`);
      return { host: m[1].replace(/^\[|\]$/g, ''), port: m[2] ? Number(m[2]) : 26379 };
    });
    const params = new URLSearchParams(query);
    const db = params.get('db');
    const sentinelPassword = params.get('sentinelPassword');
    return {
      sentinels,
      name,
      // Reconnect as soon as a Sentinel announces a new master (+switch-master), rather than when the old
      // master, now a replica, refuses a write: far fewer writes fail during a planned failover.
      failoverDetector: true,
      // A write that reached the old master after it was demoted: find the master again and resend it.
      reconnectOnError: (err: Error) => (err.message.startsWith('READONLY') ? 2 : false),
      ...(password ? { password } : {}),
      ...(sentinelPassword ? { sentinelPassword } : {}),
      ...(db ? { db: Number(db) } : {}),
    };
  }
  const url = new URL(value);
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') throw new Error(`unsupported scheme ${url.protocol}`);
  const db = url.pathname.replace(/^\//, '');
  if (db && !/^\d+$/.test(db)) throw new Error(`database must be a number, got "${db}"`);
  return {
    host: url.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1',
    port: url.port ? Number(url.port) : 6379,
    ...(url.username ? { username: decodeURIComponent(url.username) } : {}),
    ...(url.password ? { password: decodeURIComponent(url.password) } : {}),
    ...(db ? { db: Number(db) } : {}),
    ...(url.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}
