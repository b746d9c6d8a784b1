import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { OPS_DIR, renderTemplate } from './template.js';

describe('renderTemplate', () => {
  it('replaces each ${LLMCHAT_*} placeholder and keeps every other ${…}', () => {
    expect(renderTemplate('listen ${LLMCHAT_PORT}; set $x "${HOME}" ${LLMCHAT_PORT}', { PORT: '80' })).toBe('listen 80; set $x "${HOME}" 80');
  });

  it('refuses a placeholder without a value, and a value without a placeholder', () => {
    expect(() => renderTemplate('a ${LLMCHAT_A} ${LLMCHAT_B}', { A: '1' })).toThrow(/no value for LLMCHAT_B/);
    expect(() => renderTemplate('a ${LLMCHAT_A}', { A: '1', TYPO: '2' })).toThrow(/no placeholder for LLMCHAT_TYPO/);
  });

  it('finds every shipped template under ops/, each with placeholders', () => {
    const templates = readdirSync(OPS_DIR, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.template'));
    expect(templates.sort()).toEqual(['haproxy/haproxy.cfg.template', 'nginx/llmchat.conf.template', 'patroni/patroni.yml.template', 'pgbackrest/pgbackrest.conf.template', 'redis/redis.conf.template', 'redis/sentinel.conf.template']);
    for (const file of templates) expect(readFileSync(path.join(OPS_DIR, file), 'utf8'), file).toMatch(/\$\{LLMCHAT_[A-Z0-9_]+\}/);
  });
});
