import type { ResolvedEndpoint } from '../providers/types.js';
import type { AttemptHost } from './attempt-loop.js';
import type { ClientError } from './failure-policy.js';

/**
 * Hedged first token (issue 17, item 3): an agent's opt-in. When the
 * current call has produced no token `afterMs` after it started, the agent's
 * next endpoint is called too; the first call to produce a token serves the
 * turn and the other is aborted. `'p95'`: the wait is the endpoint's
 * observed time to first token, 95th percentile (first-token-stats.ts).
 */
export interface HedgeSettings {
  afterMs: number | 'p95';
}

/**
 * One call of a race for the first token, as the generation that makes it
 * sees it: it holds what the call sends before its first output, then
 * `claim`s the turn. The loser's signal aborts its HTTP request.
 */
export interface HedgeLane {
  /** Aborted when another call of the race won, and with the turn. */
  readonly signal: AbortSignal;
  /** At the call's first output (or its end without any): true when it serves the turn, false when another call already does. */
  claim(): boolean;
}

/** One side of the race, as the attempt loop set it up. */
export interface RacingCall {
  endpoint: ResolvedEndpoint;
  /** The call's first output reached the client (breaker success). */
  onFirstOutput: () => void;
  /** Where the endpoint sits in the agent's list. */
  index: number;
}

/** The partner's breaker let it through: it is called (`begin`) or, when the primary answered meanwhile, let go (`release`). */
export interface PartnerTicket<C extends RacingCall> {
  begin: () => C;
  release: () => void;
}

export interface HedgeRace<C extends RacingCall> {
  host: AttemptHost;
  /** Milliseconds the primary may go without a token before the partner starts. */
  afterMs: number;
  primary: C;
  /** Asks the partner's breaker; undefined when the partner may not be called now. */
  acquirePartner: () => Promise<PartnerTicket<C> | undefined>;
  /** A call that failed on its own (it did not lose the race), accounted as any failed attempt: its client error, and whether the turn must end with it. */
  onFailed: (call: C, err: unknown, midAnswer: boolean, usage: AttemptHost['attemptUsage']) => Promise<{ error: ClientError; final: boolean }>;
  /** A call that was running when the other one won: cancelled, accounted, never a breaker failure. */
  onLost: (call: C, elapsedMs: number) => void;
  /** A call's first token came `ms` after it started (the winner), or it had none after `ms` (`censored`: the loser, a lower bound). */
  onFirstTokenTime?: ((endpoint: ResolvedEndpoint, ms: number, censored: boolean) => void) | undefined;
  now: () => number;
}

/**
 * How a race ended, when it did not throw the primary's failure (which the
 * loop handles as any failed call):
 * - `served`: one of the calls gave the whole answer;
 * - `partner-failed`: the partner won and then broke off (accounted); the
 *   loop goes on after the partner's index, or ends when `final`;
 * - `primary`: no partner ran, or it lost or failed (accounted); the
 *   primary's call ended well (the loop records it as any served call).
 */
export type HedgeOutcome =
  | { status: 'served'; by: 'partner' }
  | { status: 'primary' }
  | { status: 'partner-failed'; index: number; error: ClientError; final: boolean };

interface Lane<C extends RacingCall> extends HedgeLane {
  call: C;
  startedAt: number;
  /** Aborted by another lane's win while it still ran. */
  lost: boolean;
  settled: boolean;
  abort: () => void;
}

type Settled = { ok: true } | { ok: false; err: unknown };

/** The race's state: which lane claimed the turn, and a promise that resolves at the claim. */
class FirstTokenRace<C extends RacingCall> {
  private winner: Lane<C> | undefined;
  private readonly lanes: Lane<C>[] = [];
  private onClaim: (() => void) | undefined;
  readonly claimed = new Promise<void>((resolve) => (this.onClaim = resolve));

  constructor(
    private readonly turnSignal: AbortSignal,
    private readonly now: () => number,
    private readonly onFirstTokenTime: HedgeRace<C>['onFirstTokenTime'],
  ) {}

  get won(): Lane<C> | undefined {
    return this.winner;
  }

  lane(call: C): Lane<C> {
    const controller = new AbortController();
    const startedAt = this.now();
    const lane: Lane<C> = {
      call,
      startedAt,
      lost: false,
      settled: false,
      signal: AbortSignal.any([this.turnSignal, controller.signal]),
      abort: () => controller.abort(),
      claim: () => {
        if (this.winner !== undefined) return this.winner === lane;
        this.winner = lane;
        const at = this.now();
        this.onFirstTokenTime?.(call.endpoint, at - startedAt, false);
        for (const other of this.lanes) {
          if (other === lane || other.settled) continue;
          other.lost = true;
          this.onFirstTokenTime?.(other.call.endpoint, at - other.startedAt, true);
          other.abort();
        }
        this.onClaim?.();
        return true;
      },
    };
    this.lanes.push(lane);
    return lane;
  }

  /** Runs the lane's call; the promise never rejects. */
  run(host: AttemptHost, lane: Lane<C>): Promise<Settled> {
    return host.call(lane.call.endpoint, lane.call.onFirstOutput, lane).then(
      (): Settled => {
        lane.settled = true;
        return { ok: true };
      },
      (err: unknown): Settled => {
        lane.settled = true;
        return { ok: false, err };
      },
    );
  }
}

/** Resolves after `ms`, or as soon as `until` does; never keeps the process alive. */
function delay(ms: number, until: Promise<unknown>): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    timer.unref();
    void until.then(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/**
 * Runs the primary call and, when it has produced no token after
 * `afterMs`, its partner too; the first to claim its first output serves,
 * the other is aborted and accounted through `onLost`. A call that failed
 * on its own is accounted through `onFailed`, except the primary's failure
 * when the partner did not serve: that is thrown, and the loop handles it
 * as any failed call.
 */
export async function raceFirstToken<C extends RacingCall>(race: HedgeRace<C>): Promise<HedgeOutcome> {
  const { host } = race;
  const state = new FirstTokenRace<C>(host.signal, race.now, race.onFirstTokenTime);
  const primaryLane = state.lane(race.primary);
  const primaryDone = state.run(host, primaryLane);
  await delay(race.afterMs, Promise.race([primaryDone, state.claimed]));

  const silent = () => state.won === undefined && !primaryLane.settled && !host.signal.aborted;
  const ticket = silent() ? await race.acquirePartner() : undefined;
  if (ticket === undefined || !silent()) {
    // No race: the primary goes on alone (a partner its breaker let through meanwhile is let go).
    ticket?.release();
    const result = await primaryDone;
    if (!result.ok) throw result.err;
    return { status: 'primary' };
  }

  const partner = ticket.begin();
  host.log.info({ agentId: host.agentId, endpoint: race.primary.endpoint.position, partner: partner.endpoint.position, afterMs: race.afterMs }, 'no first token yet; the next endpoint is called too (hedge)');
  const partnerLane = state.lane(partner);
  const partnerDone = state.run(host, partnerLane);
  await Promise.race([state.claimed, Promise.all([primaryDone, partnerDone])]);

  // Only the winner can have sent output or usage; a call that failed before any claim had neither.
  const failed = (lane: Lane<C>, err: unknown) => race.onFailed(lane.call, err, state.won === lane && host.outputSent, state.won === lane ? host.attemptUsage : undefined);
  const [winner, other, winnerDone, otherDone] = state.won === partnerLane ? [partnerLane, primaryLane, partnerDone, primaryDone] : [primaryLane, partnerLane, primaryDone, partnerDone];
  const otherResult = await otherDone;
  if (other.lost) race.onLost(other.call, race.now() - other.startedAt);
  else if (!otherResult.ok && !host.signal.aborted) await failed(other, otherResult.err);

  const result = await winnerDone;
  if (winner === primaryLane) {
    // The primary won, or neither did (both failed: the partner's failure is accounted above).
    if (!result.ok) throw result.err;
    return { status: 'primary' };
  }
  if (result.ok) return { status: 'served', by: 'partner' };
  if (host.signal.aborted) throw result.err;
  const failure = await failed(partnerLane, result.err);
  return { status: 'partner-failed', index: partner.index, error: failure.error, final: failure.final };
}
