import pg from 'pg';

/**
 * Runs one statement on a connection of its own. With `timeoutMs`, both
 * connecting and the statement give up after that long (a probe of a
 * deployment in the middle of a failover must not hang).
 */
export async function queryRows<T extends pg.QueryResultRow>(databaseUrl: string, text: string, values: unknown[] = [], timeoutMs?: number): Promise<T[]> {
  const client = new pg.Client({
    connectionString: databaseUrl,
    ...(timeoutMs === undefined ? {} : { connectionTimeoutMillis: timeoutMs, query_timeout: timeoutMs }),
  });
  // A connection cut while idle (HAProxy dropping it) is reported here rather than thrown at the process.
  client.on('error', () => undefined);
  await client.connect();
  try {
    return (await client.query<T>(text, values)).rows;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Where a connection to `databaseUrl` lands: the server's address and port, and whether it is a replica. */
export async function landing(databaseUrl: string, timeoutMs = 3_000): Promise<{ host: string; port: number; replica: boolean }> {
  const [row] = await queryRows<{ host: string; port: number; replica: boolean }>(
    databaseUrl,
    'SELECT host(inet_server_addr()) AS host, inet_server_port() AS port, pg_is_in_recovery() AS replica',
    [],
    timeoutMs,
  );
  if (row === undefined) throw new Error('no row');
  return row;
}
