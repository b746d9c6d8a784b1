import type { Agent } from '../../api/types';
import { useI18n } from '../../i18n/i18n';

/** The agents to chat with: name, description and provider, as a radio group (arrow keys move the choice). */
export function AgentPicker({ agents, selected, onSelect }: { agents: Agent[]; selected: string | undefined; onSelect: (id: string) => void }) {
  const { t } = useI18n();
  if (agents.length === 0) return <p className="muted">{t('agents.none')}</p>;
  return (
    <fieldset className="agent-picker">
      <legend>{t('agents.pick')}</legend>
      {agents.map((a) => (
        <label key={a.id} className={`agent-card${a.id === selected ? ' selected' : ''}`}>
          <input type="radio" name="agent" value={a.id} checked={a.id === selected} onChange={() => onSelect(a.id)} />
          <span className="agent-name">{a.name}</span>
          <span className="agent-description">{a.description}</span>
          <span className="agent-provider">{t('agents.provider', { provider: a.provider })}</span>
        </label>
      ))}
    </fieldset>
  );
}
