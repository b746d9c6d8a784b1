import { describe, expect, it } from 'vitest';
import { clientFigures, failureReason, kibPerStream, levelDetails, longLevelsTable } from './long-report.js';
import type { LevelReport } from './long-report.js';
import type { TurnRecord } from './scheduled-load.js';

const record = (over: Partial<TurnRecord>): TurnRecord => ({
  question: 'q 0',
  plannedMs: 0,
  startMs: 0,
  mockFirstTokenMs: 2000,
  mockAnswerMs: 60_000,
  chunks: 30,
  status: 200,
  code: undefined,
  ttftMs: 2010,
  totalMs: 60_050,
  error: undefined,
  errorDetail: undefined,
  ...over,
});

describe('failureReason', () => {
  it('a good turn has none', () => {
    expect(failureReason(record({}))).toBeUndefined();
  });

  it('a refusal is counted by status and code', () => {
    expect(failureReason(record({ status: 503, code: 'UPSTREAM_BUSY', error: 'HTTP 503' }))).toBe('HTTP 503 UPSTREAM_BUSY');
    expect(failureReason(record({ status: 502, error: 'HTTP 502' }))).toBe('HTTP 502');
  });

  it('a stream that ended in an error names the code inside it', () => {
    const detail = '{"status":"error","error":{"code":"UPSTREAM_TIMEOUT","message":"…"}}';
    expect(failureReason(record({ error: 'end status error', errorDetail: detail }))).toBe('end status error UPSTREAM_TIMEOUT');
    expect(failureReason(record({ status: 0, error: 'connection: ECONNRESET', errorDetail: 'socket hang up' }))).toBe('connection: ECONNRESET');
  });
});

describe('clientFigures', () => {
  it('overhead is the first token minus the mock\'s own first-token delay, over every turn that got one', () => {
    const figures = clientFigures([
      record({ ttftMs: 2005 }),
      record({ ttftMs: 2100, totalMs: 61_000 }),
      record({ ttftMs: 2050, error: 'end status error', errorDetail: '{"code":"UPSTREAM_TIMEOUT"}' }),
      record({ ttftMs: undefined, status: 503, code: 'OVERLOADED', error: 'HTTP 503' }),
    ]);
    expect(figures.firstTokenOverheadMs.count).toBe(3);
    expect(figures.firstTokenOverheadMs.min).toBeCloseTo(5);
    expect(figures.firstTokenOverheadMs.max).toBeCloseTo(100);
    expect(figures.overheadByStartSecond).toEqual([{ second: 0, turns: 3, p50: expect.closeTo(50) as number, max: expect.closeTo(100) as number }]);
    expect(figures.client).toMatchObject({ complete: 2, failed: 2, httpErrors: { 'HTTP 503 OVERLOADED': 1 } });
    expect(figures.client.byReason).toEqual({ 'HTTP 503 OVERLOADED': 1, 'end status error UPSTREAM_TIMEOUT': 1 });
    // End to end over complete turns only, and against the mock's own answer time.
    expect(figures.endToEndMs.count).toBe(2);
    expect(figures.endToEndOverheadMs.max).toBeCloseTo(1000);
  });
});

describe('kibPerStream', () => {
  it('is the growth from idle to peak over the streams in flight', () => {
    expect(kibPerStream(100, { rssPeakMiB: 300 }, 1000)).toBeCloseTo(204.8);
    expect(kibPerStream(undefined, { rssPeakMiB: 300 }, 1000)).toBeUndefined();
    expect(kibPerStream(100, { rssPeakMiB: 300 }, 0)).toBeUndefined();
  });
});

describe('longLevelsTable', () => {
  it('counts turns never stored (refused before acknowledgement) apart from stored rows that did not complete', () => {
    const figures = clientFigures([record({})]);
    const report: LevelReport = {
      name: '1000 ramped 10 s',
      arrival: 'ramped',
      turns: 1000,
      description: '',
      backends: 'postgres+redis',
      serverEnv: {},
      ...figures,
      stored: { questions: 990, byStatus: { complete: 256, error: 734 }, completeWithFullText: 256, duplicates: 0, wrongTextExamples: [] },
      storedStreamingLeft: 0,
      resources: {
        idleRssMiB: 150,
        rssPeakMiB: 350,
        kibPerStream: 204.8,
        idleOpenFiles: 30,
        openFilesPeak: 2100,
        openFilesLimit: 20_000,
        heapUsedPercentPeak: 3.2,
        heapTotalPeakMiB: 210,
        externalPeakMiB: 30,
        eventLoopDelayPeakMs: 20,
        runningGenerationsPeak: 1000,
        upstreamSlotsUsedPeak: undefined,
        upstreamSlotsWaitingPeak: undefined,
        healthFailures: 0,
        peakInFlight: 1000,
        serverCpuSeconds: 30,
        serverCpuMsPerTurn: 30,
        benchCpuSeconds: 5,
      },
      timeline: { samples: [], health: [] },
      wallSeconds: 75,
      server: { exit: 'code 0', problems: [] },
      notes: [],
    };
    const row = longLevelsTable([report]).split('\n')[2] ?? '';
    expect(row).toMatch(/^1000\s+ramped 10 s\s+256\s+734 \(\+10 not stored\)\s+0\s/);
    expect(row).toContain('150→350');
    expect(levelDetails({ ...report, description: 'd', serverEnv: { A: '1' }, serverMemoryLimit: 2 ** 30 })[0]).toBe(
      '1000 ramped 10 s: d; postgres+redis; server env A=1; server in a 1024 MiB memory cgroup',
    );
    expect(levelDetails(report)[0]).toBe('1000 ramped 10 s: ; postgres+redis');
  });
});
