import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { SCENARIOS } from '../drill/scenarios.js';
import { kubectlPath, kubernetesDir, renderKustomization, repoRoot, validateObject, type KubeObject } from './test-support.js';

/**
 * deploy/kubernetes/: every kustomization renders with `kubectl kustomize`
 * (offline), every rendered object passes its schema and has no unknown
 * field, and the Deployment keeps the promises the app makes about its
 * health routes and its shutdown.
 */
const required = process.env.LLMCHAT_REQUIRE_SERVICES === '1';
const KUSTOMIZATIONS = ['base', 'overlays/production', 'chaos'] as const;

type Rendered = Record<(typeof KUSTOMIZATIONS)[number], KubeObject[]>;

function find(objects: KubeObject[], kind: string): KubeObject {
  const found = objects.find((o) => o.kind === kind);
  if (found === undefined) throw new Error(`no ${kind} rendered`);
  return found;
}

interface Container {
  name: string;
  startupProbe?: { httpGet?: { path: string; port: string | number } };
  readinessProbe?: { httpGet?: { path: string; port: string | number } };
  livenessProbe?: { httpGet?: { path: string; port: string | number } };
  lifecycle?: { preStop?: { sleep?: { seconds: number } } };
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: { readOnlyRootFilesystem?: boolean; runAsNonRoot?: boolean; allowPrivilegeEscalation?: boolean; capabilities?: { drop?: string[] } };
  volumeMounts?: { name: string; mountPath: string }[];
  env?: { name: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }[];
}
interface PodSpec {
  terminationGracePeriodSeconds?: number;
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number; runAsGroup?: number; seccompProfile?: { type: string } };
  containers: Container[];
  volumes?: { name: string; emptyDir?: object }[];
}
const podSpec = (deployment: KubeObject) => (deployment as unknown as { spec: { template: { spec: PodSpec } } }).spec.template.spec;

describe.runIf(required)('the Kubernetes checks have their tool here (LLMCHAT_REQUIRE_SERVICES=1)', () => {
  it('has kubectl', () => {
    expect(kubectlPath()).toBeDefined();
  });
});

describe.skipIf(kubectlPath() === undefined)('deploy/kubernetes', () => {
  const rendered = {} as Rendered;
  beforeAll(async () => {
    for (const name of KUSTOMIZATIONS) rendered[name] = await renderKustomization(path.join(kubernetesDir, name));
  });

  it.each(KUSTOMIZATIONS)('%s: every rendered object passes its schema with no unknown field', (name) => {
    expect(rendered[name].length).toBeGreaterThan(0);
    const problems = rendered[name].flatMap((o) => validateObject(o).map((p) => `${o.kind}/${o.metadata.name}: ${p}`));
    expect(problems).toEqual([]);
  });

  it('renders every kind an operator needs', () => {
    const kinds = rendered['overlays/production'].map((o) => `${o.apiVersion} ${o.kind}`).sort();
    expect(kinds).toEqual(
      [
        'v1 Namespace', 'v1 ServiceAccount', 'v1 ConfigMap', 'v1 Service', 'apps/v1 Deployment', 'policy/v1 PodDisruptionBudget',
        'autoscaling/v2 HorizontalPodAutoscaler', 'networking.k8s.io/v1 NetworkPolicy', 'monitoring.coreos.com/v1 ServiceMonitor',
      ].sort(),
    );
    expect(rendered['overlays/production'].filter((o) => o.kind !== 'Namespace').every((o) => o.metadata.namespace === 'llmchat')).toBe(true);
  });

  describe('the validation fails on a wrong object (the checks can fail)', () => {
    const deployment = () => structuredClone(find(rendered.base, 'Deployment'));

    it('a misspelt field', () => {
      const broken = deployment();
      const container = podSpec(broken).containers[0] as Container & Record<string, unknown>;
      container.readinesProbe = container.readinessProbe;
      delete container.readinessProbe;
      expect(validateObject(broken)).toEqual(['/spec/template/spec/containers/0/readinesProbe: unknown field in V1Container']);
    });

    it('a field of the wrong type', () => {
      const broken = deployment();
      (podSpec(broken) as unknown as Record<string, unknown>).terminationGracePeriodSeconds = '45s';
      expect(validateObject(broken).join('\n')).toMatch(/terminationGracePeriodSeconds must be integer/);
    });

    it('a missing required field', () => {
      const broken = deployment();
      delete (podSpec(broken).containers[0] as Partial<Container>).name;
      expect(validateObject(broken).join('\n')).toMatch(/containers\/0 must have required property name/);
    });

    it('a ServiceMonitor whose endpoints are not a list', () => {
      const broken = structuredClone(find(rendered.base, 'ServiceMonitor')) as KubeObject & { spec: Record<string, unknown> };
      broken.spec.endpoints = { port: 'http' };
      expect(validateObject(broken).join('\n')).toMatch(/endpoints must be array/);
    });

    it('a Chaos Mesh experiment with an unknown field or a wrong action', () => {
      const podKill = structuredClone(find(rendered.chaos, 'PodChaos')) as KubeObject & { spec: Record<string, unknown> };
      podKill.spec.gracePeriodSeconds = 0;
      expect(validateObject(podKill)).toEqual(["spec: must NOT have additional properties {\"additionalProperty\":\"gracePeriodSeconds\"}"]);
      delete podKill.spec.gracePeriodSeconds;
      podKill.spec.action = 'pod-kil';
      expect(validateObject(podKill).join('\n')).toMatch(/spec\/action: must be equal to one of the allowed values/);
    });

    it('a kind nothing here has a schema for', () => {
      expect(() => validateObject({ apiVersion: 'apps/v1', kind: 'DaemonSet', metadata: { name: 'x' } })).toThrow(/no schema for apps\/v1 DaemonSet/);
    });
  });

  describe('the Deployment', () => {
    const spec = () => podSpec(find(rendered['overlays/production'], 'Deployment'));
    const container = () => {
      const found = spec().containers[0];
      if (found === undefined) throw new Error('no container');
      return found;
    };

    it('probes the health routes the server serves', () => {
      const c = container();
      expect([c.startupProbe?.httpGet?.path, c.readinessProbe?.httpGet?.path, c.livenessProbe?.httpGet?.path]).toEqual(['/health/startup', '/health/ready', '/health/live']);
      const routes = readFileSync(path.join(repoRoot, 'server/src/modules/health/routes.ts'), 'utf8');
      for (const route of ['/health/startup', '/health/ready', '/health/live']) expect(routes).toContain(`app.get('${route}'`);
    });

    it('gives the pod longer than the preStop delay, the drain and the hand-over before SIGKILL', () => {
      const configMap = find(rendered['overlays/production'], 'ConfigMap') as KubeObject & { data: Record<string, string> };
      const drainMs = Number(configMap.data.DRAIN_TIMEOUT_MS);
      const lifecycle = readFileSync(path.join(repoRoot, 'server/src/lifecycle.ts'), 'utf8');
      const handoverMs = Number(/export const SHUTDOWN_HANDOVER_MS = ([\d_]+);/.exec(lifecycle)?.[1]?.replaceAll('_', ''));
      const preStopSeconds = container().lifecycle?.preStop?.sleep?.seconds ?? 0;
      expect(drainMs).toBeGreaterThan(0);
      expect(handoverMs).toBeGreaterThan(0);
      expect(preStopSeconds).toBeGreaterThan(0);
      expect(spec().terminationGracePeriodSeconds).toBeGreaterThan(preStopSeconds + (drainMs + handoverMs) / 1000);
    });

    it('runs locked down: non-root, read-only root with /tmp writable, no capabilities, the runtime seccomp profile, resources set', () => {
      const c = container();
      expect(spec().securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
      expect(c.securityContext).toMatchObject({ readOnlyRootFilesystem: true, runAsNonRoot: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
      const tmp = c.volumeMounts?.find((m) => m.mountPath === '/tmp');
      expect(spec().volumes?.find((v) => v.name === tmp?.name)?.emptyDir).toBeDefined();
      expect(c.resources?.requests?.cpu).toBeDefined();
      expect(c.resources?.requests?.memory).toBeDefined();
      expect(c.resources?.limits?.memory).toBeDefined();
    });

    it.skipIf(!existsSync(path.join(repoRoot, 'Dockerfile')))("runs as the image's user (the Dockerfile's USER)", () => {
      const user = /^USER (\d+)(?::(\d+))?$/m.exec(readFileSync(path.join(repoRoot, 'Dockerfile'), 'utf8'));
      expect(user, 'a numeric USER in the Dockerfile').not.toBeNull();
      expect(spec().securityContext).toMatchObject({ runAsUser: Number(user?.[1]), ...(user?.[2] === undefined ? {} : { runAsGroup: Number(user[2]) }) });
    });

    it('takes the secrets from a Secret, and the ConfigMap holds only settings config.ts knows', () => {
      const fromSecret = (container().env ?? []).filter((e) => e.valueFrom?.secretKeyRef !== undefined).map((e) => e.name);
      expect(fromSecret).toEqual(expect.arrayContaining(['DATABASE_URL', 'REDIS_URL', 'JWT_SECRET', 'SECRETS_KEY']));
      const configMap = find(rendered['overlays/production'], 'ConfigMap') as KubeObject & { data: Record<string, string> };
      const known = new Set([...readFileSync(path.join(repoRoot, 'server/src/config.ts'), 'utf8').matchAll(/name: '([A-Z0-9_]+)'/g)].map((m) => m[1]));
      expect(Object.keys(configMap.data).filter((name) => !known.has(name))).toEqual([]);
      for (const secret of ['JWT_SECRET', 'SECRETS_KEY', 'DATABASE_URL', 'REDIS_URL']) expect(configMap.data).not.toHaveProperty(secret);
    });

    it('is scraped on /metrics and selected by its Service, PodDisruptionBudget and NetworkPolicy', () => {
      const objects = rendered['overlays/production'];
      const podLabels = (find(objects, 'Deployment') as unknown as { spec: { template: { metadata: { labels: Record<string, string> } } } }).spec.template.metadata.labels;
      const selects = (selector: Record<string, string>) => Object.entries(selector).every(([k, v]) => podLabels[k] === v);
      expect(selects((find(objects, 'Service') as unknown as { spec: { selector: Record<string, string> } }).spec.selector)).toBe(true);
      for (const kind of ['PodDisruptionBudget', 'NetworkPolicy']) {
        const object = find(objects, kind) as unknown as { spec: { selector?: { matchLabels: Record<string, string> }; podSelector?: { matchLabels: Record<string, string> } } };
        expect(selects((object.spec.selector ?? object.spec.podSelector)?.matchLabels ?? { none: 'none' })).toBe(true);
      }
      const monitor = find(objects, 'ServiceMonitor') as unknown as { spec: { endpoints: { port: string; path: string }[] } };
      expect(monitor.spec.endpoints).toEqual([expect.objectContaining({ port: 'metrics', path: '/metrics' })]);
      const configMap = find(objects, 'ConfigMap') as KubeObject & { data: Record<string, string> };
      const servicePorts = (find(objects, 'Service') as unknown as { spec: { ports: { name: string; targetPort: string }[] } }).spec.ports;
      const containerPorts = (find(objects, 'Deployment') as unknown as { spec: { template: { spec: { containers: { ports: { name: string; containerPort: number }[] }[] } } } }).spec.template.spec.containers[0]?.ports;
      expect(servicePorts.find((p) => p.name === 'metrics')?.targetPort).toBe('metrics');
      expect(containerPorts?.find((p) => p.name === 'metrics')?.containerPort).toBe(Number(configMap.data.METRICS_PORT));
      expect(containerPorts?.find((p) => p.name === 'http')?.containerPort).toBe(Number(configMap.data.PORT));
    });
  });

  describe('the Chaos Mesh experiments', () => {
    const drillRow = (o: KubeObject) => o.metadata.annotations?.['llmchat.dev/drill-row'];

    it('are all rendered: pod kill, network delay, network partition, stress', () => {
      const files = readdirSync(path.join(kubernetesDir, 'chaos')).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
      expect(rendered.chaos).toHaveLength(files.length);
      const kinds = rendered.chaos.map((o) => `${o.kind} ${String((o as unknown as { spec: { action?: string } }).spec.action ?? 'stress')}`);
      expect(kinds).toEqual(expect.arrayContaining(['PodChaos pod-kill', 'NetworkChaos delay', 'NetworkChaos partition', 'StressChaos stress']));
    });

    it('each name the drill row that proves the app survives the fault, and the runbook lists it', () => {
      const rows = new Set(SCENARIOS.map((s) => s.name));
      const runbook = readFileSync(path.join(repoRoot, 'docs/operations.md'), 'utf8');
      for (const experiment of rendered.chaos) {
        const row = drillRow(experiment);
        expect(row, experiment.metadata.name).toBeDefined();
        expect(rows.has(row ?? ''), `${experiment.metadata.name}: drill row "${row}"`).toBe(true);
        expect(runbook).toMatch(new RegExp(`\\| \`${experiment.metadata.name}\` .*\\| ${(row ?? '').replace(/[()]/g, '\\$&')} \\|`));
      }
    });
  });
});
