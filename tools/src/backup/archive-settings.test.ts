import { describe, expect, it } from 'vitest';
import { archiveSettings, postgresqlConfLines, restoreCommand, shellQuote } from './archive-settings.js';

describe('archive settings', () => {
  it('archive every segment with pgbackrest, at most archive_timeout after a commit', () => {
    expect(archiveSettings()).toEqual({ archive_mode: 'on', archive_command: 'pgbackrest --stanza=llmchat archive-push %p', archive_timeout: '15s' });
    expect(archiveSettings({ stanza: 'prod', configPath: '/etc/llmchat/pgbackrest.conf', archiveTimeoutSeconds: 30 })).toEqual({
      archive_mode: 'on',
      archive_command: 'pgbackrest --config=/etc/llmchat/pgbackrest.conf --stanza=prod archive-push %p',
      archive_timeout: '30s',
    });
    expect(restoreCommand()).toBe('pgbackrest --stanza=llmchat archive-get %f "%p"');
  });

  it('quote what the shell and postgresql.conf would otherwise split or end', () => {
    expect(shellQuote("/srv/it's here/pgbackrest.conf")).toBe(`'/srv/it'\\''s here/pgbackrest.conf'`);
    expect(archiveSettings({ configPath: '/srv/backup conf/pgbackrest.conf' }).archive_command).toBe("pgbackrest '--config=/srv/backup conf/pgbackrest.conf' --stanza=llmchat archive-push %p");
    expect(postgresqlConfLines({ archive_command: "a 'b'" })).toEqual(["archive_command = 'a ''b'''"]);
  });

  it('refuses an archive timeout that is not a whole number of seconds', () => {
    expect(() => archiveSettings({ archiveTimeoutSeconds: 0 })).toThrow(/archive timeout/);
    expect(() => archiveSettings({ archiveTimeoutSeconds: 1.5 })).toThrow(/archive timeout/);
  });
});
