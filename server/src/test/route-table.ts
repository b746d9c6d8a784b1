/** One route of the app: a method and Fastify's path pattern (`:id` for parameters). */
export interface Route {
  method: string;
  path: string;
}

/** The routes the app registered, read from Fastify's own route tree (`app.printRoutes({ commonPrefix: false })`). */
export function routesOf(tree: string): Route[] {
  const routes: Route[] = [];
  const prefixes: string[] = [];
  for (const line of tree.split('\n')) {
    const m = /^([│ ]*)[├└]── (\S*) \(([A-Z, ]+)\)$/.exec(line.trimEnd());
    if (!m) continue;
    const depth = (m[1] ?? '').length / 4;
    const path = `${prefixes[depth - 1] ?? ''}${m[2] ?? ''}`;
    prefixes[depth] = path;
    prefixes.length = depth + 1;
    for (const method of (m[3] ?? '').split(', ')) if (method !== 'HEAD') routes.push({ method, path: path.replace(/\/+/g, '/') });
  }
  return routes;
}
