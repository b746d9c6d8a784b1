import { describe, expect, it } from 'vitest';
import { anthropicStopReasonOf, finishReasonOf } from './finish-reason.js';

describe('stop reasons in Anthropic\'s words (/v1/messages)', () => {
  it('passes an Anthropic endpoint\'s own reason on, stop_sequence included, which OpenAI\'s words would lose', () => {
    for (const reason of ['end_turn', 'max_tokens', 'stop_sequence', 'tool_use', 'refusal', 'pause_turn']) expect(anthropicStopReasonOf(reason)).toBe(reason);
    expect(finishReasonOf('stop_sequence')).toBe('stop');
  });

  it('maps other providers\' reasons through OpenAI\'s words, and a missing or unknown one to end_turn', () => {
    expect(anthropicStopReasonOf('stop')).toBe('end_turn');
    expect(anthropicStopReasonOf('length')).toBe('max_tokens');
    expect(anthropicStopReasonOf('content_filter')).toBe('refusal');
    expect(anthropicStopReasonOf('tool_calls')).toBe('tool_use');
    expect(anthropicStopReasonOf(undefined)).toBe('end_turn');
    expect(anthropicStopReasonOf('something_new')).toBe('end_turn');
  });
});
