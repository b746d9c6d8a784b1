import { readFileSync } from 'node:fs';

/**
 * Reads a V8 heap snapshot (`--heapsnapshot-signal`, `v8.writeHeapSnapshot`)
 * and answers what a stream in flight holds: objects counted and sized by
 * constructor, and retained sizes from the dominator tree (what would be
 * freed with an object), by class and by the class's outgoing edges. Weak
 * edges are left out, as in Chrome DevTools. Dominators by Cooper, Harvey
 * and Kennedy's iterative algorithm over a reverse postorder.
 */

interface RawSnapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]]; edge_fields: string[]; edge_types: [string[], ...unknown[]] } };
  nodes: number[];
  edges: number[];
  strings: string[];
}

export interface ClassSize {
  key: string;
  count: number;
  selfBytes: number;
}

export interface RetainedClass {
  name: string;
  instances: number;
  retainedBytes: number;
  /** Edges from the instances to what they dominate, summed by `edge -> target class`, largest first. */
  children: { edge: string; bytes: number }[];
}

export class HeapSnapshot {
  readonly nodeCount: number;
  readonly totalBytes: number;
  private readonly nf: number;
  private readonly ef: number;
  private readonly nodeTypes: string[];
  private readonly edgeTypes: string[];
  private readonly firstEdge: Uint32Array;
  private readonly fields: { type: number; name: number; size: number; edgeType: number; edgeName: number; edgeTo: number };
  private dominators: { idom: Int32Array; retained: Float64Array; reachable: Uint8Array } | undefined;

  constructor(private readonly raw: RawSnapshot) {
    const meta = raw.snapshot.meta;
    this.nf = meta.node_fields.length;
    this.ef = meta.edge_fields.length;
    this.nodeTypes = meta.node_types[0];
    this.edgeTypes = meta.edge_types[0];
    this.fields = {
      type: meta.node_fields.indexOf('type'),
      name: meta.node_fields.indexOf('name'),
      size: meta.node_fields.indexOf('self_size'),
      edgeType: meta.edge_fields.indexOf('type'),
      edgeName: meta.edge_fields.indexOf('name_or_index'),
      edgeTo: meta.edge_fields.indexOf('to_node'),
    };
    const edgeCount = meta.node_fields.indexOf('edge_count');
    this.nodeCount = raw.nodes.length / this.nf;
    this.firstEdge = new Uint32Array(this.nodeCount + 1);
    let total = 0;
    for (let i = 0, e = 0; i < this.nodeCount; i++) {
      this.firstEdge[i] = e;
      e += (raw.nodes[i * this.nf + edgeCount] ?? 0) * this.ef;
      this.firstEdge[i + 1] = e;
      total += raw.nodes[i * this.nf + this.fields.size] ?? 0;
    }
    this.totalBytes = total;
  }

  static read(file: string): HeapSnapshot {
    return new HeapSnapshot(JSON.parse(readFileSync(file, 'utf8')) as RawSnapshot);
  }

  /**
   * An object's constructor name, a function's name with `()` (`onResFinished()`),
   * other nodes by their kind: `(string)`, `(array)`, `(code)`.
   */
  className(node: number): string {
    const type = this.nodeTypes[this.raw.nodes[node * this.nf + this.fields.type] ?? 0] ?? '';
    const name = (): string => this.raw.strings[this.raw.nodes[node * this.nf + this.fields.name] ?? 0] ?? '';
    if (type === 'object' || type === 'native') return name();
    if (type === 'closure') return `${name()}()`;
    return `(${type})`;
  }

  private selfSize(node: number): number {
    return this.raw.nodes[node * this.nf + this.fields.size] ?? 0;
  }

  private edgeType(e: number): string {
    return this.edgeTypes[this.raw.edges[e + this.fields.edgeType] ?? 0] ?? '';
  }

  private edgeTarget(e: number): number {
    return (this.raw.edges[e + this.fields.edgeTo] ?? 0) / this.nf;
  }

  private edgeName(e: number): string {
    const type = this.edgeType(e);
    if (type === 'element' || type === 'hidden') return `[${type}]`;
    return this.raw.strings[this.raw.edges[e + this.fields.edgeName] ?? 0] ?? '';
  }

  private followed(e: number): boolean {
    const type = this.edgeType(e);
    return type !== 'weak' && type !== 'shortcut';
  }

  /** Objects counted and sized by class (strings, code and numbers each as one kind), largest first. */
  sizesByClass(): ClassSize[] {
    const byKey = new Map<string, ClassSize>();
    for (let v = 0; v < this.nodeCount; v++) {
      const key = this.className(v);
      const entry = byKey.get(key) ?? { key, count: 0, selfBytes: 0 };
      entry.count++;
      entry.selfBytes += this.selfSize(v);
      byKey.set(key, entry);
    }
    return [...byKey.values()].sort((a, b) => b.selfBytes - a.selfBytes);
  }

  private computeDominators(): { idom: Int32Array; retained: Float64Array; reachable: Uint8Array } {
    const n = this.nodeCount;
    const postIndex = new Int32Array(n).fill(-1);
    const post = new Uint32Array(n);
    const reachable = new Uint8Array(n);
    const stack = new Uint32Array(n);
    const cursor = new Uint32Array(n);
    let count = 0;
    let sp = 0;
    stack[sp++] = 0;
    reachable[0] = 1;
    cursor[0] = this.firstEdge[0] ?? 0;
    while (sp > 0) {
      const v = stack[sp - 1] ?? 0;
      const e = cursor[v] ?? 0;
      if (e < (this.firstEdge[v + 1] ?? 0)) {
        cursor[v] = e + this.ef;
        if (!this.followed(e)) continue;
        const w = this.edgeTarget(e);
        if (reachable[w] === 0) {
          reachable[w] = 1;
          cursor[w] = this.firstEdge[w] ?? 0;
          stack[sp++] = w;
        }
      } else {
        sp--;
        postIndex[v] = count;
        post[count++] = v;
      }
    }
    // Predecessors of every reachable node, as one flat array.
    const predStart = new Uint32Array(n + 1);
    const forEachEdge = (visit: (from: number, to: number) => void): void => {
      for (let v = 0; v < n; v++) {
        if (reachable[v] === 0) continue;
        for (let e = this.firstEdge[v] ?? 0; e < (this.firstEdge[v + 1] ?? 0); e += this.ef) if (this.followed(e)) visit(v, this.edgeTarget(e));
      }
    };
    forEachEdge((_from, to) => (predStart[to + 1] = (predStart[to + 1] ?? 0) + 1));
    for (let i = 0; i < n; i++) predStart[i + 1] = (predStart[i + 1] ?? 0) + (predStart[i] ?? 0);
    const preds = new Uint32Array(predStart[n] ?? 0);
    const fill = predStart.slice();
    forEachEdge((from, to) => {
      const at = fill[to] ?? 0;
      preds[at] = from;
      fill[to] = at + 1;
    });
    const idom = new Int32Array(n).fill(-1);
    idom[0] = 0;
    for (let changed = true; changed; ) {
      changed = false;
      for (let k = count - 2; k >= 0; k--) {
        const b = post[k] ?? 0;
        let chosen = -1;
        for (let p = predStart[b] ?? 0; p < (predStart[b + 1] ?? 0); p++) {
          const q = preds[p] ?? 0;
          if (idom[q] === -1) continue;
          if (chosen === -1) {
            chosen = q;
            continue;
          }
          let a = q;
          let c = chosen;
          while (a !== c) {
            while ((postIndex[a] ?? 0) < (postIndex[c] ?? 0)) a = idom[a] ?? 0;
            while ((postIndex[c] ?? 0) < (postIndex[a] ?? 0)) c = idom[c] ?? 0;
          }
          chosen = a;
        }
        if (chosen !== -1 && idom[b] !== chosen) {
          idom[b] = chosen;
          changed = true;
        }
      }
    }
    const retained = new Float64Array(n);
    for (let k = 0; k < count; k++) {
      const v = post[k] ?? 0;
      retained[v] = (retained[v] ?? 0) + this.selfSize(v);
      if (v !== 0) retained[idom[v] ?? 0] = (retained[idom[v] ?? 0] ?? 0) + (retained[v] ?? 0);
    }
    return { idom, retained, reachable };
  }

  /** What the instances of `name` retain, in all and through each of their edges. */
  retainedBy(name: string): RetainedClass {
    const { idom, retained, reachable } = (this.dominators ??= this.computeDominators());
    let instances = 0;
    let retainedBytes = 0;
    const children = new Map<string, number>();
    for (let v = 0; v < this.nodeCount; v++) {
      if (reachable[v] === 0 || this.className(v) !== name) continue;
      instances++;
      retainedBytes += retained[v] ?? 0;
      for (let e = this.firstEdge[v] ?? 0; e < (this.firstEdge[v + 1] ?? 0); e += this.ef) {
        const w = this.edgeTarget(e);
        if (idom[w] !== v) continue;
        const key = `${this.edgeName(e)} -> ${this.className(w)}`;
        children.set(key, (children.get(key) ?? 0) + (retained[w] ?? 0));
      }
    }
    return {
      name,
      instances,
      retainedBytes,
      children: [...children.entries()].map(([edge, bytes]) => ({ edge, bytes })).sort((a, b) => b.bytes - a.bytes),
    };
  }
}
