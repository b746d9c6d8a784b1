import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { attachmentsApi } from '../../api/endpoints';
import { useI18n } from '../../i18n/i18n';
import { saveFile } from '../../save-file';

function size(bytes: number, language: string): string {
  const format = (n: number, unit: string) => `${n.toLocaleString(language, { maximumFractionDigits: 1 })} ${unit}`;
  if (bytes < 1024) return format(bytes, 'B');
  if (bytes < 1024 * 1024) return format(bytes / 1024, 'KB');
  return format(bytes / (1024 * 1024), 'MB');
}

/** The images and files the user attached to questions: what they take of the quota, and deleting them. */
export function Attachments() {
  const { t, language } = useI18n();
  const queryClient = useQueryClient();
  const list = useQuery({ queryKey: ['attachments'], queryFn: attachmentsApi.list, staleTime: 0 });
  const remove = useMutation({ mutationFn: (id: string) => attachmentsApi.remove(id), onSuccess: () => queryClient.invalidateQueries({ queryKey: ['attachments'] }) });
  const data = list.data;
  return (
    <section aria-labelledby="attachments-title" className="card" data-testid="attachments">
      <h2 id="attachments-title">{t('profile.attachments')}</h2>
      <p className="muted small">{t('profile.attachmentsHelp')}</p>
      {list.isError && <p role="alert">{t('common.error', { message: list.error.message })}</p>}
      {data && (
        <p data-testid="attachments-used">
          {t('profile.attachmentsUsed', { used: size(data.usedBytes, language), quota: size(data.quotaBytes, language) })}
        </p>
      )}
      {data && data.items.length === 0 && <p className="muted">{t('profile.noAttachments')}</p>}
      <ul className="key-list">
        {data?.items.map((a) => (
          <li key={a.id}>
            <button type="button" className="link attachment-name" onClick={() => void attachmentsApi.blob(a.url).then((blob) => saveFile(blob, a.name))}>
              {a.name}
            </button>
            <span className="muted small">
              {a.contentType} · {size(a.size, language)} · {new Date(a.createdAt).toLocaleDateString(language)}
            </span>
            <button type="button" className="small-button danger" disabled={remove.isPending} onClick={() => remove.mutate(a.id)} aria-label={t('profile.deleteAttachment', { name: a.name })}>
              {t('common.delete')}
            </button>
          </li>
        ))}
      </ul>
    </section>
  );
}
