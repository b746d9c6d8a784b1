import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { NGINX_TEMPLATE, parseAccessLog, renderTemplate } from './nginx.js';

describe('the shipped nginx config', () => {
  const template = readFileSync(NGINX_TEMPLATE, 'utf8');

  it('renders only its two placeholders and keeps nginx\'s own variables', () => {
    const rendered = renderTemplate(template, { listen: '127.0.0.1:8080', upstreamsFile: '/tmp/up.conf' });
    expect(rendered).not.toMatch(/\$\{LLMCHAT_/);
    expect(rendered).toContain('listen 127.0.0.1:8080;');
    expect(rendered).toContain('include /tmp/up.conf;');
    expect(rendered).toContain('proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;');
  });

  it('streams events unbuffered and moves refused or draining requests to another instance, POSTs included', () => {
    expect(template).toMatch(/^\s*proxy_buffering off;/m);
    expect(template).toMatch(/^\s*proxy_next_upstream error timeout http_502 http_503 non_idempotent;/m);
  });

  it('reads its access log: status, and what each instance tried answered', () => {
    const entries = parseAccessLog(
      ['{"t":1700000000.123,"method":"POST","uri":"/api/chat/completions","status":200,"upstream":"503, 200"}', '{"t":1700000000.5,"method":"GET","uri":"/health/live","status":200,"upstream":""}', ''].join('\n'),
    );
    expect(entries).toEqual([
      { method: 'POST', uri: '/api/chat/completions', status: 200, upstreamStatuses: ['503', '200'], at: 1700000000123 },
      { method: 'GET', uri: '/health/live', status: 200, upstreamStatuses: [], at: 1700000000500 },
    ]);
  });
});
